"""The run directory: its layout, and the readers and writers of its files, with one error policy.

    <run>/manifest.json                   the spec, its id, the plugins, the status (hbbench.api writes it)
    <run>/cells/<id>.parquet, <id>.json   a finished cell: per-sample records; summary row + integrity record
    <run>/cells/<id>.examples.npz         its stored adversarial examples, when it kept any (hbbench.examples_store)
    <run>/cells/<id>.shards/NNNNN.*       a cell computed shard by shard, before the merge (hbbench.store)
    <run>/summary.csv/.md/.tex            the cells' rows, then the worst-case rows (hbbench.aggregate)
    <run>/checks.csv/.md                  the evaluation checks (hbbench.checks.table)
    <run>/defended_clean/                 deterministic defenses' clean predictions (hbbench.runner)
    <run>/damaged/<time>/                 files a resume set aside (hbbench.store)
    <run>/report.html/.md, report_files/  the report
    <run>/.lock                           names the sweep holding the run

Error policy: a reader that needs a file raises ``HBBenchError`` naming the file and what is wrong
with it (every command prints that as one line and exits 2, no traceback); ``load_json`` returns the
reason instead, for integrity's findings. Every write is atomic (temporary file + rename), so a killed
run never leaves a partial file that reads as a result.

``RunDir.open(path)`` is the one entry point for reading a run (the report's ``load_run`` is built
on it); ``hbbench.store.RunStore`` adds what a sweep writes.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from hbbench import schema
from hbbench.errors import HBBenchError

MANIFEST = "manifest.json"
PARQUET_KEY = b"hbbench"  # a finished cell's Parquet names its cell and spec under this schema key

_UMASK = os.umask(0)
os.umask(_UMASK)


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        """An existing run directory (a manifest or a cells/ folder), else one line saying what to give."""
        run = cls(path)
        if not run.root.is_dir() or not (run.manifest_path.is_file() or run.cells_dir.is_dir()):
            raise HBBenchError(f"{run.root} is not a run directory (no manifest.json, no cells/); give the "
                               "directory `hbbench sweep` printed as its run directory")
        return run

    # ------------------------------------------------------------------------------------------------
    # Layout

    manifest_path = property(lambda self: self.root / MANIFEST)
    cells_dir = property(lambda self: self.root / "cells")
    summary_csv = property(lambda self: self.root / "summary.csv")
    checks_csv = property(lambda self: self.root / "checks.csv")
    defended_clean = property(lambda self: self.root / "defended_clean")
    lock_path = property(lambda self: self.root / ".lock")
    damaged_dir = property(lambda self: self.root / "damaged")

    def cell_json(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.json"

    def cell_parquet(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.parquet"

    def cell_examples(self, cell_id: str) -> Path:
        """The cell's stored adversarial examples (hbbench.examples_store), when it kept any."""
        return self.cells_dir / f"{cell_id}.examples.npz"

    def shards_dir(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.shards"

    def shard(self, cell_id: str, shard: int, suffix: str) -> Path:
        return self.shards_dir(cell_id) / f"{shard:05d}.{suffix}"

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # ------------------------------------------------------------------------------------------------
    # Readers

    def has_cell(self, cell_id: str) -> bool:
        """A cell counts as done only when both files exist (the JSON is written last)."""
        return self.cell_json(cell_id).is_file() and self.cell_parquet(cell_id).is_file()

    def manifest_problem(self) -> str | None:
        """None when manifest.json reads as a JSON object, else what is wrong with it."""
        if not self.manifest_path.is_file():
            return "missing (deleted or never written)"
        return load_json(self.manifest_path)[1]

    def read_manifest(self) -> dict | None:
        """The manifest; None when there is none yet (a new run); a damaged one is named."""
        if not self.manifest_path.is_file():
            return None
        manifest, why = load_json(self.manifest_path)
        if why:
            raise HBBenchError(self._damaged_manifest(why))
        return schema.manifest(manifest)

    def require_manifest(self) -> dict:
        """The manifest of a run that must have one (check, report): missing or damaged, it is named."""
        manifest = self.read_manifest()
        if manifest is None:
            if not self.cells_dir.is_dir():
                raise HBBenchError(f"{self.root} is not a run directory (no manifest.json); run `hbbench sweep` "
                                   "first")
            raise HBBenchError(self._damaged_manifest("missing: deleted or never written"))
        return manifest

    def _damaged_manifest(self, why: str) -> str:
        return (f"{self.manifest_path} is damaged ({why}); `hbbench verify {self.root}` shows the spec its cells "
                f"record; the sweep command that made the run, with --run {self.root.name}, writes it anew")

    def cell_summaries(self) -> list[dict]:
        """The finished cells' summary rows, without their integrity records."""
        rows = [json.loads(p.read_text()) for p in sorted(self.cells_dir.glob("*.json"))]
        return [{k: v for k, v in row.items() if k != "integrity"} for row in rows]

    def read_records(self, cell_id: str) -> pd.DataFrame:
        return pd.read_parquet(self.cell_parquet(cell_id))

    def read_summary(self) -> pd.DataFrame:
        """summary.csv; empty when it holds no row."""
        if not self.summary_csv.is_file():
            raise HBBenchError(f"run {self.root} has no summary.csv yet (no cell finished); run the sweep again "
                               "to resume")
        try:
            return schema.summary(pd.read_csv(self.summary_csv))
        except pd.errors.EmptyDataError:
            return pd.DataFrame()
        except (OSError, ValueError) as exc:
            raise HBBenchError(f"{self.summary_csv} cannot be read ({str(exc).splitlines()[0]}); run the sweep "
                               "again to write it anew") from None

    def read_checks(self) -> pd.DataFrame | None:
        """checks.csv, or None where no checks ran."""
        if not self.checks_csv.is_file():
            return None
        models = ((self.read_manifest() or {}).get("spec") or {}).get("models") or []
        return schema.checks(pd.read_csv(self.checks_csv), [models] if isinstance(models, str) else list(models))

    # ------------------------------------------------------------------------------------------------
    # Writers (atomic)

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.root / name, text)


