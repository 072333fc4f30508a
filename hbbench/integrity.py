"""Integrity of a run directory after it left hbbench: copied, synced, archived, restored, edited.

Each finished cell records what it takes to verify it. Its JSON carries an ``integrity`` block (the
run's spec id, the row count and SHA-256 of its Parquet, the SHA-256 of the summary row itself); its
Parquet names its cell and spec id in the schema's key-value metadata. ``check_cell`` finds a cell
ok, damaged, missing or foreign (another run's). Resume sets damaged and foreign files aside under
``<run>/damaged/<time>/`` and recomputes those cells; ``hbbench verify`` prints every finding; the
report leaves damaged cells out and names them."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hbbench.errors import HBBenchError
from hbbench.spec import SweepSpec

OK, DAMAGED, MISSING, FOREIGN = "ok", "damaged", "missing", "foreign"
PARQUET_KEY = b"hbbench"
CELL_FILE = re.compile(r"^([0-9a-f]{12})\.(json|parquet|shards)$")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Finding:
    status: str
    path: str  # relative to the run directory: the file to look at
    reason: str = ""
    cell_id: str | None = None  # the grid cell these files belong to
    files: tuple = ()  # what resume sets aside (a damaged cell: both of its files)


# ----------------------------------------------------------------------------------------------------
# Writing: what a finished cell records


def parquet_stamp(cell_id: str, spec_id: str | None) -> dict[bytes, bytes]:
    """Schema metadata of a cell's Parquet, so a file copied over another cell's is told apart."""
    return {PARQUET_KEY: json.dumps({"cell_id": cell_id, "spec_id": spec_id}).encode()}


def seal(summary: dict, parquet: Path, spec_id: str | None) -> dict:
    """``summary`` plus the integrity block its JSON carries (the Parquet is already in place)."""
    import pyarrow.parquet as pq

    return {**summary, "integrity": {"spec_id": spec_id, "rows": pq.read_metadata(parquet).num_rows,
                                     "parquet_sha256": _file_sha256(parquet),
                                     "summary_sha256": summary_sha256(summary)}}


def summary_sha256(summary: dict) -> str:
    """Of the row as JSON reads it back (``default=str`` as the store writes), integrity block aside."""
    row = json.loads(json.dumps({k: v for k, v in summary.items() if k != "integrity"}, default=str))
    return hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------
# Checking


def load_json(path: Path) -> tuple[dict | None, str | None]:
    """(the object, None), or (None, what is wrong with the file)."""
    try:
        obj = json.loads(path.read_text())
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        return None, f"not valid JSON ({exc})"
    return (obj, None) if isinstance(obj, dict) else (None, "not a JSON object")


def check_cell(root: Path, cell_id: str, spec_id: str | None) -> Finding:
    """One cell of the run in ``root`` against the run's spec id (None when it is not known)."""
    js, pq_ = f"cells/{cell_id}.json", f"cells/{cell_id}.parquet"
    present = tuple(p for p in (js, pq_) if (root / p).is_file())

    def bad(path, reason, status=DAMAGED):
        return Finding(status, path, reason, cell_id, present)

    if not present:
        return Finding(MISSING, f"cells/{cell_id}", "not computed", cell_id)
    if js not in present and (root / f"cells/{cell_id}.shards").is_dir():
        return Finding(MISSING, f"cells/{cell_id}", "killed before its shards were merged", cell_id)
    if js not in present:
        return bad(pq_, "its JSON is missing")
    if pq_ not in present:
        return bad(js, "its Parquet is missing")
    summary, why = load_json(root / js)
    if why:
        return bad(js, why)
    if summary.get("cell_id") != cell_id:
        return bad(js, f"holds the summary of cell {summary.get('cell_id')} (copied over?)")
    record = summary.get("integrity")
    if record is None:
        return _check_legacy(root, cell_id, summary, bad)
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
    if _file_sha256(root / pq_) != record.get("parquet_sha256"):
        return bad(pq_, "changed after it was written (its SHA-256 is not the one its JSON records)")
    return Finding(OK, f"cells/{cell_id}", cell_id=cell_id)


