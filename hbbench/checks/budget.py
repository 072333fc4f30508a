"""The budget checks (docs/evaluation.md, "The audit" and "Budget use"):

- ``budget``: the audit of every cell's examples as returned (hbbench.audit): finite, in the pixel range,
  inside the budget in the attack's declared norm. A cell that fails it is invalid: it stays out of every
  other check and of the worst case (hbbench.checks.evidence.Evidence.valid_only), and this check names
  its attack and its worst violation.
- ``budget_use``: static, before any image is attacked: an iterative attack whose steps cannot reach its
  budget (max_iter x eps_step, the preset's default step where none is given: eps/4) never explores the
  ball it is credited with.
- ``budget_explored``: from the records: the images an iterative gradient attack failed to fool should
  carry perturbations near eps; when most sit far inside the ball the attack did not explore it.

The remedy of both budget-use checks (kind ``budget``, ``remedy_cells``): the same attack at the preset's
default step (its ``eps_step`` dropped) with 4x the iterations and 5 random restarts (CheckBudgets).
"""
from __future__ import annotations

from hbbench import audit
from hbbench.attacks import ATTACKS, attack_norm
from hbbench.checks import CHECKS
from hbbench.checks.auxiliary import is_iterative_gradient, with_attack
from hbbench.checks.evidence import Evidence
from hbbench.checks.table import AUDIT_CHECK
from hbbench.labels import eps_label
from hbbench.options import CheckBudgets
from hbbench.spec import Cell

REACH_FAIL = 0.5  # steps reaching less than this share of eps fail budget_use (below 1: warn)
FAR_INSIDE = 0.5  # budget_explored: an unfooled image whose perturbation is below this share of eps...
EXPLORED_FAIL, EXPLORED_WARN = 0.5, 0.25  # ...on more than this share of the unfooled images: fail, warn


def _row(check, cell, status, reason, numbers="", eps="cell"):
    return {"check": check, "model": cell.model_label or cell.model, "defense": cell.defense,
            "threat_model": cell.threat_model, "eps": cell.eps if eps == "cell" else eps, "status": status,
            "reason": reason, "numbers": numbers}


def _g(value: float) -> str:
    return f"{value:.3g}"


@CHECKS.register(AUDIT_CHECK, "every example the attack returned is finite, inside the pixel range [0, 1] and "
                 "inside its budget in the attack's norm (the audit); a cell that fails is left out of the "
                 "worst case and of every comparison", cost="cheap", remedy=(), audit=True)
def budget(ev: Evidence) -> list[dict]:
    rows = []
    cells = list(dict.fromkeys([*ev.cells, *(a for pairs in ev.auxiliary.values() for a, _ in pairs)]))
    groups: dict[tuple, list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.defense, c.threat_model, c.eps), []).append(c)
    for group in groups.values():
        done = [c for c in group if ev.done(c)]
        audited = [c for c in done if ev.summaries[c.id].get("audit") in (audit.OK, audit.INVALID)]
        invalid = [c for c in audited if ev.invalid(c)]
        for c in invalid:
            s = ev.summaries[c.id]
            rows.append(_row(AUDIT_CHECK, c, "fail", f"{c.attack} returned examples outside the rules: "
                             f"{s['audit_reason']}; the cell is left out of the worst case and the comparisons",
                             _numbers(s)))
        if invalid:
            continue
        if not audited:
            rows.append(_row(AUDIT_CHECK, group[0], "not run", "no finished cell has the audit of its examples"))
            continue
        rows.append(_row(AUDIT_CHECK, group[0], "pass", f"every example of {len(audited)} attack run(s) is finite, "
                         f"in range and inside its budget ({', '.join(c.attack for c in audited)})"))
    return rows


def _numbers(s: dict) -> str:
    eps = "no budget" if s.get("audit_eps") is None else f"eps {_g(s['audit_eps'])} in L{s['audit_norm']}"
    return (f"{eps}; worst norm {_g(s['audit_norm_worst'])}; over budget {s['audit_over_budget']}, NaN "
            f"{s['audit_nan']}, inf {s['audit_inf']}, out of range {s['audit_out_of_range']} (worst "
            f"{_g(s['audit_range_worst'])}) of {s['audit_n']} images")


def reach(cell: Cell) -> tuple[int, float, float] | None:
    """(steps, step size, radius they reach) of an iterative attack with a budget, by the preset's own
    arithmetic (max_iter x eps_step, the step eps/4 where the preset's default is None: hbbench.attacks);
    None for an attack not judged (no eps_step or no max_iter, or no budget)."""
    entry = ATTACKS.resolve(cell.attack_name)[0]
    if cell.eps is None or not entry.meta.get("budget") or not {"eps_step", "max_iter"} <= set(entry.params):
        return None
    params = dict(cell.attack_params)
    steps, step = params.get("max_iter", entry.params["max_iter"]), params.get("eps_step", entry.params["eps_step"])
    if not isinstance(steps, (int, float)) or (step is not None and not isinstance(step, (int, float))):
        return None
    step = cell.eps / 4 if step is None else float(step)
    return int(steps), step, steps * step


