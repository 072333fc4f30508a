"""Remedies: the attacks that answer a failed check (docs/evaluation.md, "Remedies").

Each check declares in its registry entry (beside its cost) the kinds of remedy that answer its
failure. With ``--checks full``, every setting (model x defense x threat model) with a failed check
gets its remedy attacks on every image of the run, as ordinary cells (stored, resumed, run by the
executors like the grid's, never rows of the grid table). Then the setting is checked again: it is
*repaired* when the remedies answer each failed check, else a second round strengthens them; a
setting still failing after that stays *unverified* and names what was tried. Everything a setting's
remedies store counts in its worst case (hbbench.checks.worst_case).

Remedy kinds:
- ``gradient``: under ``adaptive`` with a defense, the same attacks under BPDA (the masking is in the
  defense); otherwise (no defense, or already BPDA: the masking is in the model) APGD with the DLR
  loss and PGD on the C&W margin loss, whose losses do not go through the softmax.
- ``eot``: the same attacks with EoT over 8 draws (16 in the second round).
- ``restarts``: the iterative attacks with 4x the iterations and 5 random restarts.
- ``square``: SquareAttack with 1,000 queries on every image.
Where several checks fail, the kinds compose: ``gradient`` with ``eot`` also plans the gradient
remedies with EoT (BPDA *and* EoT for a random defense without a gradient). The second round applies
``restarts`` to the first round's iterative remedies and doubles EoT; where the masking is in the model,
it adds the attacks that use no gradient of it (hbbench.attacks.without_gradient): HopSkipJump at the
budget, and a transfer from the surrogate model ``--surrogate`` names.

Repaired on evidence, not on a remedy's kind: a failed ``zero_gradient`` or ``unbounded`` is answered
only by a remedy shown to work where the grid's gradient did not: a gradient remedy whose own gradient
(its own loss, through the same path) is zero on at most 20% of the images and whose unbounded twin (the
same attack over the whole pixel range) leaves at most 1% correct; or a gradient-free remedy that breaks
the setting (at most ``BROKEN_TOP1`` correct), since such an attack only bounds robustness from above.
With a random defense, a gradient remedy must also average over EoT draws.
These budgets are the defaults of ``hbbench.options.CheckBudgets`` (``SweepOptions.check_budgets``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hbbench.attacks import ATTACKS, attack_norm
from hbbench.checks import CHECKS, evaluate  # noqa: F401  (registers the checks whose remedies are planned here)
from hbbench.checks import auxiliary, binarization, budget
from hbbench.checks.auxiliary import is_iterative_gradient, unbounded_pgd, with_attack
from hbbench.checks.evaluate import UNBOUNDED_MAX_TOP1, ZERO_GRADIENT_FAIL
from hbbench.checks.evidence import Evidence
from hbbench.checks.stats import a_stronger_than_b
from hbbench.checks.table import AUDIT_CHECK
from hbbench.options import DEFAULT_BUDGETS, CheckBudgets
from hbbench.threats import get_threat_model
from hbbench.spec import Cell

ROUNDS = 2  # a setting still failing after the second round stays unverified
REMEDY = "remedy"  # the key of the remedies' cells in Evidence.auxiliary
LOGIT_LOSSES = ("apgd_dlr", "pgd_margin")  # attacks whose loss does not go through the softmax
PROBE_CHECKS = ("zero_gradient", "unbounded")  # checks of the grid's gradient itself, not of its outcome
BROKEN_TOP1 = 0.1  # a gradient-free remedy verifies a break: at most this robust top-1 is left


@dataclass
class Outcome:
    """What the remedies of one setting did."""
    failed: list[str]  # the checks that failed for it
    tried: list[Cell]  # the remedy cells planned so far (every round reached)
    repaired: bool
    todo: list[Cell]  # remedy cells still to run before the setting is settled


def _attacks(cells: list[Cell]) -> list[Cell]:
    """The grid's gradient attacks with a budget: what a remedy repeats or replaces."""
    out = []
    for c in cells:
        entry = ATTACKS.resolve(c.attack_name)[0]
        if entry.meta["gradient"] and entry.meta["budget"] and c.eps is not None:
            out.append(c)
    return out


def _budgets(cells: list[Cell]) -> dict[tuple, Cell]:
    return {(c.eps, attack_norm(c.attack_name, dict(c.attack_params))): c for c in cells}


def _gradient(cells: list[Cell], _round: int, _spend: CheckBudgets) -> list[Cell]:
    threat = get_threat_model(cells[0].threat_model)
    if cells[0].defense_name != "none" and threat.gradient == "true":  # masking in the defense: BPDA
        bpda = "bpda" if threat.eot == 1 else f"bpda[eot={threat.eot}]"
        return [replace(c, threat_model=bpda) for c in cells]
    out = []  # masking in the model: losses that do not go through the softmax
    for (eps, norm), c in _budgets(cells).items():
        params = {} if norm == "inf" else {"norm": norm}
        out += [with_attack(c, name, params, eps) for name in LOGIT_LOSSES]
    return out


