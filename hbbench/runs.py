"""Runs from Python: ``load_run(path)`` gives a :class:`Run` (its summary, checks, manifest, per-image
records, report, and a short summary in a notebook); ``compare(a, b)`` gives the per-cell differences
between two runs of one grid on the same images, with the paired sign test the checks use.

A run directory is read in one place, :func:`_read`, through the report's reader
(hbbench.report.data.load_run): no second way of reading a run."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from hbbench.checks.stats import a_stronger_than_b
from hbbench.errors import HBBenchError
from hbbench.labels import eps_label
from hbbench.parsing import parse_budget
from hbbench.report import build_report, data
from hbbench.report.document import esc

CELL_KEY = ["model", "dataset", "attack", "eps", "defense", "threat_model"]


def _read(path: str | Path) -> data.Run:
    """The one place this module reads a run directory."""
    return data.load_run(path)


class Run:
    """A finished (or partly finished) run directory, as the report reads it. Cells whose files are
    damaged are left out (``damaged`` names them)."""

    def __init__(self, loaded: data.Run):
        self._run = loaded

    @property
    def path(self) -> Path:
        return self._run.root

    @property
    def name(self) -> str:
        return self._run.root.name

    @property
    def manifest(self) -> dict:
        return self._run.manifest

    @property
    def status(self) -> str:
        """The manifest's status: complete, running or interrupted."""
        return str(self.manifest.get("status", "unknown"))

    @property
    def summary(self) -> pd.DataFrame:
        """summary.csv: one row per intact cell, then the worst-case rows (attack ``worst_case``)."""
        return pd.concat([self._run.summary, self._run.worst_case], ignore_index=True)

    @property
    def checks(self) -> pd.DataFrame | None:
        """checks.csv, or None where no checks ran."""
        return self._run.checks

    @property
    def damaged(self) -> dict:
        """Cell id -> (what the cell measured, why it was left out)."""
        return self._run.damaged

    @property
    def sample(self) -> str:
        """The images the run was measured on: their count and a hash of their ids (runs on other images
        are never compared or ranked with this one)."""
        first = self._run.records[self._run.summary.cell_id.iloc[0]].sort_values("sample")
        ids = "\n".join(map(str, first["sample_id"]))
        return f"{len(first)} images #{hashlib.sha256(ids.encode()).hexdigest()[:8]}"

    def records(self, attack: str | None = None, defense: str | None = None, threat_model: str | None = None,
                eps: float | str | None = None) -> pd.DataFrame:
        """Per-image records of the cells that match (every cell when nothing is given), one row per
        image and cell, the cell's model, attack, eps, defense and threat model in front. ``eps`` is a
        number or a budget as typed on the command line ('4/255')."""
        cells = self._run.summary
        for column, value in (("attack", attack), ("defense", defense), ("threat_model", threat_model)):
            if value is not None:
                cells = cells[cells[column] == value]
        if eps is not None:
            target = parse_budget(eps) if isinstance(eps, str) else float(eps)
            cells = cells[np.isclose(cells.eps.astype(float), target, rtol=0, atol=1e-9)]
        if cells.empty:
            raise HBBenchError(f"run {self.name} has no cell with attack={attack}, defense={defense}, "
                               f"threat_model={threat_model}, eps={eps}")
        frames = [self._run.records[c.cell_id].assign(**{k: getattr(c, k) for k in CELL_KEY})
                  for c in cells.itertuples()]
        out = pd.concat(frames, ignore_index=True)
        return out[CELL_KEY + [c for c in out.columns if c not in CELL_KEY]]

    def report(self, examples: bool = False, **options) -> tuple[Path, Path]:
        """Write report.html and report.md into the run directory (hbbench.report.build_report); the
        example panels (read from the stored adversarial examples) only with ``examples=True``."""
        return build_report(self.path, examples=examples, **options)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}: {self._run.model} on {self._run.dataset}, {self.status})"

    def _repr_html_(self) -> str:
        wc = self._run.worst_case
        rows = "".join(f"<tr><td>{esc(r.defense)}</td><td>{esc(r.threat_model)}</td><td>{eps_label(r.eps)}</td>"
                       f"<td>{r.defended_adv_top1:.3f} [{r.defended_adv_top1_ci_low:.3f}, "
                       f"{r.defended_adv_top1_ci_high:.3f}]</td></tr>" for r in wc.itertuples())
        table = ("<table><tr><th>defense</th><th>threat model</th><th>ε</th><th>worst-case top-1 [95% CI]</th></tr>"
                 f"{rows}</table>") if rows else "<p>no worst-case rows (they need two attacks at one budget)</p>"
        left_out = f"; {len(self.damaged)} damaged cell(s) left out" if self.damaged else ""
        return (f"<p><b>{esc(self.name)}</b>: {esc(self._run.model)} on {esc(self._run.dataset)}, "
                f"{esc(self.sample)}, {len(self._run.summary)} cells, {esc(self.status)}{left_out}</p>{table}")


def load_run(path: str | Path) -> Run:
    """The run directory at ``path`` (HBBenchError, one line, when it is not one)."""
    return Run(_read(path))


def _fooled(run: Run, cell_id: str) -> np.ndarray:
    r = run._run.records[cell_id].sort_values("sample")
    return (r["def_adv_pred"] != r["label"]).to_numpy()


def compare(run_a: Run, run_b: Run) -> pd.DataFrame:
    """Per cell both runs hold (same model, data, attack, budget, defense and threat model): defended
    adversarial top-1 in each (from the per-image records), ``difference`` (b - a), the images only
    one run's attack fooled, and the two-sided exact sign test on them (twice the smaller one-sided p
    of hbbench.checks.stats, at most 1). The runs must hold the same images."""
    if run_a.sample != run_b.sample:
        raise HBBenchError(f"runs {run_a.name} and {run_b.name} hold different images ({run_a.sample} vs "
                           f"{run_b.sample}); compare runs of one grid on the same images")
    a, b = run_a._run.summary, run_b._run.summary
    key = [*CELL_KEY[:3], "_e", *CELL_KEY[4:]]  # eps as a number: an attack without a budget matches too
    merged = a.assign(_e=a.eps.fillna(-1)).merge(b.assign(_e=b.eps.fillna(-1)), on=key, suffixes=("_a", "_b"))
    if merged.empty:
        raise HBBenchError(f"runs {run_a.name} and {run_b.name} share no cell (model, data, attack, budget, "
                           "defense and threat model)")
    rows = []
    for m in merged.itertuples():
        fooled_a, fooled_b = _fooled(run_a, m.cell_id_a), _fooled(run_b, m.cell_id_b)
        test = a_stronger_than_b(fooled_a, fooled_b)
        p_other = a_stronger_than_b(fooled_b, fooled_a).p_value
        top1_a, top1_b = 1 - fooled_a.mean(), 1 - fooled_b.mean()
        rows.append({"model": m.model, "dataset": m.dataset, "attack": m.attack, "eps": m.eps_a,
                     "defense": m.defense, "threat_model": m.threat_model, "n": test.n,
                     "top1_a": top1_a, "top1_b": top1_b, "difference": top1_b - top1_a,
                     "only_a_fooled": test.only_a, "only_b_fooled": test.only_b,
                     "p_value": min(1.0, 2 * min(test.p_value, p_other))})
    return pd.DataFrame(rows)