@CHECKS.register("budget_use", "an iterative attack's steps reach its budget: max_iter x eps_step >= eps "
                 f"(fail below {REACH_FAIL} eps); static, before any image is attacked", cost="cheap",
                 remedy=("budget",))
def budget_use(ev: Evidence) -> list[dict]:
    rows = []
    for _, cells in ev.groups("defense", "threat_model", "eps").items():
        judged = [(c, r) for c in cells for r in [reach(c)] if r is not None]
        if not judged:
            continue
        short = [(c, r) for c, r in judged if r[2] < c.eps]
        for c, (steps, step, radius) in short:
            status = "fail" if radius < REACH_FAIL * c.eps else "warn"
            rows.append(_row("budget_use", c, status, f"{c.attack}: {steps} steps of {_g(step)} reach {_g(radius)} "
                             f"< eps {_g(c.eps)} ({eps_label(c.eps)}): the attack cannot explore its budget",
                             f"reach {_g(radius)} = {radius / c.eps:.2f} eps (fail below {REACH_FAIL} eps)"))
        if not short:
            rows.append(_row("budget_use", cells[0], "pass", "every iterative attack's steps reach its budget ("
                             + ", ".join(f"{c.attack}: {r[0]} x {_g(r[1])} = {r[2] / c.eps:.2f} eps" for c, r in judged)
                             + ")"))
    return rows


@CHECKS.register("budget_explored", f"the images an iterative gradient attack failed to fool carry perturbations "
                 f"near eps: fail when more than {EXPLORED_FAIL:.0%} of them stay below {FAR_INSIDE} eps (warn above "
                 f"{EXPLORED_WARN:.0%})", cost="cheap", remedy=("budget",))
def budget_explored(ev: Evidence) -> list[dict]:
    rows = []
    for _, cells in ev.groups("defense", "threat_model", "eps").items():
        results = [r for c in cells if is_iterative_gradient(c) and c.eps is not None and ev.done(c)
                   for r in [_explored(ev, c)] if r is not None]
        if results:
            order = {"fail": 0, "warn": 1, "pass": 2}
            rows.append(min(results, key=lambda r: order[r["status"]]))
    return rows


def _explored(ev: Evidence, cell: Cell) -> dict | None:
    r, norm = ev.records(cell), attack_norm(cell.attack_name, dict(cell.attack_params))
    column = "linf" if norm == "inf" else "l2"
    if r is None or column not in r:
        return None
    size = r.sort_values("sample")[column].to_numpy(float)
    # Unfooled images the attack moved: one it left exactly in place had no gradient to follow at all
    # (zero_gradient's failure, not a step too small).
    kept = ~ev.fooled(cell) & (size > 0)
    if not kept.any():
        return _row("budget_explored", cell, "pass", f"{cell.attack} fooled every image it moved")
    far = size[kept] < FAR_INSIDE * cell.eps - audit.budget_tolerance(cell.eps, norm)
    share = float(far.mean())
    status = "fail" if share > EXPLORED_FAIL else "warn" if share > EXPLORED_WARN else "pass"
    label = audit.NORM_LABEL[norm]
    return _row("budget_explored", cell, status,
                f"{cell.attack}: {int(far.sum())} of the {int(kept.sum())} images it failed to fool carry a "
                f"perturbation below {FAR_INSIDE} eps ({label}): " +
                ("it did not explore the ball" if status != "pass" else "it explored the ball"),
                f"share {share:.2f} (fail above {EXPLORED_FAIL}, warn above {EXPLORED_WARN}); largest {label} of "
                f"those images {_g(size[kept].max())}, eps {_g(cell.eps)}")


def remedy_cells(cells: list[Cell], _round: int, budgets: CheckBudgets) -> list[Cell]:
    """The ``budget`` remedy: each iterative attack at the preset's default step (``eps_step`` dropped)
    with ``remedy_iter_factor`` x the iterations and ``remedy_restarts`` random restarts (BIM, which has
    no random start, as PGD)."""
    out = []
    for c in cells:
        if not is_iterative_gradient(c) or reach(c) is None:
            continue
        entry = ATTACKS.resolve(c.attack_name)[0]
        params = {k: v for k, v in c.attack_params if k != "eps_step"}
        params["max_iter"] = budgets.remedy_iter_factor * params.get("max_iter", entry.params["max_iter"])
        restart = next((k for k in ("num_random_init", "nb_random_init") if k in entry.params), None)
        params[restart or "num_random_init"] = budgets.remedy_restarts
        out.append(with_attack(c, c.attack_name if restart else "pgd", params, c.eps))
    return out


def at_planning(cells: list[Cell]) -> list[dict]:
    """``budget_use``'s failed and warned rows for a grid, from its parameters alone: what the sweep says
    before any image is attacked (the checks table repeats them after the run)."""
    return [r for r in budget_use(Evidence(list(cells), {}, {}, None, 0)) if r["status"] in ("fail", "warn")]
