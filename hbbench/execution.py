"""The execution kit: what crafting and scoring one attack run needs, shared by the unit loop
(hbbench.runner), the costly checks and the remedies. A ``Context`` holds a (model, data) pair, loaded
once per process; seeding, the defenses, ``craft`` and ``defend`` make the same shard give the same
examples in any process."""
from __future__ import annotations

import hashlib
import io
import random
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from hbbench import probes
from hbbench.attacks import ATTACKS, make_attack
from hbbench.classifier import make_classifier, predict_probs, resolve_device, with_defenses
from hbbench.datasets import Dataset, load_dataset
from hbbench.defenses import attacker_preprocessors, make_defense
from hbbench.errors import HBBenchError
from hbbench.models import load_model
from hbbench.spec import Cell
from hbbench.store import atomic_write_bytes
from hbbench.threats import get_threat_model


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

    def defended_clean(self, cell: Cell, start: int, stop: int, cache_dir: str | None, compute) -> np.ndarray:
        """A deterministic defense's predictions on the clean images of a shard: they depend on neither
        the attack nor the budget, so they are computed once per process and, through the run
        directory (``cache_dir``, written atomically), once per run across workers and resumes."""
        key = (cell.model_key, cell.defense_name, cell.defense_params, start, stop)
        if key not in self._defended_clean:
            self._defended_clean[key] = _cached_array(cache_dir, key, compute)
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


def validate_compatible(cell: Cell, model, data: Dataset) -> None:
    """A model and a dataset fit: the same class set where both declare one, enough outputs, the input shape."""
    if data.classes and model.classes and data.classes != model.classes:  # both declared (docs/evaluation.md)
        raise HBBenchError(f"dataset {cell.dataset} is labelled with the {data.classes} classes but model "
                           f"{cell.model_label or cell.model} outputs the {model.classes} classes: the same index "
                           "names another class; use a model of the dataset's classes")
    if data.num_classes > model.num_classes:
        raise HBBenchError(f"dataset {cell.dataset} has {data.num_classes} classes but model {cell.model} "
                           f"outputs {model.num_classes}")
    if tuple(data.sample_shape) != tuple(model.input_size):
        raise HBBenchError(f"dataset {cell.dataset} has images of shape {data.sample_shape} but model "
                           f"{cell.model} expects {model.input_size}")
