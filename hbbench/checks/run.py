"""Choose the checks and run them over a run's evidence."""
from __future__ import annotations

import pandas as pd

from hbbench.checks import CHECKS, LEVELS, evaluate  # noqa: F401  (importing evaluate registers the checks)
from hbbench.checks.evidence import Evidence
from hbbench.checks.table import COLUMNS
from hbbench.errors import HBBenchError


def resolve_checks(text: str | None) -> tuple[str, ...]:
    """'none' | 'default' (the cheap checks) | 'full' (all) | a comma list of check names."""
    text = "default" if text is None else str(text).strip()
    if text == "none":
        return ()
    if text in ("default", "full"):
        return tuple(e.name for e in CHECKS.entries() if text == "full" or e.meta["cost"] == "cheap")
    names = [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        if name not in CHECKS:
            raise HBBenchError(f"unknown check '{name}'; valid choices: {', '.join(LEVELS)} or check names "
                               f"{', '.join(CHECKS.names())}")
    return tuple(dict.fromkeys(names))


def check_table(ev: Evidence, names) -> pd.DataFrame:
    """Each check's rows over each model's evidence. A cell whose examples failed the audit (hbbench.audit)
    stays out of every comparison: only a check registered with ``audit=True`` (``budget``) sees it."""
    rows = [{**r, "cost": entry.meta["cost"]} for one in ev.per_model() for name in names
            for entry in [CHECKS.resolve(name)[0]]
            for r in entry.factory(one if entry.meta.get("audit") else one.valid_only())]
    return pd.DataFrame(rows, columns=COLUMNS)