def _eot(cells: list[Cell], round_: int, budgets: CheckBudgets) -> list[Cell]:
    threat = get_threat_model(cells[0].threat_model)
    if not threat.crafted_against_defense:  # an oblivious attacker never runs the defense
        return []
    name = threat.name
    return [replace(c, threat_model=f"{name}[eot={budgets.remedy_eot[round_ - 1]}]") for c in cells]


def _restarts(cells: list[Cell], _round: int, budgets: CheckBudgets) -> list[Cell]:
    out = []
    for c in cells:
        if not is_iterative_gradient(c):
            continue
        entry = ATTACKS.resolve(c.attack_name)[0]
        params = dict(c.attack_params)
        params["max_iter"] = budgets.remedy_iter_factor * params.get("max_iter", entry.params["max_iter"])
        restart = next((k for k in ("num_random_init", "nb_random_init") if k in entry.params), None)
        name = c.attack_name if restart else "pgd"  # BIM has no random start: PGD is BIM with one
        params[restart or "num_random_init"] = budgets.remedy_restarts
        out.append(with_attack(c, name, params, c.eps))
    return out


def _square(cells: list[Cell], _round: int, budgets: CheckBudgets) -> list[Cell]:
    return [with_attack(c, "square", {"max_iter": budgets.remedy_square_queries, "norm": norm}, eps, "bpda")
            for (eps, norm), c in _budgets(cells).items()]


KINDS = {"gradient": _gradient, "eot": _eot, "restarts": _restarts, "square": _square,
         "budget": budget.remedy_cells}  # budget_use, budget_explored: the default step, 4x iterations, restarts


def _with_eot(cells: list[Cell], draws: int) -> list[Cell]:
    """``cells`` whose threat model crafts against the defense, with EoT over ``draws`` draws."""
    out = []
    for c in cells:
        threat = get_threat_model(c.threat_model)
        if threat.crafted_against_defense:
            out.append(replace(c, threat_model=f"{threat.name}[eot={draws}]"))
    return out


def _without_gradient(cells: list[Cell], budgets: CheckBudgets) -> list[Cell]:
    """Where every loss of the model may be masked (the masking is in the model): attacks at the
    grid's L-inf budgets that use no gradient of it."""
    threat = get_threat_model(cells[0].threat_model)
    if cells[0].defense_name != "none" and threat.gradient == "true":
        return []  # the masking is in the defense: BPDA answers it
    out = []
    for (eps, norm), c in _budgets(cells).items():
        if norm != "inf":
            continue
        out.append(with_attack(c, "hsj_eps", {"max_iter": budgets.remedy_hsj_iters,
                                              "max_eval": budgets.remedy_hsj_evals}, eps))
        if budgets.surrogate:
            out.append(with_attack(c, "transfer_pgd", {"surrogate": budgets.surrogate}, eps))
    return out


def twin(cell: Cell, budgets: CheckBudgets) -> Cell:
    """A gradient remedy's unbounded twin: the same attack, loss and threat model over the whole pixel
    range (the ``unbounded`` check's budget and steps): whether its gradient leads anywhere."""
    params = dict(cell.attack_params)
    entry = ATTACKS.resolve(cell.attack_name)[0]
    unbounded = unbounded_pgd(budgets)
    for key, value in unbounded.items():
        if key in entry.params and key != "eps":
            params[key] = value
    if "nb_random_init" in entry.params:
        params["nb_random_init"] = 1
    return with_attack(cell, cell.attack_name, params, unbounded["eps"])


def _twins(remedies: list[Cell], budgets: CheckBudgets) -> list[Cell]:
    return [twin(c, budgets) for c in remedies if ATTACKS.resolve(c.attack_name)[0].meta["gradient"]]


def _round(kinds: list[str], cells: list[Cell], previous: list[Cell], round_: int, known: set,
           budgets: CheckBudgets) -> list[Cell]:
    """Round 1: each kind on the setting's attacks. Round 2: restarts on round 1's iterative remedies
    that had none, and EoT doubled."""
    if round_ == 1:
        planned = [r for kind in kinds for r in KINDS[kind](cells, 1, budgets)]
        if "gradient" in kinds and "eot" in kinds:  # both failed: the gradient remedies with EoT too
            planned += _with_eot(_gradient(cells, 1, budgets), budgets.remedy_eot[0])
    else:
        planned = _restarts([c for c in previous if not dict(c.attack_params).get("num_random_init", 0) > 1
                             and not dict(c.attack_params).get("nb_random_init", 0) > 1], 2, budgets)
        planned += _eot(cells, 2, budgets) if "eot" in kinds else []
        planned += _without_gradient(cells, budgets) if "gradient" in kinds else []
    return list({c.id: c for c in planned if c.id not in known}.values())


