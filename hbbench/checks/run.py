"""Run the chosen checks over a run's evidence; write checks.csv / checks.md beside summary.csv."""
from __future__ import annotations

import pandas as pd

from hbbench.checks import CHECKS, STATUSES
from hbbench.checks.evidence import Evidence
from hbbench.store import atomic_write_text

COLUMNS = ["check", "defense", "threat_model", "eps", "status", "reason", "numbers"]


def check_table(ev: Evidence, names) -> pd.DataFrame:
    rows = [r for name in names for r in CHECKS.resolve(name)[0].factory(ev)]
    return pd.DataFrame(rows, columns=COLUMNS)


def failed(table: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """(defense, threat model) -> the checks that failed for it: its numbers are unverified."""
    out: dict[tuple[str, str], list[str]] = {}
    for r in table[table.status == "fail"].itertuples():
        out.setdefault((r.defense, r.threat_model), [])
        if r.check not in out[(r.defense, r.threat_model)]:
            out[(r.defense, r.threat_model)].append(r.check)
    return out


def markdown(table: pd.DataFrame) -> str:
    """The checks table as Markdown, failures first."""
    if table.empty:
        return "no checks ran\n"
    rank = {s: i for i, s in enumerate(STATUSES)}
    view = table.sort_values("status", key=lambda s: s.map(rank), kind="stable").copy()
    view["eps"] = view["eps"].map(lambda e: "—" if pd.isna(e) else f"{e * 255:g}/255")
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(v).replace("|", "/") for v in r) + " |" for r in view.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_checks(root, table: pd.DataFrame) -> None:
    atomic_write_text(root / "checks.csv", table.to_csv(index=False))
    atomic_write_text(root / "checks.md", markdown(table))
