"""Run work units. A unit is one attack run (cells sharing attack, budget and attacked model) over
one shard of the data: under ``oblivious`` every defense is evaluated on the same adversarial
examples, crafted once against the undefended model. Units compute and return per-sample records;
they never write, so the same code runs in this process, in worker processes and as Ray tasks.
Model, data and clean predictions are loaded once per process."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from hbbench import audit, probes
from hbbench.attacks import ATTACKS, MarginLoss, attack_norm, has_budget
from hbbench.attacks.early_stop import keeps_best_iterate
from hbbench.classifier import resolve_device, with_loss
from hbbench.defenses import attacker_preprocessors
from hbbench.examples_store import DEFENDED as DEFENDED_EXAMPLES
from hbbench.examples_store import select as select_examples
from hbbench.execution import attacked_classifier, craft, defend, get_context, is_random, make_cell_defense
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
    save_examples: int | None = 0  # adversarial examples each cell keeps: the run's first N images (None: all)


@dataclass
class ShardResult:
    cell_id: str
    shard: int
    records: pd.DataFrame
    attack_seconds: float
    defense_seconds: float
    attack_gradient: str
    passes: PassCount  # forward and backward passes the shard's attack run spent crafting (all its images)
    probes: dict  # what the checks read: defense_randomized, gradient_zero_share (hbbench.probes)
    # sample, sample_id, x_adv (and x_defended) of the images the cell keeps (hbbench.examples_store)
    examples: dict | None = None


def group_cells(cells: list[Cell]) -> list[list[Cell]]:
    """Cells grouped by the attack run they share, in grid order."""
    groups: dict[tuple, list[Cell]] = {}
    for c in cells:
        groups.setdefault(c.attack_run, []).append(c)
    return list(groups.values())


def plan_units(cells: list[Cell], n_samples: int, shard_size: int | None, is_done,
               cache_dir: str | None = None, save_examples: int | None = 0) -> list[Unit]:
    """Units still to run, model-major then shard-major (one model at a time; units over one shard run
    together and share its images and clean predictions). ``is_done(cell, shard)`` tells what a
    previous run already stored; ``save_examples``: the adversarial examples each cell keeps (the
    first N images of the run, None: all)."""
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
                    units.append(Unit(todo, k, start, stop, cache_dir, keeps_best_iterate(group), save_examples))
    return units


def shard_count(n_samples: int, shard_size: int | None) -> int:
    return 1 if not shard_size else -(-n_samples // shard_size)


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
    # The gradient probed is the attack's own: a logit-loss attack (APGD-DLR, the margin loss) follows
    # the logits' differences, which a saturated softmax leaves intact and a one-hot output does not.
    loss = ATTACKS.resolve(first.attack_name)[0].meta.get("loss", "cross-entropy")
    key = ("zero gradient", first.attack_target, loss, unit.start, unit.stop)
    if key not in ctx.probes:
        probed = with_loss(attacked, MarginLoss()) if loss == "logits" else attacked
        ctx.probes[key] = probes.zero_gradient_share(probed, x, y, batch_size)
    zero_share = ctx.probes[key]

    on_event("attack", cell=first, unit=unit)
    t0 = time.perf_counter()
    with count_passes(ctx.classifier.model) as passes:  # the network every attacked classifier shares
        x_adv = craft(first, ctx, x, y, unit.shard, attacked, unit.best_iterate)
    attack_seconds = time.perf_counter() - t0
    # the examples as returned, before they are scored: finite, in range, inside the budget (hbbench.audit)
    audited = audit.shard_facts(x, x_adv, first.eps if has_budget(first.attack_name) else None,
                                attack_norm(first.attack_name, dict(first.attack_params)))
    adv_probs = ctx.predict(x_adv)
    kept = select_examples(unit.start, unit.stop, unit.save_examples)
    examples = {"sample": unit.start + kept, "sample_id": [ids[i] for i in kept], "x_adv": x_adv[kept]} \
        if len(kept) else None  # as crafted: every cell of the run received these inputs

    results = []
    for cell in unit.cells:
        on_event("defense", cell=cell, unit=unit)
        defense = make_cell_defense(cell, base)
        _, gradient = attacker_preprocessors(defense, cell.threat_model, device_type)
        randomized = is_random(cell, ctx, x)
        found = {"defense_randomized": randomized, "gradient_zero_share": zero_share,
                 "num_classes": ds.num_classes, **audited}  # chance level of the model_sanity check
        t0 = time.perf_counter()
        x_def_adv = None
        if defense is None:
            def_clean, def_adv = clean_probs, adv_probs
        elif randomized:  # fresh draws for every cell, clean then adversarial, as seeded
            x_def_clean, x_def_adv = defend(cell, defense, unit.shard, batch_size, x, x_adv)
            def_clean, def_adv = ctx.predict(x_def_clean), ctx.predict(x_def_adv)
        else:
            def_clean = ctx.defended_clean(cell, unit.start, unit.stop, unit.cache_dir, lambda: ctx.predict(
                defend(cell, defense, unit.shard, batch_size, x)[0]))
            x_def_adv = defend(cell, defense, unit.shard, batch_size, x_adv)[0]
            def_adv = ctx.predict(x_def_adv)
        defense_seconds = time.perf_counter() - t0
        if ctx.fooled_at is not None:  # best iterate: the run's cells are scored on the attacked model
            found.update(probes.silent_success(ctx.fooled_at, def_adv, y))
        probs = {"clean": clean_probs, "adv": adv_probs, "def_clean": def_clean, "def_adv": def_adv}
        records = sample_records(ids, y, probs, x, x_adv)
        records["sample"] += unit.start
        records.insert(0, "cell_id", cell.id)
        kept_examples = examples if examples is None or x_def_adv is None else \
            {**examples, DEFENDED_EXAMPLES: x_def_adv[kept]}  # what the network classified: the report shows it
        results.append(ShardResult(cell.id, unit.shard, records, attack_seconds, defense_seconds, gradient, passes,
                                   found, kept_examples))
    return results


def describe(cell: Cell) -> dict:
    """The identifying columns of a summary row."""
    norm = attack_norm(cell.attack_name, dict(cell.attack_params))
    return {"cell_id": cell.id, "model": cell.model_label or cell.model, "dataset": cell.dataset, "attack": cell.attack,
            "eps": cell.eps, "norm": norm, "defense": cell.defense, "threat_model": cell.threat_model,
            "seed": cell.seed}