def _check_legacy(root: Path, cell_id: str, summary: dict, bad) -> Finding:
    """A cell written before cells recorded their integrity: kept when its Parquet reads whole and
    has the row count its summary says (recomputing every old run on upgrade would cost hours)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

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
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
    except (pa.ArrowException, OSError, ValueError):
        return None
    try:
        stamp = json.loads((meta.metadata or {}).get(PARQUET_KEY, b"{}"))
    except ValueError:
        stamp = {}
    return meta.num_rows, stamp if isinstance(stamp, dict) else {}


def check_cells(root: Path, spec_id: str | None, cell_ids, optional_ids=()) -> list[Finding]:
    """The grid's cells, the optional ones present (what the costly checks added), then everything
    else in cells/ as foreign (hidden files aside: temporaries of atomic writes are cleaned by the
    sweep, and .DS_Store-like files are harmless)."""
    findings = [check_cell(root, c, spec_id) for c in cell_ids]
    findings += [f for f in (check_cell(root, c, spec_id) for c in optional_ids) if f.status != MISSING]
    ours = set(cell_ids) | set(optional_ids)
    for p in sorted((root / "cells").iterdir()):
        match = CELL_FILE.match(p.name)
        if p.name.startswith(".") or (match and match.group(1) in ours):
            continue
        what = "a cell that is not in this run's grid" if match else "not a file hbbench writes"
        findings.append(Finding(FOREIGN, f"cells/{p.name}", what, files=(f"cells/{p.name}",)))
    return findings


def read_manifest(root: Path) -> tuple[dict | None, Finding]:
    if not (root / MANIFEST).is_file():
        return None, Finding(MISSING, MANIFEST, "deleted or never written")
    manifest, why = load_json(root / MANIFEST)
    if why:
        return None, Finding(DAMAGED, MANIFEST, why, files=(MANIFEST,))
    return manifest, Finding(OK, MANIFEST)


def cells_spec_ids(root: Path) -> Counter:
    """How many cells in cells/ record each spec id (what a lost manifest's spec was)."""
    ids = Counter()
    for p in (root / "cells").glob("*.json"):
        summary, _ = load_json(p)
        record = (summary or {}).get("integrity")
        if isinstance(record, dict) and record.get("spec_id"):
            ids[record["spec_id"]] += 1
    return ids


# ----------------------------------------------------------------------------------------------------
# Resume, verify, report


def set_aside_damaged(store, spec, on_event) -> None:
    """Before a resume: move damaged and foreign files under ``<run>/damaged/<time>/`` (never
    deleted), with one ``damaged`` event each, so their cells count as unfinished and are recomputed.
    A run whose intact manifest holds another spec is left alone: ``_refuse_other_spec`` names the
    difference. Without a readable manifest, cells that record another spec (and none this command's)
    mean another command made the run: refused rather than set aside."""
    root, spec_id = store.root, spec.id
    manifest, finding = read_manifest(root)
    if manifest is not None and manifest.get("spec") != spec.to_dict():
        return
    if manifest is None:
        recorded = cells_spec_ids(root)
        if recorded and spec_id not in recorded:
            raise HBBenchError(f"{root / MANIFEST}: {finding.reason}, and the cells in {root} were made by another "
                               f"spec ({', '.join(recorded)}; this command's is {spec_id}): run the command that "
                               f"made this run (same options, --run {root.name}), or use another --run name")
    findings = [finding] if finding.status == DAMAGED else []
    findings += [f for f in check_cells(root, spec_id, *_expected(spec)) if f.status in (DAMAGED, FOREIGN)]
    if not findings:
        return
    aside = _aside_dir(root)
    for f in findings:
        _move(root, f.files, aside)
        then = ("a new one is written from this command's spec" if f.path == MANIFEST else
                "the cell is recomputed" if f.cell_id else "not part of this run")
        on_event("damaged", path=root / f.path, reason=f.reason, action=f"moved to {aside}/; {then}")


def _aside_dir(root: Path) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside, k = root / "damaged" / stamp, 1
    while aside.exists():  # two resumes within a second
        k += 1
        aside = root / "damaged" / f"{stamp}-{k}"
    return aside


def _move(root: Path, files, aside: Path) -> None:
    for rel in files:
        try:
            (aside / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(root / rel, aside / rel)
        except OSError as exc:
            raise HBBenchError(f"cannot move {root / rel} aside to {aside}: {exc.strerror}; nothing was "
                               "deleted") from None


def verify_run(run_dir) -> tuple[str | None, list[Finding]]:
    """(the run's spec id, a finding for the manifest and each cell or stray file). Expected cells
    come from the manifest's spec; without a readable one, from the cell files present, checked
    against the spec id most of them record."""
    root = Path(run_dir)
    if not (root / "cells").is_dir():
        raise HBBenchError(f"{root} is not a run directory (no cells/ folder); give the directory "
                           "`hbbench sweep` printed as its run directory")
    manifest, finding = read_manifest(root)
    spec_id = cell_ids = None
    optional = ()
    if manifest is not None:
        try:
            spec = SweepSpec.from_dict(dict(manifest["spec"]))
            spec_id, (cell_ids, optional) = spec.id, _expected(spec)
        except (KeyError, TypeError, ValueError, HBBenchError) as exc:
            finding = Finding(DAMAGED, MANIFEST, f"its spec cannot be read ({exc})")
        else:
            if manifest.get("spec_id") != spec_id:
                finding = Finding(DAMAGED, MANIFEST, f"its spec_id {manifest.get('spec_id')} is not its spec's "
                                                     f"({spec_id}): edited?")
    if cell_ids is None:
        recorded = cells_spec_ids(root).most_common(1)
        spec_id = recorded[0][0] if recorded else None
        cell_ids = sorted({m.group(1) for p in (root / "cells").iterdir()
                           if (m := CELL_FILE.match(p.name)) and m.group(2) != "shards"})
        finding = Finding(finding.status, MANIFEST, f"{finding.reason}; its cells record spec {spec_id}: run the "
                          f"`hbbench sweep` command that made this run with --run {root.name} to write it anew")
    return spec_id, [finding] + check_cells(root, spec_id, cell_ids, optional)


def _expected(spec) -> tuple[list[str], list[str]]:
    """(the grid's cell ids, the ids of cells the costly checks may have added)."""
    from hbbench.checks.auxiliary import run_cells  # attack metadata: not needed by the report's import
    from hbbench.plugins import load_refs

    load_refs(spec.plugins)  # the grid may name the plugins' entries
    grid = spec.cells()
    return [c.id for c in grid], [c.id for c in run_cells(grid)[len(grid):]]


def damaged_cells(root: Path, spec_id: str | None, summary) -> dict[str, tuple[str, Finding]]:
    """For the report: {cell id: (what the cell measured, finding)} for each cell ``summary`` names
    whose files are not intact."""
    out = {}
    for row in summary.itertuples():
        finding = check_cell(root, row.cell_id, spec_id)
        if finding.status != OK:
            eps = "" if pd.isna(row.eps) else f" eps {row.eps * 255:g}/255"
            out[row.cell_id] = (f"{row.attack}{eps} × {row.defense} ({row.threat_model})", finding)
    return out