def todo(found: dict[tuple, Outcome]) -> list[Cell]:
    """The remedy cells to run next, each once."""
    return list({c.id: c for o in found.values() for c in o.todo}.values())


def with_remedies(ev: Evidence, found: dict[tuple, Outcome]) -> Evidence:
    """``ev`` with the finished remedy cells beside the checks' cells (under REMEDY), for the worst case."""
    done = {c.id: c for o in found.values() for c in o.tried if ev.done(c)}
    return replace(ev, auxiliary={**ev.auxiliary, REMEDY: [(c, None) for c in done.values()]})


def outcomes(ev: Evidence, table, remedies: bool = True, budgets: CheckBudgets = DEFAULT_BUDGETS
             ) -> dict[tuple, Outcome]:
    """(model label, defense, threat model) -> Outcome, for each setting with a failed check, from the
    checks table and what the run directory holds. ``todo`` names the remedy cells to run next; the
    caller runs them and asks again (at most two rounds). ``remedies=False``: none planned."""
    out = {}
    for one in ev.valid_only().per_model():  # an invalid cell is neither repeated nor compared
        label = one.cells[0].model_label or one.cells[0].model
        # an invalid cell (the audit, ``budget``) is already out of the worst case: no remedy answers it
        rows = table[(table.status == "fail") & (table.model == label) & (table.check != AUDIT_CHECK)]
        for (defense, threat), checks in rows.groupby(["defense", "threat_model"], sort=False)["check"]:
            cells = _attacks(one.groups("defense", "threat_model").get((defense, threat), []))
            failed = list(dict.fromkeys(checks))
            out[(label, defense, threat)] = _settle(one, failed, cells, budgets) if cells and remedies else \
                Outcome(failed, [], False, [])
    return out


def _settle(ev: Evidence, failed: list[str], cells: list[Cell], budgets: CheckBudgets) -> Outcome:
    kinds = list(dict.fromkeys(k for name in failed for k in CHECKS.resolve(name)[0].meta.get("remedy", ())))
    known = {c.id for c in ev.cells}
    probed = any(name in PROBE_CHECKS for name in failed)  # the remedies' gradients must show they work
    tried: list[Cell] = []
    for round_ in range(1, ROUNDS + 1):
        new = _round(kinds, cells, tried, round_, known | {c.id for c in tried}, budgets)
        tried += new
        missing = [c for c in new if not ev.done(c)]
        if not missing and probed:  # a twin only where the remedy's own gradient passed its probe
            missing = [t for t in _twins([c for c in new if _gradient_probe_passes(ev, c)], budgets) if not ev.done(t)]
        if missing:
            return Outcome(failed, tried, False, missing)
        if _answered(ev, failed, cells, tried, budgets):
            return Outcome(failed, tried, True, [])
    return Outcome(failed, tried, False, [])


def _gradient_probe_passes(ev: Evidence, remedy: Cell) -> bool:
    """A finished remedy's own gradient (its own loss, through the same path) is zero on at most 20% of
    the images: only then can its unbounded twin tell anything."""
    return ev.summaries[remedy.id].get("gradient_zero_share", 1) <= ZERO_GRADIENT_FAIL


def _works(ev: Evidence, remedy: Cell, random_defense: bool, budgets: CheckBudgets) -> bool:
    """Whether ``remedy`` is shown to work where the grid's gradient did not (the module's docstring)."""
    if not ev.done(remedy):
        return False
    if not ATTACKS.resolve(remedy.attack_name)[0].meta["gradient"]:  # bounds robustness from above only
        return 1 - ev.fooled(remedy, on="defended").mean() <= BROKEN_TOP1
    if random_defense and get_threat_model(remedy.threat_model).eot == 1:
        return False  # one draw of a random defense is not its gradient
    if not _gradient_probe_passes(ev, remedy):
        return False  # its own loss's gradient is masked too
    unbounded = twin(remedy, budgets)
    return ev.done(unbounded) and 1 - ev.fooled(unbounded, on="defended").mean() <= UNBOUNDED_MAX_TOP1


