"""Turn the cell summaries of a run into the pandas table written as summary.csv / .md / .tex."""
from __future__ import annotations

import pandas as pd

from hbbench.labels import eps_label, markdown_table
from hbbench.rundir import RunDir

COLUMNS = ["model", "dataset", "attack", "eps", "norm", "defense", "threat_model", "n", "clean_top1", "adv_top1",
           "defended_clean_top1", "defended_adv_top1", "clean_top5", "defended_adv_top5", "attack_success_rate",
           "ndcg", "mrr", "true_prob", "linf", "l2", "attack_seconds", "defense_seconds", "cell_id"]
EXTRA = ["attack_gradient", "adv_ndcg", "adv_mrr", "defended_clean_ndcg", "defended_adv_top1_ci_low",
         "defended_adv_top1_ci_high", "ndcg_ci_low", "ndcg_ci_high", "seed", "forward_passes_per_image",
         "backward_passes_per_image", "seconds_per_image"]
SHOWN = ["attack", "eps", "defense", "threat_model", "clean_top1", "defended_clean_top1", "adv_top1",
         "defended_adv_top1", "ndcg", "mrr", "attack_seconds"]


def summary_table(summaries: list[dict], order: list[str] | None = None) -> pd.DataFrame:
    """One row per cell, columns as results/README.md lists them; rows in grid order when ``order``
    (cell ids) is given."""
    df = pd.DataFrame(summaries)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS + EXTRA)
    if order:
        rank = {cid: i for i, cid in enumerate(order)}
        df = df[df["cell_id"].isin(rank)]
        df = df.sort_values("cell_id", key=lambda s: s.map(rank)).reset_index(drop=True)
    return df[COLUMNS + EXTRA + [c for c in df.columns if c not in COLUMNS + EXTRA]]


def _compact(df: pd.DataFrame, columns) -> pd.DataFrame:
    if "model" in df and df["model"].nunique() > 1 and "model" not in columns:  # a model grid: say whose row
        columns = ["model", *columns]
    view = df[[c for c in columns if c in df.columns]].copy()
    if "eps" in view:
        view["eps"] = view["eps"].map(eps_label)
    return view


def markdown(df: pd.DataFrame, columns=SHOWN) -> str:
    """A compact markdown table (eps as a fraction of 255, rates to 3 decimals)."""
    view = _compact(df, columns)
    return markdown_table(list(view.columns), ([_fmt(v) for v in row] for row in view.itertuples(index=False)))


def latex(df: pd.DataFrame, columns=SHOWN) -> str:
    """The same compact table as LaTeX (booktabs), for papers."""
    return _compact(df, columns).to_latex(index=False, float_format="%.3f", escape=True)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "—" if v != v else f"{v:.3f}"  # NaN: a worst-case row has no single attack's numbers
    return str(v)


def write_summary(run: RunDir, order: list[str] | None = None, extra_rows: list[dict] = (),
                  note: str = "") -> pd.DataFrame:
    """summary.csv/.md/.tex: the cells of ``order`` (all cells when None), then ``extra_rows`` (the
    worst-case rows); summary.md opens with ``note`` (which models run with random weights)."""
    df = summary_table(run.cell_summaries(), order)
    if extra_rows:
        extra = pd.DataFrame(list(extra_rows))  # worst-case rows add their decisive attack and verdict
        df = pd.concat([df, extra], ignore_index=True)[list(df.columns) + [c for c in extra if c not in df]]
    run.write_text("summary.csv", df.to_csv(index=False))
    run.write_text("summary.md", note + markdown(df))
    run.write_text("summary.tex", latex(df))
    return df
