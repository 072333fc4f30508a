"""A model grid's comparison, before each model's own sections: per model x defense x threat model, clean
top-1 without and with the defense and the defended adversarial top-1 left at the largest budget, with
whether the checks verify it, in one table and one clean-vs-robust scatter (summary.csv's numbers)."""
from __future__ import annotations

import pandas as pd

import hbbench.report.plots as P
from hbbench.labels import eps_label
from hbbench.report.checks import verification
from hbbench.report.data import Run, largest_budget, setting_label
from hbbench.report.document import Doc, TableCell, ci, esc, f3, number


def comparison(run: Run) -> pd.DataFrame:
    """One row per model x defense x threat model: model, defense, threat_model, clean_top1,
    defended_clean_top1, defended_adv_top1 (+ _ci_low, _ci_high), at (what the number is the worst
    of) and verdict."""
    rows = []
    for label in run.models:
        one = run.for_model(label)
        for d in one.defenses:
            for t in one.threat_models:
                row = _robust_row(one, d, t)
                if row is not None:
                    rows.append({"model": label, "defense": d, "threat_model": t, **row,
                                 "verdict": verification(one, d, t)})
    return pd.DataFrame(rows)


def _robust_row(run: Run, defense: str, threat: str) -> dict | None:
    """What stands for a defense under a threat model: its worst case at the largest budget that has one
    (every attack at once), else the attack that leaves it the lowest top-1 at its largest budget."""
    wc = run.worst_case
    if not wc.empty:
        wc = wc[(wc.defense == defense) & (wc.threat_model == threat)]
    if not wc.empty:
        r = wc[wc.eps == wc.eps.max()].iloc[0]
        at = f"worst case, ε={eps_label(r.eps)}"
    else:
        cells = run.summary[(run.summary.defense == defense) & (run.summary.threat_model == threat)]
        if cells.empty:
            return None
        r = largest_budget(cells).sort_values("defended_adv_top1", kind="stable").iloc[0]
        at = f"lowest attack: {setting_label(r.attack, r.eps)}"
    return {"clean_top1": r.clean_top1, "defended_clean_top1": r.defended_clean_top1,
            "defended_adv_top1": r.defended_adv_top1, "defended_adv_top1_ci_low": r.defended_adv_top1_ci_low,
            "defended_adv_top1_ci_high": r.defended_adv_top1_ci_high, "at": at}


def models_compared(doc: Doc, run: Run, colors: dict):
    doc.heading(2, "Models compared", "models-compared")
    doc.para("Every model ran on the same images with the same attacks, budgets and seeds, each attacked on its "
             "own. Per model, defense and threat model: clean top-1 without and with the defense, and the "
             "defended adversarial top-1 that remains at the largest budget — the worst case over the run's "
             "attacks where the run has worst-case rows, else the attack that leaves the lowest top-1 (column "
             "'at'). 'unverified' means an evaluation check failed for that model, defense and threat model. "
             "Each model's own sections follow.")
    points = comparison(run)
    rows = []
    for r in points.itertuples():
        rows.append([r.model, r.defense, r.threat_model, number(f3(r.clean_top1)), number(f3(r.defended_clean_top1)),
                     _robust_cell(r), r.at, r.verdict])
    doc.table(["model", "defense", "threat model", "clean top-1, no defense", "clean top-1 with defense",
               "adversarial top-1 with defense [95% CI]", "at", "verdict"], rows, table_id="models")
    fig = P.models_clean_vs_robust(points, run.threat_models, colors, P.label_markers(run.models))
    doc.figure("models_compared.png", P.png_bytes(fig),
               "One point per model per defense (the table's numbers); x = clean top-1 with the defense, y = "
               "adversarial top-1 with the defense, one panel per threat model; colour = defense, shape = model. "
               "Up and right is better; the dotted diagonal is 'no loss under attack'.",
               "clean versus adversarial top-1 per model and defense")


def _robust_cell(r) -> TableCell:
    """The defended adversarial top-1 with its interval; its data attributes carry the row's numbers."""
    interval = ci(r.defended_adv_top1_ci_low, r.defended_adv_top1_ci_high)
    return TableCell(f"{f3(r.defended_adv_top1)} {interval}",
                     f"<b>{f3(r.defended_adv_top1)}</b> <span class='ci'>{esc(interval)}</span>",
                     {"data-model": r.model, "data-defense": r.defense, "data-threat": r.threat_model,
                      "data-clean": repr(float(r.clean_top1)),
                      "data-defended-clean": repr(float(r.defended_clean_top1)),
                      "data-robust": repr(float(r.defended_adv_top1))})
