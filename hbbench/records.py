"""Per-sample records of one cell and the summary row computed from them. The report reads its
values and intervals from that row (summary.csv) and only computes, from the records, what it lacks."""
from __future__ import annotations

import numpy as np
import pandas as pd

from hbbench import metrics as M

OUTPUTS = ("clean", "adv", "def_clean", "def_adv")
TOP_K = 5


def sample_records(sample_ids, labels: np.ndarray, probs: dict[str, np.ndarray], x: np.ndarray,
                   x_adv: np.ndarray) -> pd.DataFrame:
    """One row per sample: label, top-5 classes and probabilities, true-class probability and rank
    for each output, the ranking NDCG of each output against the clean one, perturbation norms."""
    cols: dict[str, object] = {"sample": np.arange(len(labels)), "sample_id": list(sample_ids), "label": labels}
    for name in OUTPUTS:
        p = probs[name]
        top = np.argsort(-p, axis=1, kind="stable")[:, :TOP_K]
        cols[f"{name}_pred"] = top[:, 0]
        cols[f"{name}_top5"] = list(top)
        cols[f"{name}_top5_prob"] = list(np.take_along_axis(p, top, axis=1).astype(np.float32))
        cols[f"{name}_true_prob"] = M.true_prob(p, labels)
        cols[f"{name}_true_rank"] = M.true_rank(p, labels)
        if name != "clean":
            cols[f"{name}_ndcg"] = M.ranking_ndcg(probs["clean"], p)
    for norm, values in M.perturbation_norms(x, x_adv).items():
        cols[norm] = values
    return pd.DataFrame(cols)


def _top1(r, name):
    return float((r[f"{name}_pred"] == r["label"]).mean())


def _top5(r, name):
    return float(np.mean([lab in top for lab, top in zip(r["label"], r[f"{name}_top5"])]))


def summarize(r: pd.DataFrame, ci_seed: int = 0) -> dict:
    """The summary-row metrics of one cell (the contract in results/README.md), with 95% bootstrap CIs."""
    correct_def_adv = (r["def_adv_pred"] == r["label"]).to_numpy(float)
    row = {
        "n": int(len(r)),
        "clean_top1": _top1(r, "clean"),
        "adv_top1": _top1(r, "adv"),
        "defended_clean_top1": _top1(r, "def_clean"),
        "defended_adv_top1": _top1(r, "def_adv"),
        "clean_top5": _top5(r, "clean"),
        "defended_adv_top5": _top5(r, "def_adv"),
        "attack_success_rate": float(M.attack_success_rate(r["def_clean_pred"].to_numpy(),
                                                           r["def_adv_pred"].to_numpy(), r["label"].to_numpy())),
        "ndcg": float(r["def_adv_ndcg"].mean()),
        "mrr": float((1.0 / r["def_adv_true_rank"]).mean()),
        "true_prob": float(r["def_adv_true_prob"].mean()),
        "adv_ndcg": float(r["adv_ndcg"].mean()),
        "adv_mrr": float((1.0 / r["adv_true_rank"]).mean()),
        "defended_clean_ndcg": float(r["def_clean_ndcg"].mean()),
        "linf": float(r["linf"].mean()),
        "l2": float(r["l2"].mean()),
    }
    lo, hi = M.bootstrap_ci(correct_def_adv, seed=ci_seed)
    row["defended_adv_top1_ci_low"], row["defended_adv_top1_ci_high"] = float(lo), float(hi)
    lo, hi = M.bootstrap_ci(r["def_adv_ndcg"].to_numpy(float), seed=ci_seed)
    row["ndcg_ci_low"], row["ndcg_ci_high"] = float(lo), float(hi)
    return row
