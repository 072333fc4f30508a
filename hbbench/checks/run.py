"""Run the chosen checks over a run's evidence."""
from __future__ import annotations

import pandas as pd

from hbbench.checks import CHECKS, import_checks
from hbbench.checks.evidence import Evidence
from hbbench.checks.table import COLUMNS


def check_table(ev: Evidence, names) -> pd.DataFrame:
    import_checks()
    rows = [{**r, "cost": entry.meta["cost"]} for one in ev.per_model() for name in names
            for entry in [CHECKS.resolve(name)[0]] for r in entry.factory(one)]
    return pd.DataFrame(rows, columns=COLUMNS)
