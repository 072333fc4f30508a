"""The checks table: checks.csv / checks.md beside summary.csv, and what failed (read by the CLI and
the report without importing any attack code)."""
from __future__ import annotations

import pandas as pd

from hbbench.checks import STATUSES
from hbbench.labels import eps_label, markdown_table

COLUMNS = ["check", "cost", "model", "defense", "threat_model", "eps", "status", "reason", "numbers"]
WORST_CASE = "worst_case"  # the attack column of summary.csv's worst-case rows (hbbench.checks.worst_case)
MODEL_CHECK = "model_sanity"  # one row per model (hbbench.checks.sanity): its failure unverifies the whole model
AUDIT_CHECK = "budget"  # the audit (hbbench.checks.budget): its failure leaves a cell out, not a setting unverified


def costly_ran(table: pd.DataFrame | None) -> bool | None:
    """Whether the run's checks include the costly ones (their registry cost, recorded in checks.csv's
    ``cost`` column); None for a run written before that column."""
    if table is None or "cost" not in table:
        return None
    return bool((table.cost == "costly").any())


def model_unverified(table: pd.DataFrame | None, model: str | None = None, named: bool = False) -> str | None:
    """Every verdict of a model whose model_sanity check failed (of ``model`` only, when given), or None;
    ``named``: "the model <model> does not ..." (a grid's lines, outside the model's own sections)."""
    if table is None:
        return None
    rows = table[(table.check == MODEL_CHECK) & (table.status == "fail")]
    if model is not None and "model" in rows:
        rows = rows[rows.model == model]
    if rows.empty:
        return None
    reason = rows.reason.iloc[0]
    return "unverified: " + (reason.replace("the model", f"the model {model}", 1) if named else reason)


def failed(table: pd.DataFrame, model: str | None = None) -> dict[tuple[str, str], list[str]]:
    """(defense, threat model) -> the checks that failed for it (for ``model`` only, when given): its
    numbers are unverified."""
    out: dict[tuple[str, str], list[str]] = {}
    rows = table[(table.status == "fail") & ~table.check.isin([MODEL_CHECK, AUDIT_CHECK])]  # model_unverified;
    # an invalid cell is left out of the worst case and named on its own line (hbbench.progress)
    if model is not None and "model" in rows:  # checks.csv of runs before model grids has no model column
        rows = rows[rows.model == model]
    for r in rows.itertuples():
        names = out.setdefault((r.defense, r.threat_model), [])
        if r.check not in names:
            names.append(r.check)
    return out


def markdown(table: pd.DataFrame) -> str:
    """The checks table as Markdown, failures first."""
    if table.empty:
        return "no checks ran\n"
    rank = {s: i for i, s in enumerate(STATUSES)}
    view = table.sort_values("status", key=lambda s: s.map(rank), kind="stable").copy()
    view["eps"] = view["eps"].map(eps_label)
    return markdown_table(COLUMNS, ([str(v).replace("|", "/") for v in r] for r in view.itertuples(index=False)))


def write_checks(run, table: pd.DataFrame) -> None:
    """checks.csv and checks.md into ``run`` (hbbench.rundir.RunDir, which reads checks.csv back)."""
    run.write_text("checks.csv", table.to_csv(index=False))
    run.write_text("checks.md", markdown(table))
