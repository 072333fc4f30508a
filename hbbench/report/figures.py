"""The report's plots: robustness curves over the budget, clean vs adversarial accuracy, and where the
true class lands in each ranking. Curves and points are summary.csv's values and intervals."""
from __future__ import annotations

import hbbench.report.plots as P
from hbbench.threats import crafts_against_defense
from hbbench.report.data import (Run, budget_rows, focus, largest_budget, pick,
                                 setting_label)
from hbbench.report.document import Doc


def curves(doc: Doc, run: Run, colors: dict, costs: dict):
    df = run.summary
    budgeted = [a for a in run.attacks if df[df.attack == a].eps.notna().any()]
    doc.heading(2, "Robustness curves", "curves")
    if not budgeted:
        doc.para("No attack in this run takes a budget ε, so there are no curves; see the tables.")
        return
    clean_top1 = {d: c["defended"] for d, c in costs.items()}
    clean_ndcg = {d: c["ndcg"] for d, c in costs.items()}
    fig = P.robustness_curves(df, "defended_adv_top1", "defended top-1 accuracy (fraction)", budgeted,
                              run.threat_models, colors, clean_top1)
    doc.figure("curves_top1.png", P.png_bytes(fig, crop=False),
               "Defended top-1 accuracy vs attack budget, one line per defense (shaded: 95% bootstrap interval), "
               "one column per threat model. The dashed black line is the undefended model. Compare columns: a "
               "defense whose line drops from the oblivious to the BPDA/adaptive column only looked strong.",
               "defended top-1 versus budget per threat model")
    fig = P.robustness_curves(df, "ndcg", "defended NDCG vs clean ranking (0–1)", budgeted, run.threat_models,
                              colors, clean_ndcg)
    doc.figure("curves_ndcg.png", P.png_bytes(fig, crop=False),
               "Ranking NDCG of the defended output against the clean output vs attack budget (1 = the clean "
               "ranking is fully kept); partial damage and recovery that top-1 cannot show.",
               "defended NDCG versus budget per threat model")


def scatter(doc: Doc, run: Run, colors: dict, markers: dict):
    doc.heading(2, "Clean accuracy vs robustness", "scatter")
    pts = largest_budget(run.summary)
    budgets = ", ".join(setting_label(a, e) for a, e in budget_rows(pts))
    fig = P.clean_vs_robust(pts, run.threat_models, colors, markers)
    doc.figure("clean_vs_robust.png", P.png_bytes(fig),
               f"One point per defense per attack ({budgets}); x = clean top-1 with the defense, y = adversarial "
               "top-1 with the defense, one panel per threat model. Up and right is better; the dashed line joins "
               "each attack's Pareto front; the dotted diagonal is 'no loss under attack'.",
               "clean versus adversarial top-1 per defense and attack")


def rank_shift(doc: Doc, run: Run):
    doc.heading(2, "Where the true class goes", "rank-shift")
    attack, eps = focus(run.summary)
    setting = setting_label(attack, eps)
    rows = {}
    for t in run.threat_models:
        items = []
        for d in run.defenses:
            r = pick(run.summary, attack, eps, d, t)
            if r.empty:
                continue
            # per-image ranks: the bars need them, and summary.csv holds no clean or defended-clean MRR
            rec = run.records[r.cell_id.iloc[0]]
            if d == "none":
                items += [("none · clean", rec.clean_true_rank.to_numpy()),
                          ("none · adversarial", rec.adv_true_rank.to_numpy())]
            else:
                items.append((f"{d} · defended clean", rec.def_clean_true_rank.to_numpy()))
                if crafts_against_defense(d, t):  # else the same adversarial images as 'none · adversarial'
                    items.append((f"{d} · adv., undefended model", rec.adv_true_rank.to_numpy()))
                items.append((f"{d} · adv., defended", rec.def_adv_true_rank.to_numpy()))
        if items:
            rows[t] = items
    fig = P.rank_shift(rows, setting)
    doc.figure("rank_shift.png", P.png_bytes(fig),
               f"Rank of the true class in each output ({setting}, the attack setting that hurts the undefended "
               "model most), one panel per threat model; MRR = mean reciprocal rank of the true class. Under "
               "oblivious all defenses see the same adversarial images; under BPDA each defense is attacked "
               "separately, so its 'adv., undefended model' row shows the examples crafted against it.",
               "rank of the true class in clean, adversarial and defended outputs")