def _answered(ev: Evidence, failed: list[str], cells: list[Cell], remedies: list[Cell], budgets: CheckBudgets) -> bool:
    """Whether the setting passes its failed checks again with the remedies beside its attacks, each
    failed check answered by evidence (where several failed, one remedy must answer them together)."""
    random_defense = "randomized_without_eot" in failed
    for name in failed:
        if name == "randomized_without_eot":
            eot = [c for c in remedies if get_threat_model(c.threat_model).eot > 1]
            rows = CHECKS.resolve(name)[0].factory(replace(ev, cells=eot, auxiliary={})) if eot else []
            if not rows or any(r["status"] != "pass" for r in rows):
                return False
        elif name == "binarization" and not _binarization_passes(ev, cells, remedies):
            return False
        elif name in PROBE_CHECKS and not any(_works(ev, c, random_defense, budgets) for c in remedies):
            return False  # no remedy is shown to work where the grid's gradient did not
    return not _beaten(ev, cells, remedies)


def _binarization_passes(ev: Evidence, cells: list[Cell], remedies: list[Cell]) -> bool:
    """The binarization test again, with the remedies' gradient attacks (each threat model's alone)."""
    ctx = ev.context(cells[0])
    for eps in {c.eps for c in cells}:
        by_threat: dict[str, list[Cell]] = {}
        for c in _attacks([r for r in remedies if r.eps == eps]):
            by_threat.setdefault(c.threat_model, []).append(c)
        results = [binarization.found_share(group, ctx, ev.check_samples) for group in by_threat.values()]
        if not any(conclusive and found >= binarization.MIN_FOUND * conclusive for found, conclusive in results):
            return False
    return True


def _beaten(ev: Evidence, cells: list[Cell], remedies: list[Cell]) -> bool:
    """Whether a reference attack (the checks' Square and doubled-iteration runs, the Square remedy)
    fools significantly more images than the setting's attacks and remedies together, at any eps."""
    defense, threat = cells[0].defense, cells[0].threat_model
    checks_runs = [a for key in ("blackbox_beats_whitebox", "not_converged") for a, _ in ev.auxiliary.get(key, [])]
    for eps in {c.eps for c in cells}:
        ours = [c for c in cells + remedies if c.eps == eps and c.attack_name != "square" and ev.done(c)]
        if not ours:
            continue
        union = np.logical_or.reduce([ev.fooled(c, on="defended") for c in ours])
        references = [a for a in checks_runs + remedies if a.eps == eps and a.defense == defense and ev.done(a)
                      and (a.attack_name == "square" or a.threat_model == threat)]
        for ref in references:
            theirs = ev.fooled(ref, on="defended")
            if a_stronger_than_b(theirs, union[:len(theirs)]).significant:
                return True
    return False


def possible(cells: list[Cell], budgets: CheckBudgets = DEFAULT_BUDGETS) -> list[Cell]:
    """Every remedy cell a run of ``cells`` could hold (every setting failing every check, both
    rounds): the cells resume and verification expect, beside the grid's."""
    kinds = list(KINDS)
    out: dict[str, Cell] = {}
    groups: dict[tuple, list[Cell]] = {}
    for c in _attacks(cells):
        groups.setdefault((c.model_key, c.defense, c.threat_model), []).append(c)
    for group in groups.values():
        first = _round(kinds, group, [], 1, set(), budgets)
        second = _round(kinds, group, first, 2, set(), budgets)
        for c in first + second + _twins(first + second, budgets):
            out.setdefault(c.id, c)
    grid = {c.id for c in cells}
    return [c for c in out.values() if c.id not in grid]


def verdict(outcome: Outcome | None, before: float, after: float, by: str, full: bool) -> str:
    """The worst-case row's verdict on the evaluation (can its number be trusted?): verified (no check
    failed), repaired after <checks> failed: <before> → <after> by <attack>, or unverified (tried: ...).
    ``by``: the remedy attack that broke the most images the grid's missed. These words are the
    evaluation's only: the report says what a defense does in others (hbbench.report.verdicts)."""
    if outcome is None:
        return "verified"
    failed = ", ".join(outcome.failed)
    if outcome.repaired:
        return f"repaired after {failed} failed: {before:.2f} → {after:.2f} by {by}"
    if not outcome.tried:
        hint = "" if full else "; --checks full runs the remedies"
        return f"unverified (tried: nothing{hint}; {failed} failed)"
    tried = ", ".join(dict.fromkeys(f"{c.attack} ({c.threat_model})" for c in outcome.tried))
    return f"unverified (tried: {tried}; {failed} failed)"


def run_cells(cells: list[Cell], budgets: CheckBudgets = DEFAULT_BUDGETS) -> list[Cell]:
    """Every cell a run directory may hold: the grid's, any the costly checks add, any remedy."""
    added = auxiliary.added_cells(auxiliary.plan(cells, [e.name for e in CHECKS.entries()], budgets))
    ids = {c.id for c in cells + added}
    return cells + added + [c for c in possible(cells, budgets) if c.id not in ids]
