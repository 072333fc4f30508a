"""Run work units. A unit is one attack run (cells sharing attack, budget and attacked model) over
one shard of the data: under ``oblivious`` every defense is evaluated on the same adversarial
examples, crafted once against the undefended model. Units compute and return per-sample records;
they never write, so the same code runs in this process, in worker processes and as Ray tasks.
Model, data and clean predictions are loaded once per process."""
from __future__ import annotations

import hashlib
import random
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from hbbench.attacks import ATTACKS, attack_norm, make_attack
from hbbench.attacks.early_stop import keeps_best_iterate
from hbbench.checks import probes
from hbbench.classifier import make_classifier, predict_probs, resolve_device, with_defenses
from hbbench.datasets import Dataset, load_dataset
from hbbench.defenses import attacker_preprocessors, get_threat_model, make_defense
from hbbench.models import load_model
from hbbench.preflight import validate_compatible
from hbbench.passes import PassCount, count_passes
from hbbench.records import sample_records
from hbbench.spec import Cell

Event = Callable[..., None]


def _quiet(*_, **__):
    pass


@dataclass(frozen=True)
class Unit:
    """One attack run over samples [start, stop) for the cells that share it."""
    cells: tuple[Cell, ...]
    shard: int
    start: int
    stop: int
    cache_dir: str | None = None  # where defended-clean predictions are shared across workers and resumes
    best_iterate: bool = False  # keeps_best_iterate of the whole attack run (all its cells, done or not)


@dataclass
class ShardResult:
    cell_id: str
    shard: int
    records: pd.DataFrame
    attack_seconds: float
    defense_seconds: float
    attack_gradient: str
    passes: PassCount  # forward and backward passes the shard's attack run spent crafting (all its images)
    probes: dict  # what the checks read: defense_randomized, gradient_zero_share (hbbench.checks.probes)


class Context:
    """What every unit of one (model, data) pair needs, built once per process."""

    def __init__(self, cell: Cell, batch_size: int, device: str):
        model = load_model(cell.model, **dict(cell.model_params))
        self.dataset: Dataset = load_dataset(cell.dataset, n=cell.n, seed=cell.seed, **dict(cell.dataset_params))
        validate_compatible(cell, model, self.dataset)
        self.classifier = make_classifier(model, device=device)
        self.device = device
        self.batch_size = batch_size
        self._clean: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.probes: dict[tuple, object] = {}  # probe results by what they depend on, for later units
        self._defended_clean: dict[tuple, np.ndarray] = {}
        self.fooled_at: np.ndarray | None = None  # of the last craft: per image, the step that fooled, or -1

    def defended_clean(self, cell: Cell, unit: Unit, compute) -> np.ndarray:
        """A deterministic defense's predictions on the clean images of a shard: they depend on neither
        the attack nor the budget, so they are computed once per process and, through the run
        directory (``unit.cache_dir``, written atomically), once per run across workers and resumes."""
        key = (cell.model_key, cell.defense_name, cell.defense_params, unit.start, unit.stop)
        if key not in self._defended_clean:
            self._defended_clean[key] = _cached_array(unit.cache_dir, key, compute)
        return self._defended_clean[key]

    def predict(self, x: np.ndarray, classifier=None) -> np.ndarray:
        return predict_probs(classifier or self.classifier, x, self.batch_size)

    def clean_probs(self, start: int, stop: int, x: np.ndarray) -> np.ndarray:
        """Clean predictions of a shard, kept for the next units over the same shard."""
        key = (start, stop)
        if key not in self._clean:
            self._clean[key] = self.predict(x)
            while len(self._clean) > 64:
                self._clean.popitem(last=False)
        return self._clean[key]


def _cached_array(cache_dir: str | None, key: tuple, compute) -> np.ndarray:
    if cache_dir is None:
        return compute()
    import io

    from hbbench.store import atomic_write_bytes

    path = Path(cache_dir) / f"{hashlib.sha256(repr(key).encode()).hexdigest()[:16]}.npy"
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):  # not there yet, or damaged: computed again and replaced
        value = compute()
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
        return value


_CONTEXTS: OrderedDict[tuple, Context] = OrderedDict()
MODELS_KEPT = 4  # loaded models a process keeps: a model grid's units may come in any order to a worker


