"""The layout version of a run directory, and the one place where an older layout is read as today's.

The manifest records ``schema_version``. Every reader opens a run through hbbench.rundir.RunDir, whose
readers pass what they read through ``manifest``, ``summary`` and ``checks`` here, so no other module
carries an "absent in older runs" branch.

Versions:
- 1: runs written before the manifest recorded a version (up to 2026-12-06). Their spec may name one
  ``model`` instead of ``models``; their checks.csv may lack the ``model`` column (before model grids);
  their summary.csv may lack the pass and time costs per image (before passes were counted).
- 2: today's layout. Runs written before 2026-12-06 say "holds" in summary.csv's ``verdict`` where
  today's say "verified" (the evaluation's word; "holds" read as a defense outcome too): ``summary``
  reads it as "verified", so the report and the leaderboard see one word.
"""
from __future__ import annotations

import pandas as pd

SCHEMA_VERSION = 2
COSTS = ("forward_passes_per_image", "backward_passes_per_image", "seconds_per_image")


def version(manifest: dict | None) -> int:
    return int((manifest or {}).get("schema_version", 1))


def manifest(m: dict) -> dict:
    """The manifest as today's layout writes it (a copy; the file is not rewritten)."""
    m = dict(m)
    spec = m.get("spec")
    if isinstance(spec, dict) and "model" in spec:  # one-model specs, before model grids
        spec = dict(spec)
        spec.setdefault("models", spec.pop("model"))
        m["spec"] = spec
    m["schema_version"] = SCHEMA_VERSION
    return m


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """summary.csv with every column today's writes; a cost a run did not record is NaN."""
    if df.empty:
        return df
    if "verdict" in df and (df.verdict == "holds").any():  # the evaluation's word before "verified"
        df = df.assign(verdict=df.verdict.replace("holds", "verified"))
    missing = [c for c in COSTS if c not in df]
    return df.assign(**{c: float("nan") for c in missing}) if missing else df


def checks(df: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """checks.csv with its ``model`` column: a run written before model grids had one model."""
    if "model" in df or len(models) != 1:
        return df
    return df.assign(model=models[0])
