"""The report's tables: defended accuracy per threat model, the clean-accuracy cost of each defense,
and the time attacks and defenses took. Values are summary.csv's; only intervals it does not hold are
computed, from the per-sample records."""
from __future__ import annotations

import pandas as pd

from hbbench.labels import eps_label
from hbbench.threats import crafts_against_defense, get_threat_model
from hbbench.metrics import bootstrap_ci
from hbbench.report.data import Run, budget_rows, pick
from hbbench.report.document import Doc, TableCell, ci, f3, number, signed


def clean_costs(run: Run) -> dict[str, dict]:
    """Per defense: clean top-1 without and with it, their paired difference, and the defended clean
    NDCG, from the defense's first cell (no attack is involved)."""
    costs = {}
    for d in run.defenses:
        row = run.summary[run.summary.defense == d].iloc[0]
        rec = run.records[row.cell_id]
        # summary.csv holds no interval for defended clean top-1 nor for the paired change: computed here
        clean = (rec["clean_pred"] == rec["label"]).to_numpy(float)
        defended = (rec["def_clean_pred"] == rec["label"]).to_numpy(float)
        c = {"clean": row.clean_top1, "defended": row.defended_clean_top1,
             "delta": row.defended_clean_top1 - row.clean_top1, "ndcg": row.defended_clean_ndcg}
        c["defended_lo"], c["defended_hi"] = bootstrap_ci(defended, seed=0)
        c["delta_lo"], c["delta_hi"] = bootstrap_ci(defended - clean, seed=0)
        costs[d] = c
    return costs


def main_tables(doc: Doc, run: Run, costs: dict):
    doc.heading(2, "Defended accuracy by attack and defense", "main-table")
    doc.para("Each cell: defended adversarial top-1 (the defense applied to the adversarial input) and the "
             "ranking NDCG against the clean output (the paper's measure), with 95% percentile-bootstrap "
             "intervals over images (1000 resamples, from the per-sample records). 'none' is the undefended model.")
    for t in run.threat_models:
        doc.heading(3, f"Threat model: {t}")
        sub = run.summary[run.summary.threat_model == t]
        rows = []
        for attack, eps in budget_rows(sub, [a for a in run.attacks if a in set(sub.attack)]):
            row = [attack, eps_label(eps)]
            for d in run.defenses:
                r = pick(sub, attack, eps, d)
                row.append(_accuracy_cell(r.iloc[0], t, d) if not r.empty else "—")
            rows.append(row)
        doc.table(["attack", "ε"] + run.defenses, rows, table_id=f"main-{t}",
                  caption=f"Threat model {t}: {get_threat_model(t).description}.")
    _clean_cost_table(doc, run, costs)


def _accuracy_cell(r, threat: str, defense: str) -> TableCell:
    top1, top1_ci = f3(r.defended_adv_top1), ci(r.defended_adv_top1_ci_low, r.defended_adv_top1_ci_high)
    ndcg, ndcg_ci = f3(r.ndcg), ci(r.ndcg_ci_low, r.ndcg_ci_high)
    html_text = (f"top-1 <b>{top1}</b> <span class='ci'>{top1_ci}</span>"
                 f"<span class='sub'>NDCG {ndcg} <span class='ci'>{ndcg_ci}</span></span>")
    return TableCell(f"top-1 {top1} {top1_ci}; NDCG {ndcg} {ndcg_ci}", html_text,
                     {"data-cell-id": r.cell_id, "data-top1": repr(float(r.defended_adv_top1)),
                      "data-ndcg": repr(float(r.ndcg)), "data-threat": threat, "data-defense": defense})


def _clean_cost_table(doc: Doc, run: Run, costs: dict):
    doc.heading(3, "Clean-accuracy cost of each defense (no attack)")
    rows = []
    for d in run.defenses:
        c = costs[d]
        defended_ci, delta_ci = ci(c["defended_lo"], c["defended_hi"]), ci(c["delta_lo"], c["delta_hi"])
        rows.append([d, number(f3(c["clean"]), {"data-clean-top1": repr(float(c["clean"]))}),
                     TableCell(f"{f3(c['defended'])} {defended_ci}",
                               f"<b>{f3(c['defended'])}</b> <span class='ci'>{defended_ci}</span>",
                               {"data-defense": d, "data-defended-clean-top1": repr(float(c["defended"]))}),
                     TableCell(f"{signed(c['delta'])} {delta_ci}",
                               f"{signed(c['delta'])} <span class='ci'>{delta_ci}</span>"),
                     number(f3(c["ndcg"]), {"data-defended-clean-ndcg": repr(float(c["ndcg"]))})])
    doc.table(["defense", "clean top-1, no defense", "clean top-1 with defense [95% CI]",
               "change [95% CI, paired]", "NDCG of defended clean vs clean"], rows, table_id="clean-cost",
              caption="Applies to every threat model: no attack is involved.")


def cost_tables(doc: Doc, run: Run):
    doc.heading(2, "Cost", "cost")
    df = run.summary
    crafted_against = [f"{d} ({t})" if crafts_against_defense(d, t) else "undefended model"
                       for d, t in zip(df.defense, df.threat_model)]
    runs = df.assign(target=crafted_against, per_image=df.attack_seconds / df.n.astype(float))
    rows, seen = [], set()
    for r in runs.itertuples():
        key = (r.attack, -1 if pd.isna(r.eps) else r.eps, r.target)
        if key in seen:
            continue
        seen.add(key)
        rows.append([r.attack, eps_label(r.eps), r.target, _passes(r, "forward"), _passes(r, "backward"),
                     number(f"{r.per_image:.3f}"), number(f"{r.attack_seconds:.2f}")])
    doc.table(["attack", "ε", "crafted against (threat model)", "forward passes / image", "backward passes / image",
               "attack s / image", "attack s total"], rows,
              table_id="attack-cost", caption="One row per attack run; cells that share adversarial examples "
              "(every oblivious cell, and the undefended model under any threat model) share one run. Passes: "
              "through the network while crafting, EoT draws included ('—': a run from before passes were counted).")
    rows = []
    for d in run.defenses:
        sub = df[df.defense == d]
        per = sub.defense_seconds / (2 * sub.n.astype(float))
        rows.append([d, number(f"{per.median():.4f}"), number(f"{per.min():.4f}–{per.max():.4f}"), str(len(sub))])
    doc.table(["defense", "defense s / image (median)", "range over cells", "cells"], rows, table_id="defense-cost",
              caption="Time to apply the defense, per image, over clean and adversarial inputs (2n images per cell); "
                      "the model's forward pass is not included. Seconds on the machine that ran the sweep.")


def _passes(row, kind: str):
    value = getattr(row, f"{kind}_passes_per_image")
    return "—" if pd.isna(value) else number(f"{value:g}", {f"data-{kind}-passes": repr(float(value))})
