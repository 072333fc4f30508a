"""Run cells. Cells that share an attack target (same attack, budget and attacked model) share one
attack run: under ``oblivious`` every defense is evaluated on the same adversarial examples, crafted
once against the undefended model. Model, data and clean predictions are loaded once per process."""
from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from hbbench.attacks import ATTACKS, make_attack
from hbbench.classifier import make_classifier, resolve_device, with_defenses
from hbbench.datasets import Dataset, load_dataset
from hbbench.defenses import attack_defenses, make_defense
from hbbench.errors import HBBenchError
from hbbench.models import load_model
from hbbench.records import sample_records, summarize
from hbbench.spec import Cell
from hbbench.store import RunStore

Event = Callable[..., None]


def _quiet(*_, **__):
    pass


@dataclass
class Context:
    """What every cell of one (model, data) pair needs, built once per process."""
    dataset: Dataset
    classifier: object
    clean_probs: np.ndarray
    batch_size: int

    def predict(self, x: np.ndarray, classifier=None) -> np.ndarray:
        logits = (classifier or self.classifier).predict(x, batch_size=self.batch_size)
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


_CONTEXTS: dict[tuple, Context] = {}


def get_context(cell: Cell, batch_size: int, device: str) -> Context:
    key = (cell.model, cell.model_params, cell.data, cell.data_params, cell.n, device)
    if key not in _CONTEXTS:
        _CONTEXTS.clear()  # one model in memory at a time
        model = load_model(cell.model, **dict(cell.model_params))
        data = load_dataset(cell.data, n=cell.n, **dict(cell.data_params))
        if data.num_classes > model.num_classes:
            raise HBBenchError(f"dataset {cell.data} has {data.num_classes} classes but model {cell.model} "
                               f"outputs {model.num_classes}")
        if tuple(data.x.shape[1:]) != tuple(model.input_size):
            raise HBBenchError(f"dataset {cell.data} has images of shape {data.x.shape[1:]} but model "
                               f"{cell.model} expects {model.input_size}")
        clf = make_classifier(model, device=device)
        ctx = Context(data, clf, None, batch_size)
        ctx.clean_probs = ctx.predict(data.x)
        _CONTEXTS[key] = ctx
    ctx = _CONTEXTS[key]
    ctx.batch_size = batch_size
    return ctx


def seed_everything(*parts) -> None:
    """Seed NumPy (ART's random starts, noise defenses), torch and random from the cell's key, so a
    result does not depend on which cells ran before it or in which process."""
    seed = int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16)
    np.random.seed(seed)
    random.seed(seed)
    torch.manual_seed(seed)


def group_cells(cells: list[Cell]) -> list[list[Cell]]:
    """Cells grouped by the attack run they share, in grid order."""
    groups: dict[tuple, list[Cell]] = {}
    for c in cells:
        groups.setdefault(c.attack_key, []).append(c)
    return list(groups.values())


def apply_defense(defense, x: np.ndarray, batch_size: int) -> np.ndarray:
    if defense is None:
        return x
    return np.concatenate([defense(x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)]).astype(np.float32)


def run_group(cells: list[Cell], store: RunStore, batch_size: int = 32, device: str = "auto",
              on_event: Event = _quiet) -> list[dict]:
    """Run the cells of one attack group that are not yet in ``store``; return their summaries."""
    todo = [c for c in cells if not store.has_cell(c.id)]
    if not todo:
        return []
    device_type = resolve_device(device)
    first = todo[0]
    ctx = get_context(first, batch_size, device)
    ds, base = ctx.dataset, ctx.classifier

    # The attacked classifier: undefended, or carrying the defense as the threat model dictates.
    target_defense = None if first.attack_target == ("undefended",) else \
        make_defense(first.defense_name, base, **dict(first.defense_params))
    attacker_pre, _ = attack_defenses(target_defense, first.threat_model, device_type)
    attacked = with_defenses(base, attacker_pre) if attacker_pre else base

    params = dict(first.attack_params)
    if first.eps is not None:
        params["eps"] = first.eps
    params.setdefault("batch_size", batch_size)
    on_event("attack", cell=first)
    seed_everything(first.seed, first.attack_key)
    attack = make_attack(first.attack_name, attacked, **params)
    t0 = time.perf_counter()
    x_adv = attack.generate(ds.x, y=ds.y).astype(np.float32)
    attack_seconds = time.perf_counter() - t0
    adv_probs = ctx.predict(x_adv)

    results = []
    for cell in todo:
        on_event("defense", cell=cell)
        defense = make_defense(cell.defense_name, base, **dict(cell.defense_params))
        _, gradient = attack_defenses(defense, cell.threat_model, device_type)
        seed_everything(cell.seed, cell.id, "defense")
        t0 = time.perf_counter()
        x_def_clean = apply_defense(defense, ds.x, batch_size)
        x_def_adv = apply_defense(defense, x_adv, batch_size)
        defense_seconds = time.perf_counter() - t0
        probs = {"clean": ctx.clean_probs, "adv": adv_probs,
                 "def_clean": ctx.clean_probs if defense is None else ctx.predict(x_def_clean),
                 "def_adv": adv_probs if defense is None else ctx.predict(x_def_adv)}
        records = sample_records(ds.ids, ds.y, probs, ds.x, x_adv)
        records.insert(0, "cell_id", cell.id)
        summary = {**describe(cell), **summarize(records), "attack_gradient": gradient,
                   "attack_seconds": attack_seconds, "defense_seconds": defense_seconds}
        store.write_cell(cell.id, records, summary)
        results.append(summary)
        on_event("cell_done", cell=cell, summary=summary)
    return results


def describe(cell: Cell) -> dict:
    """The identifying columns of a summary row."""
    entry, _ = ATTACKS.resolve(cell.attack_name)
    norm = dict(cell.attack_params).get("norm", entry.params.get("norm", "2" if "eps" not in entry.params else "inf"))
    return {"cell_id": cell.id, "model": cell.model, "dataset": cell.data, "attack": cell.attack,
            "eps": cell.eps, "norm": str(norm), "defense": cell.defense, "threat_model": cell.threat_model,
            "seed": cell.seed}