def get_context(cell: Cell, batch_size: int, device: str) -> Context:
    key = (cell.model_key, cell.dataset, cell.dataset_params, cell.n, cell.seed, device)
    if key not in _CONTEXTS:
        if any(k[1:] != key[1:] for k in _CONTEXTS):  # another dataset: the loaded models' data is stale
            _CONTEXTS.clear()
        _CONTEXTS[key] = Context(cell, batch_size, device)
        while len(_CONTEXTS) > MODELS_KEPT:
            _CONTEXTS.popitem(last=False)
    _CONTEXTS.move_to_end(key)
    ctx = _CONTEXTS[key]
    ctx.batch_size = batch_size
    return ctx


def seed_everything(*parts) -> None:
    """Seed NumPy (ART's random starts, noise defenses), torch and random from the unit's key, so a
    result does not depend on which units ran before it or in which process."""
    seed = int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16)
    np.random.seed(seed)
    random.seed(seed)
    torch.manual_seed(seed)


def group_cells(cells: list[Cell]) -> list[list[Cell]]:
    """Cells grouped by the attack run they share, in grid order."""
    groups: dict[tuple, list[Cell]] = {}
    for c in cells:
        groups.setdefault(c.attack_run, []).append(c)
    return list(groups.values())


def plan_units(cells: list[Cell], n_samples: int, shard_size: int | None, is_done,
               cache_dir: str | None = None) -> list[Unit]:
    """Units still to run, model-major then shard-major (one model at a time; units over one shard run
    together and share its images and clean predictions). ``is_done(cell, shard)`` tells what a
    previous run already stored."""
    size = shard_size or n_samples
    bounds = [(k, s, min(s + size, n_samples)) for k, s in enumerate(range(0, n_samples, size))]
    by_model: dict[tuple, list[list[Cell]]] = {}
    for group in group_cells(cells):
        by_model.setdefault(group[0].model_key, []).append(group)
    units = []
    for groups in by_model.values():
        for k, start, stop in bounds:
            for group in groups:
                todo = tuple(c for c in group if not is_done(c, k))
                if todo:
                    units.append(Unit(todo, k, start, stop, cache_dir, keeps_best_iterate(group)))
    return units


