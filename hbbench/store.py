"""The run directory: one Parquet + one JSON per finished cell, written atomically (temporary
file + rename), so a killed run never leaves a partial file that reads as a result."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from hbbench.errors import HBBenchError
from hbbench.integrity import parquet_stamp, seal


_UMASK = os.umask(0)
os.umask(_UMASK)


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


class RunStore:
    def __init__(self, root: str | Path, spec_id: str | None = None):
        self.root = Path(root)
        self.cells_dir = self.root / "cells"
        self.spec_id = spec_id  # recorded in every finished cell, so another run's cells are told apart

    def ensure_writable(self) -> None:
        """Fail before any work starts if the run directory can't be written."""
        try:
            self.cells_dir.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.cells_dir, prefix=".probe.", delete=True)
            probe.close()
        except OSError as exc:
            raise HBBenchError(f"cannot write to output directory {self.cells_dir}: {exc.strerror}") from None

    def has_cell(self, cell_id: str) -> bool:
        """A cell counts as done only when both files exist (the JSON is written last)."""
        return (self.cells_dir / f"{cell_id}.json").is_file() and (self.cells_dir / f"{cell_id}.parquet").is_file()

    # A cell over a sharded dataset is stored shard by shard under cells/<id>.shards/, then merged.
    def _shard(self, cell_id: str, shard: int, suffix: str) -> Path:
        return self.cells_dir / f"{cell_id}.shards" / f"{shard:05d}.{suffix}"

    def has_shard(self, cell_id: str, shard: int) -> bool:
        return self.has_cell(cell_id) or self._shard(cell_id, shard, "json").is_file()

    def write_shard(self, cell_id: str, shard: int, records: pd.DataFrame, meta: dict) -> None:
        atomic_write_bytes(self._shard(cell_id, shard, "parquet"), _parquet_bytes(records))
        atomic_write_json(self._shard(cell_id, shard, "json"), meta)

    def merge_shards(self, cell_id: str, n_shards: int, summarize) -> dict | None:
        """Once all shards of a cell are stored: stream them into cells/<id>.parquet, write the
        summary ``summarize(records, metas)`` with its integrity record as cells/<id>.json, drop the
        shards."""
        import shutil

        import pyarrow.parquet as pq

        if self.has_cell(cell_id) or not all(self._shard(cell_id, k, "json").is_file() for k in range(n_shards)):
            return None
        final = self.cells_dir / f"{cell_id}.parquet"
        tmp = final.with_name(f".{final.name}.merge.tmp")
        writer = None
        try:
            for k in range(n_shards):
                table = pq.read_table(self._shard(cell_id, k, "parquet"))
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema.with_metadata(
                        {**(table.schema.metadata or {}), **parquet_stamp(cell_id, self.spec_id)}))
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        os.replace(tmp, final)
        metas = [json.loads(self._shard(cell_id, k, "json").read_text()) for k in range(n_shards)]
        summary = summarize(pd.read_parquet(final), metas)
        atomic_write_json(self.cells_dir / f"{cell_id}.json", seal(summary, final, self.spec_id))
        shutil.rmtree(self.cells_dir / f"{cell_id}.shards", ignore_errors=True)
        return summary

    def read_records(self, cell_id: str) -> pd.DataFrame:
        return pd.read_parquet(self.cells_dir / f"{cell_id}.parquet")

    def summaries(self) -> list[dict]:
        """The cells' summary rows, without their integrity records."""
        rows = [json.loads(p.read_text()) for p in sorted(self.cells_dir.glob("*.json"))]
        return [{k: v for k, v in row.items() if k != "integrity"} for row in rows]

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def read_manifest(self) -> dict | None:
        return json.loads(self.manifest_path.read_text()) if self.manifest_path.is_file() else None

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_json(self.manifest_path, manifest)


def _parquet_bytes(df: pd.DataFrame, stamp: dict | None = None) -> bytes:
    """``stamp``: key-value metadata added to the schema (a finished cell's names its cell and spec)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if stamp:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **stamp})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    return buf.getvalue().to_pybytes()


def newest_run(results: str | Path = "results") -> Path | None:
    """The run directory under ``results`` whose manifest was written last."""
    manifests = sorted(Path(results).glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    return manifests[-1].parent if manifests else None
