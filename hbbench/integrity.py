"""Integrity findings: what a run directory holds after it left hbbench (copied, synced, archived,
restored, edited), as a pure function of the directory. Nothing here writes or moves a file.

Each finished cell records what it takes to verify it (hbbench.rundir.seal): its JSON carries an
``integrity`` block (the run's spec id, the row count and SHA-256 of its Parquet, the SHA-256 of the
summary row itself); its Parquet names its cell and spec id in the schema's key-value metadata.
``inspect_cell`` finds a cell ok, damaged, missing or foreign (another run's). ``hbbench verify``
prints hbbench.verification's findings; a resume sets the files it names aside (hbbench.store) and
recomputes those cells; the report leaves ``damaged_cells`` out and names them."""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hbbench.labels import eps_label
from hbbench.rundir import MANIFEST, PARQUET_KEY, RunDir, file_sha256, load_json, summary_sha256

OK, DAMAGED, MISSING, FOREIGN = "ok", "damaged", "missing", "foreign"
CELL_FILE = re.compile(r"^([0-9a-f]{12})\.(json|parquet|shards|examples\.npz)$")


@dataclass(frozen=True)
class Finding:
    status: str
    path: str  # relative to the run directory: the file to look at
    reason: str = ""
    cell_id: str | None = None  # the grid cell these files belong to
    files: tuple = ()  # what resume sets aside (a damaged cell: both of its files)


# ----------------------------------------------------------------------------------------------------
# Checking


def inspect_cell(root: Path, cell_id: str, spec_id: str | None) -> Finding:
    """One cell of the run in ``root`` against the run's spec id (None when it is not known)."""
    js, pq_, ex = f"cells/{cell_id}.json", f"cells/{cell_id}.parquet", f"cells/{cell_id}.examples.npz"
    present = tuple(p for p in (js, pq_, ex) if (root / p).is_file())

    def bad(path, reason, status=DAMAGED):
        return Finding(status, path, reason, cell_id, present)

    if not present:
        return Finding(MISSING, f"cells/{cell_id}", "not computed", cell_id)
    if js not in present and (root / f"cells/{cell_id}.shards").is_dir():
        return Finding(MISSING, f"cells/{cell_id}", "killed before its shards were merged", cell_id)
    if js not in present:
        return bad(pq_ if pq_ in present else ex, "its JSON is missing")
    if pq_ not in present:
        return bad(js, "its Parquet is missing")
    summary, why = load_json(root / js)
    if why:
        return bad(js, why)
    if summary.get("cell_id") != cell_id:
        return bad(js, f"holds the summary of cell {summary.get('cell_id')} (copied over?)")
    record = summary.get("integrity")
    if record is None:
        return _inspect_legacy(root, cell_id, summary, bad)
    if not isinstance(record, dict):
        return bad(js, "its integrity record is not a JSON object")
    if spec_id and record.get("spec_id") != spec_id:
        return bad(js, f"belongs to another run (spec {record.get('spec_id')}; this run's is {spec_id})", FOREIGN)
    if record.get("summary_sha256") != summary_sha256(summary):
        return bad(js, "changed after it was written (its summary does not match its recorded SHA-256)")
    meta = _parquet_meta(root / pq_)
    if meta is None:
        return bad(pq_, "not a readable Parquet file (truncated?)")
    rows, stamp = meta
    if rows != record.get("rows"):
        return bad(pq_, f"has {_rows(rows)}, its JSON records {record.get('rows')}")
    if stamp.get("cell_id") != cell_id:
        return bad(pq_, f"holds the records of cell {stamp.get('cell_id')} (copied over?)")
    if stamp.get("spec_id") != record.get("spec_id"):
        return bad(pq_, f"belongs to another run (spec {stamp.get('spec_id')}; its JSON's is {record.get('spec_id')})",
                   FOREIGN)
    if file_sha256(root / pq_) != record.get("parquet_sha256"):
        return bad(pq_, "changed after it was written (its SHA-256 is not the one its JSON records)")
    return _inspect_examples(root, ex, record, bad) or Finding(OK, f"cells/{cell_id}", cell_id=cell_id)