def shard_count(n_samples: int, shard_size: int | None) -> int:
    return 1 if not shard_size else -(-n_samples // shard_size)


def apply_defense(defense, x: np.ndarray, batch_size: int) -> np.ndarray:
    if defense is None:
        return x
    return np.concatenate([defense(x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)]).astype(np.float32)


def make_cell_defense(cell: Cell, classifier):
    """The cell's defense for ``classifier`` (None for ``none``)."""
    return make_defense(cell.defense_name, classifier, **dict(cell.defense_params))


def attacked_classifier(cell: Cell, ctx: Context):
    """The classifier ``cell``'s attack sees: the undefended one, or one carrying the defense as the
    cell's threat model says, its gradients averaged over the threat model's EoT draws."""
    target_defense = make_cell_defense(cell, ctx.classifier) if cell.crafts_against_defense else None
    attacker_pre, _ = attacker_preprocessors(target_defense, cell.threat_model, resolve_device(ctx.device))
    eot = get_threat_model(cell.threat_model).eot
    return with_defenses(ctx.classifier, attacker_pre, eot_draws=eot) if attacker_pre else ctx.classifier


def craft(cell: Cell, ctx: Context, x: np.ndarray, y: np.ndarray, shard: int, attacked=None,
          best_iterate: bool = False) -> np.ndarray:
    """The adversarial examples of ``cell``'s attack run for images ``x`` (labels ``y``) of shard
    ``shard`` against ``attacked`` (default: ``attacked_classifier(cell, ctx)``); the parameters and
    seed are the run's, so the same shard gives the same examples in any process (the runner's units
    and the report's example panels both craft here). ``best_iterate`` is ``keeps_best_iterate`` of the
    run; it is kept off for a random defense. Early stop needs it and the preset's ``early_stop=true``:
    the sweep reports NDCG and MRR, which an early-stopped (minimal) example would raise."""
    attacked = attacked or attacked_classifier(cell, ctx)
    params = dict(cell.attack_params)
    if cell.eps is not None:
        params["eps"] = cell.eps
    if "best_iterate" in ATTACKS.resolve(cell.attack_name)[0].params:
        best = bool(best_iterate and params.get("best_iterate") is not False
                    and not (cell.crafts_against_defense and is_random(cell, ctx, x)))
        params["best_iterate"], params["early_stop"] = best, best and params.get("early_stop") is True
    params.setdefault("batch_size", ctx.batch_size)
    seed_everything(cell.seed, cell.attack_key, shard)
    attack = make_attack(cell.attack_name, attacked, **params)
    x_adv = attack.generate(x, y=y).astype(np.float32)
    ctx.fooled_at = getattr(attack, "fooled_at", None)  # tracked with the best iterate
    return x_adv


def is_random(cell: Cell, ctx: Context, x: np.ndarray) -> bool:
    """Whether ``cell``'s defense draws at random (the probe the checks read, kept for later units)."""
    key = ("randomized", cell.defense_name, cell.defense_params)
    if key not in ctx.probes:
        ctx.probes[key] = probes.is_randomized(make_cell_defense(cell, ctx.classifier), x, ctx.batch_size,
                                               apply_defense, seed_everything)
    return ctx.probes[key]


def defend(cell: Cell, defense, shard: int, batch_size: int, *inputs: np.ndarray) -> list[np.ndarray]:
    """Each of ``inputs`` through the cell's ``defense``, seeded by cell and shard as the run does. A
    random defense draws its noise in turn, so pass what the run passed: clean, then adversarial."""
    seed_everything(cell.seed, cell.id, "defense", shard)
    return [apply_defense(defense, x, batch_size) for x in inputs]


def run_unit(unit: Unit, batch_size: int = 32, device: str = "auto", loader_workers: int = 0,
             on_event: Event = _quiet) -> list[ShardResult]:
    """Attack one shard once for the unit's cells, evaluate each cell's defense, return records."""
    device_type = resolve_device(device)
    first = unit.cells[0]
    ctx = get_context(first, batch_size, device)
    ds, base = ctx.dataset, ctx.classifier
    x = ds.images(range(unit.start, unit.stop), workers=loader_workers)
    y = ds.y[unit.start:unit.stop]
    ids = ds.ids[unit.start:unit.stop]
    clean_probs = ctx.clean_probs(unit.start, unit.stop, x)

    attacked = attacked_classifier(first, ctx)
    # Probes run before craft and defend set their seeds, so every result is as it would be without them.
    key = ("zero gradient", first.attack_target, unit.start, unit.stop)
    if key not in ctx.probes:
        ctx.probes[key] = probes.zero_gradient_share(attacked, x, y, batch_size)
    zero_share = ctx.probes[key]

    on_event("attack", cell=first, unit=unit)
    t0 = time.perf_counter()
    with count_passes(ctx.classifier.model) as passes:  # the network every attacked classifier shares
        x_adv = craft(first, ctx, x, y, unit.shard, attacked, unit.best_iterate)
    attack_seconds = time.perf_counter() - t0
    adv_probs = ctx.predict(x_adv)

    results = []
    for cell in unit.cells:
        on_event("defense", cell=cell, unit=unit)
        defense = make_cell_defense(cell, base)
        _, gradient = attacker_preprocessors(defense, cell.threat_model, device_type)
        randomized = is_random(cell, ctx, x)
        found = {"defense_randomized": randomized, "gradient_zero_share": zero_share,
                 "num_classes": ds.num_classes}  # chance level of the model_sanity check
        t0 = time.perf_counter()
        if defense is None:
            def_clean, def_adv = clean_probs, adv_probs
        elif randomized:  # fresh draws for every cell, clean then adversarial, as seeded
            x_def_clean, x_def_adv = defend(cell, defense, unit.shard, batch_size, x, x_adv)
            def_clean, def_adv = ctx.predict(x_def_clean), ctx.predict(x_def_adv)
        else:
            def_clean = ctx.defended_clean(cell, unit, lambda: ctx.predict(
                defend(cell, defense, unit.shard, batch_size, x)[0]))
            def_adv = ctx.predict(defend(cell, defense, unit.shard, batch_size, x_adv)[0])
        defense_seconds = time.perf_counter() - t0
        if ctx.fooled_at is not None:  # best iterate: the run's cells are scored on the attacked model
            found.update(probes.silent_success(ctx.fooled_at, def_adv, y))
        probs = {"clean": clean_probs, "adv": adv_probs, "def_clean": def_clean, "def_adv": def_adv}
        records = sample_records(ids, y, probs, x, x_adv)
        records["sample"] += unit.start
        records.insert(0, "cell_id", cell.id)
        results.append(ShardResult(cell.id, unit.shard, records, attack_seconds, defense_seconds, gradient, passes,
                                   found))
    return results


def describe(cell: Cell) -> dict:
    """The identifying columns of a summary row."""
    norm = attack_norm(cell.attack_name, dict(cell.attack_params))
    return {"cell_id": cell.id, "model": cell.model_label or cell.model, "dataset": cell.dataset, "attack": cell.attack,
            "eps": cell.eps, "norm": norm, "defense": cell.defense, "threat_model": cell.threat_model,
            "seed": cell.seed}
