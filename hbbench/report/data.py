"""A run directory as the report reads it (manifest, summary.csv, per-sample records), the order
its defenses, attacks, threat models and models are shown in, one model's part of a model grid, and
selections of summary rows."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from hbbench.labels import eps_label
from hbbench.checks.table import WORST_CASE, failed, model_unverified
from hbbench.threats import threat_order
from hbbench.errors import HBBenchError
from hbbench.integrity import damaged_cells
from hbbench.rundir import RunDir
from hbbench.spec import split_items


@dataclass
class Run:
    root: Path
    manifest: dict
    summary: pd.DataFrame  # summary.csv: one row per finished cell, every number the tables show
    records: dict[str, pd.DataFrame]  # cell id -> per-sample records (cells/<id>.parquet)
    worst_case: pd.DataFrame = field(default_factory=pd.DataFrame)  # summary.csv's worst-case rows
    checks: pd.DataFrame | None = None  # checks.csv, None where no checks ran
    damaged: dict = field(default_factory=dict)  # cell id -> (what it measured, Finding): left out
    defenses: list[str] = field(default_factory=list)
    attacks: list[str] = field(default_factory=list)
    threat_models: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # as the user wrote them (summary.csv's model column)

    def failed_checks(self, defense: str, threat: str) -> list[str]:
        """The checks that failed for a defense under a threat model: its numbers are unverified."""
        return [] if self.checks is None else failed(self.checks).get((defense, threat), [])

    def model_unverified(self, model: str | None = None, named: bool = False) -> str | None:
        """Every verdict of the model (``model`` of a grid, ``named`` in the text) when its model_sanity
        check failed, else None."""
        return model_unverified(self.checks, model, named)

    @property
    def spec(self) -> dict:
        return self.manifest.get("spec") or {}

    @property
    def model(self) -> str:
        """The model, or a model grid's models, as the header names them."""
        return ", ".join(self.models)

    def for_model(self, label: str) -> "Run":
        """The run restricted to one model of its grid: a model's tables, curves and verdicts must not
        mix in another model's rows."""
        summary = self.summary[self.summary.model.astype(str) == label].reset_index(drop=True)
        worst = self.worst_case[self.worst_case.model.astype(str) == label].reset_index(drop=True) \
            if not self.worst_case.empty else self.worst_case
        checks = self.checks
        if checks is not None:
            checks = checks[checks.model.astype(str) == label].reset_index(drop=True)
        records = {cid: self.records[cid] for cid in summary["cell_id"]}
        return _with_orders(replace(self, summary=summary, worst_case=worst, checks=checks, records=records))

    @property
    def dataset(self) -> str:
        return str(self.summary.dataset.iloc[0])


def load_run(run_dir: str | Path) -> Run:
    """The run as the report reads it, through ``RunDir`` (every damaged file named, no traceback);
    cells whose files are not intact are left out and listed in ``Run.damaged``."""
    run = RunDir.open(run_dir)
    manifest = run.require_manifest()
    summary = run.read_summary()
    if summary.empty:
        raise HBBenchError(f"run {run.root} has no finished cells; run the sweep again to resume")
    worst = summary[summary.attack == WORST_CASE].reset_index(drop=True)
    summary = summary[summary.attack != WORST_CASE].reset_index(drop=True)
    damaged = damaged_cells(run.root, manifest.get("spec_id"), summary)
    summary = summary[~summary["cell_id"].isin(damaged)].reset_index(drop=True)
    if summary.empty:
        raise HBBenchError(f"run {run.root}: every cell's files are damaged; `hbbench verify {run.root}` names them")
    records = {cid: run.read_records(cid) for cid in summary["cell_id"]}
    return _with_orders(Run(run.root, manifest, summary, records, worst, run.read_checks(), damaged))


def _with_orders(run: Run) -> Run:
    """``run`` with the orders of its defenses, attacks, threat models and models set from its rows."""
    summary, spec = run.summary, run.spec
    run.defenses = _spec_order(["none"] + list(spec.get("defenses") or []), summary["defense"])
    run.attacks = _spec_order(list(spec.get("attacks") or []), summary["attack"])
    run.threat_models = threat_order(summary["threat_model"])
    run.models = _spec_order(split_items(spec.get("models") or []), summary["model"].astype(str))
    return run


def model_slugs(labels: list[str]) -> dict[str, str]:
    """A short file- and anchor-safe name per model label, distinct even where labels differ only in
    characters the slug drops (a weights path, case)."""
    slugs: dict[str, str] = {}
    for label in labels:
        base = re.sub(r"[^a-z0-9_.]+", "-", label.lower())[:40].strip("-.") or "model"  # never holds "--"
        slug, k = base, 2
        while slug in slugs.values():
            slug, k = f"{base}-{k}", k + 1
        slugs[label] = slug
    return slugs


def _spec_order(preferred: list, present) -> list[str]:
    """The labels in ``present``, in the spec's (grid) order first, so colours follow the grid."""
    present = ordered(present)
    return [p for p in dict.fromkeys(map(str, preferred)) if p in present] + \
        [p for p in present if p not in set(map(str, preferred))]


def ordered(values) -> list[str]:
    """Distinct values in order of first appearance."""
    return list(dict.fromkeys(values))


def setting_label(attack: str, eps) -> str:
    """'pgd ε=4/255', or the attack alone when it takes no budget."""
    return attack if pd.isna(eps) else f"{attack} ε={eps_label(eps)}"


def _same_eps(a, b) -> bool:
    return (pd.isna(a) and pd.isna(b)) or (not pd.isna(a) and not pd.isna(b) and abs(a - b) < 1e-12)


def budget_rows(df: pd.DataFrame, attacks: list[str] | None = None) -> list[tuple[str, float]]:
    """(attack, eps) pairs in ``attacks`` order (default: first appearance), budgets ascending."""
    rows = []
    for a in attacks or ordered(df["attack"]):
        eps = df.loc[df.attack == a, "eps"]
        for e in sorted(set(eps.dropna())) + ([np.nan] if eps.isna().any() else []):
            rows.append((a, e))
    return rows


def pick(df: pd.DataFrame, attack, eps, defense=None, threat=None) -> pd.DataFrame:
    """The rows of one attack setting, optionally of one defense and one threat model."""
    m = (df.attack == attack) & df.eps.apply(lambda v: _same_eps(v, eps))
    if defense is not None:
        m &= df.defense == defense
    if threat is not None:
        m &= df.threat_model == threat
    return df[m]


def largest_budget(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of each attack at its largest budget (all of them for an attack without one)."""
    keep = []
    for a in ordered(df.attack):
        sub = df[df.attack == a]
        keep.append(sub if sub.eps.isna().all() else sub[sub.eps == sub.eps.max()])
    return pd.concat(keep)


def focus(df: pd.DataFrame) -> tuple[str, float]:
    """The attack setting the rank-shift view and the examples show: the strongest against the undefended
    model (lowest adversarial top-1), larger budget first on ties."""
    base = df[(df.defense == "none")] if (df.defense == "none").any() else df
    base = base.assign(_e=base.eps.fillna(-1)).sort_values(["adv_top1", "_e"], ascending=[True, False], kind="stable")
    return base.attack.iloc[0], base.eps.iloc[0]
