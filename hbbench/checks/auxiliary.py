"""The attack runs the costly checks add to a run: ordinary cells (stored, resumed and run by the
executors like the grid's), over the first ``check_samples`` images, never part of summary.csv.

- ``unbounded``: PGD with a budget covering the whole pixel range, steps of 0.01 (50 by default:
  ``CheckBudgets.unbounded_iters``), no random start (a random start in a whole-range ball is itself a
  random image), through the defense as the threat model dictates; one per defense x threat model
  that crafts against the defense.
- ``not_converged``: each iterative gradient attack of the grid with twice its iterations, same
  budget, defense and threat model.

Both checks read top-1 alone, so their PGD stops early (``early_stop``: the same top-1 as every step
with the best iterate, hbbench.attacks.early_stop, for a fraction of the passes) wherever the runner
keeps the best iterate.
- ``blackbox_beats_whitebox``: ART's SquareAttack (score-based, 100 queries per image by default:
  ``CheckBudgets.square_queries``, hbbench.options) at each
  budget and norm of the grid's gradient attacks, against the defended model (its forward pass as
  is: the attack only reads outputs, so bpda's wrapper changes nothing for it).
"""
from __future__ import annotations

from dataclasses import replace

from hbbench.attacks import ATTACKS, attack_norm
from hbbench.options import DEFAULT_BUDGETS, CheckBudgets
from hbbench.spec import Cell


def unbounded_pgd(budgets: CheckBudgets) -> dict:
    """The ``unbounded`` check's PGD parameters (its eps is the budget: the whole pixel range)."""
    return {"eps": 1.0, "eps_step": 0.01, "max_iter": budgets.unbounded_iters, "num_random_init": 0, "early_stop": True}


def label(name: str, params: dict) -> str:
    inner = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{name}[{inner}]" if inner else name


def with_attack(cell: Cell, name: str, params: dict, eps: float, threat_model: str | None = None) -> Cell:
    """``cell`` with another attack (``eps`` as the cell's budget, as --eps would set it)."""
    return replace(cell, attack=label(name, params), attack_name=name, attack_params=tuple(sorted(params.items())),
                   eps=eps, threat_model=threat_model or cell.threat_model)


def is_iterative_gradient(cell: Cell) -> bool:
    entry = ATTACKS.resolve(cell.attack_name)[0]
    return entry.meta["gradient"] and entry.meta["budget"] and "max_iter" in entry.params


def plan(cells: list[Cell], checks, budgets: CheckBudgets = DEFAULT_BUDGETS) -> dict[str, list[tuple[Cell, Cell | None]]]:
    """check name -> [(added cell, the grid cell it stands beside, or None)], without duplicates."""
    out: dict[str, list[tuple[Cell, Cell | None]]] = {}
    if "unbounded" in checks:
        seen, params = {}, unbounded_pgd(budgets)
        for c in cells:
            if c.scored_on_attacked_model:
                seen.setdefault((c.model_key, c.defense, c.threat_model),
                                (with_attack(c, "pgd", params, params["eps"]), None))
        out["unbounded"] = list(seen.values())
    if "not_converged" in checks:
        out["not_converged"] = []
        for c in cells:
            if is_iterative_gradient(c):
                params = dict(c.attack_params)
                entry = ATTACKS.resolve(c.attack_name)[0]
                params["max_iter"] = 2 * params.get("max_iter", entry.params["max_iter"])
                if "early_stop" in entry.params:
                    params["early_stop"] = True
                out["not_converged"].append((with_attack(c, c.attack_name, params, c.eps), c))
    if "blackbox_beats_whitebox" in checks:
        seen = {}
        for c in cells:
            entry = ATTACKS.resolve(c.attack_name)[0]
            if entry.meta["gradient"] and entry.meta["budget"] and c.scored_on_attacked_model:
                norm = attack_norm(c.attack_name, dict(c.attack_params))
                params = {"max_iter": budgets.square_queries, "norm": norm}
                seen.setdefault((c.model_key, c.defense, c.eps, norm), (with_attack(c, "square", params, c.eps, "bpda"), None))
        out["blackbox_beats_whitebox"] = list(seen.values())
    return out


def added_cells(plan_: dict) -> list[Cell]:
    unique = {}
    for pairs in plan_.values():
        for cell, _ in pairs:
            unique.setdefault(cell.id, cell)
    return list(unique.values())