def newest_run(results: str | Path = "results") -> Path | None:
    """The run directory under ``results`` whose manifest was written last."""
    manifests = sorted(Path(results).glob(f"*/{MANIFEST}"), key=lambda p: p.stat().st_mtime)
    return manifests[-1].parent if manifests else None


def find_runs(folder: str | Path) -> list[Path]:
    """Run directories (those holding manifest.json) at or under ``folder``, not looking inside a run."""
    root = Path(folder)
    if (root / MANIFEST).is_file():
        return [root]
    found = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        found += find_runs(child)
    return found


def load_json(path: Path) -> tuple[dict | None, str | None]:
    """(the object, None), or (None, what is wrong with the file)."""
    try:
        obj = json.loads(path.read_text())
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        return None, f"not valid JSON ({exc})"
    return (obj, None) if isinstance(obj, dict) else (None, "not a JSON object")


# ----------------------------------------------------------------------------------------------------
# What a finished cell records, so that integrity can tell it intact, damaged or another run's


def parquet_stamp(cell_id: str, spec_id: str | None) -> dict[bytes, bytes]:
    """Schema metadata of a cell's Parquet, so a file copied over another cell's is told apart."""
    return {PARQUET_KEY: json.dumps({"cell_id": cell_id, "spec_id": spec_id}).encode()}


def seal(summary: dict, parquet: Path, spec_id: str | None, examples: tuple[Path, int] | None = None) -> dict:
    """``summary`` plus the integrity block its JSON carries (the Parquet, and the examples file with
    its image count where the cell kept any, are already in place)."""
    kept = {"examples": examples[1], "examples_sha256": file_sha256(examples[0])} if examples else {"examples": 0}
    return {**summary, "integrity": {"spec_id": spec_id, "rows": pq.read_metadata(parquet).num_rows,
                                     "parquet_sha256": file_sha256(parquet),
                                     "summary_sha256": summary_sha256(summary), **kept}}


def summary_sha256(summary: dict) -> str:
    """Of the row as JSON reads it back (``default=str`` as it is written), integrity block aside."""
    row = json.loads(json.dumps({k: v for k, v in summary.items() if k != "integrity"}, default=str))
    return hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------
# Atomic writes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are for sharing
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