def _inspect_examples(root: Path, ex: str, record: dict, bad) -> Finding | None:
    """The cell's stored adversarial examples against its seal: None when they are intact (or when
    the cell kept none and none is there)."""
    if not record.get("examples_sha256"):
        return bad(ex, "an examples file its JSON does not record (copied in?)") if (root / ex).is_file() else None
    if not (root / ex).is_file():
        return bad(ex, f"missing: its JSON records {record.get('examples')} stored adversarial examples")
    if file_sha256(root / ex) != record["examples_sha256"]:
        return bad(ex, "changed after it was written (its SHA-256 is not the one its JSON records)")
    return None


def _inspect_legacy(root: Path, cell_id: str, summary: dict, bad) -> Finding:
    """A cell written before cells recorded their integrity: kept when its Parquet reads whole and
    has the row count its summary says (recomputing every old run on upgrade would cost hours)."""
    path = f"cells/{cell_id}.parquet"
    try:
        rows = pq.read_table(root / path).num_rows
    except (pa.ArrowException, OSError, ValueError):
        return bad(path, "not a readable Parquet file (truncated?)")
    if rows != summary.get("n"):
        return bad(path, f"has {_rows(rows)}, its JSON records n = {summary.get('n')}")
    return Finding(OK, f"cells/{cell_id}", "written without an integrity record (older hbbench): both files "
                   "parse and agree on the row count", cell_id)


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _parquet_meta(path: Path) -> tuple[int, dict] | None:
    """(row count, hbbench stamp) from the Parquet footer, or None when the file is not Parquet."""
    try:
        meta = pq.read_metadata(path)
    except (pa.ArrowException, OSError, ValueError):
        return None
    try:
        stamp = json.loads((meta.metadata or {}).get(PARQUET_KEY, b"{}"))
    except ValueError:
        stamp = {}
    return meta.num_rows, stamp if isinstance(stamp, dict) else {}


def inspect_cells(root: Path, spec_id: str | None, cell_ids, optional_ids=()) -> list[Finding]:
    """The grid's cells, the optional ones present (what the costly checks added), then everything
    else in cells/ as foreign (hidden files aside: temporaries of atomic writes are cleaned by the
    sweep, and .DS_Store-like files are harmless)."""
    findings = [inspect_cell(root, c, spec_id) for c in cell_ids]
    findings += [f for f in (inspect_cell(root, c, spec_id) for c in optional_ids) if f.status != MISSING]
    ours = set(cell_ids) | set(optional_ids)
    for p in sorted((root / "cells").iterdir()) if (root / "cells").is_dir() else ():
        match = CELL_FILE.match(p.name)
        if p.name.startswith(".") or (match and match.group(1) in ours):
            continue
        what = "a cell that is not in this run's grid" if match else "not a file hbbench writes"
        findings.append(Finding(FOREIGN, f"cells/{p.name}", what, files=(f"cells/{p.name}",)))
    return findings


def manifest_finding(run: RunDir) -> Finding:
    why = run.manifest_problem()
    if why is None:
        return Finding(OK, MANIFEST)
    if not run.manifest_path.is_file():
        return Finding(MISSING, MANIFEST, "deleted or never written")
    return Finding(DAMAGED, MANIFEST, why, files=(MANIFEST,))


def cells_spec_ids(root: Path) -> Counter:
    """How many cells in cells/ record each spec id (what a lost manifest's spec was)."""
    ids = Counter()
    for p in (root / "cells").glob("*.json"):
        summary, _ = load_json(p)
        record = (summary or {}).get("integrity")
        if isinstance(record, dict) and record.get("spec_id"):
            ids[record["spec_id"]] += 1
    return ids


def damaged_cells(root: Path, spec_id: str | None, summary) -> dict[str, tuple[str, Finding]]:
    """For the report: {cell id: (what the cell measured, finding)} for each cell ``summary`` names
    whose files are not intact."""
    out = {}
    for row in summary.itertuples():
        finding = inspect_cell(root, row.cell_id, spec_id)
        if finding.status != OK:
            eps = "" if pd.isna(row.eps) else f" eps {eps_label(row.eps)}"
            out[row.cell_id] = (f"{row.attack}{eps} × {row.defense} ({row.threat_model})", finding)
    return out
