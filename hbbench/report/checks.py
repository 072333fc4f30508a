"""The report's headline: worst-case robustness per defense x threat model x eps (summary.csv's
worst-case rows), whether the checks verify it, and the checks that did not pass (checks.csv)."""
from __future__ import annotations

import pandas as pd

from hbbench.checks.table import costly_ran
from hbbench.labels import eps_label
from hbbench.report.data import Run
from hbbench.report.document import Doc, ci, f3, number


def verification(run: Run, defense: str, threat: str) -> str:
    if run.checks is None:
        return "checks not run"
    if run.model_unverified():
        return run.model_unverified()
    if defense == "none":
        return "baseline"
    names = run.failed_checks(defense, threat)
    if names:
        return "unverified: " + ", ".join(names) + " failed"
    return "cheap checks pass (costly ones not run: --checks full)" if costly_ran(run.checks) is False \
        else "checks pass"


def model_sanity_first(doc: Doc, run: Run):
    """Before everything else in the report: each model that does not classify the run's images (its
    model_sanity check failed), since that voids every number below."""
    for label in run.models:
        unverified = run.model_unverified(label, named=len(run.models) > 1)
        if unverified:
            doc.para(f"{unverified} (model_sanity, docs/evaluation.md). Every robustness number of this model "
                     "below is meaningless until it does.", cls="note")


def _decisive(r) -> str:
    value = getattr(r, "decisive_attack", None)  # runs before the remedies have no such column
    return "—" if value is None or pd.isna(value) else str(value)


def _verdict(run: Run, r) -> str:
    """The row's verdict (verified / repaired after ... / unverified (tried: ...)), or for runs before the
    remedies, what the checks say."""
    value = getattr(r, "verdict", None)
    if run.checks is None or value is None or pd.isna(value) or run.model_unverified():
        return verification(run, r.defense, r.threat_model)
    if value == "verified":
        return "baseline" if r.defense == "none" else f"verified ({verification(run, r.defense, r.threat_model)})"
    return str(value)


def worst_case_and_checks(doc: Doc, run: Run):
    doc.heading(2, "Worst case and evaluation checks", "checks")
    if run.worst_case.empty:
        doc.para("No worst-case rows: they need at least two attacks with the same budget.")
    else:
        doc.para("Worst-case robustness: the share of images that survive every attack of the run at that budget "
                 "(an attacker who knows the defense may also ignore it, so bpda's worst case counts the oblivious "
                 "attacks too, and with --checks full the remedy attacks of failed checks). 'decisive attack' broke "
                 "the most images no other attack broke. The verdict is about the evaluation, not the defense: "
                 "'verified' means no check failed; 'repaired' means a check failed and its remedy attacks "
                 "answered it (the number includes them); 'unverified' means a check failed and was not answered "
                 "(docs/evaluation.md): the attack behind the number may have been too weak.")
        rows = []
        for r in run.worst_case.itertuples():
            rows.append([r.defense, r.threat_model, eps_label(r.eps),
                         number(f"{f3(r.defended_adv_top1)} {ci(r.defended_adv_top1_ci_low, r.defended_adv_top1_ci_high)}",
                                {"data-defense": r.defense, "data-threat": r.threat_model,
                                 "data-worst-top1": repr(float(r.defended_adv_top1))}),
                         str(r.attack_gradient).removeprefix("worst of: "), _decisive(r),
                         _verdict(run, r)])
        doc.table(["defense", "threat model", "ε", "worst-case top-1 [95% CI]", "attacks", "decisive attack",
                   "verdict"], rows,
                  table_id="worst-case")
    if run.checks is None:
        doc.para("No evaluation checks ran for this run (`hbbench check RUN_DIR` runs them).")
        return
    counts = run.checks.status.value_counts()
    doc.para(f"Evaluation checks: {counts.get('fail', 0)} failed, {counts.get('warn', 0)} warned, "
             f"{counts.get('pass', 0)} passed, {counts.get('not run', 0)} not run (all in checks.csv).")
    shown = run.checks[run.checks.status.isin(["fail", "warn"])]
    if not shown.empty:
        doc.table(["check", "defense", "threat model", "ε", "status", "reason", "numbers"],
                  [[r.check, r.defense, r.threat_model, eps_label(r.eps), r.status,
                    r.reason, r.numbers] for r in shown.itertuples()], table_id="checks-failed")
