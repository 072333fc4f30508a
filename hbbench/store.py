"""What a sweep writes into its run directory: one Parquet + one JSON per finished cell, shard by
shard then merged, each sealed with its integrity record; and, before a resume, the damaged and
foreign files set aside. Layout, readers and atomic writes: hbbench.rundir."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hbbench import examples_store
from hbbench.errors import HBBenchError
from hbbench.rundir import (MANIFEST, RunDir, atomic_write_bytes, atomic_write_json,  # noqa: F401 - re-exported
                            parquet_stamp, seal)


class RunStore(RunDir):
    def __init__(self, root: str | Path, spec_id: str | None = None):
        super().__init__(root)
        self.spec_id = spec_id  # recorded in every finished cell, so another run's cells are told apart

    def ensure_writable(self) -> None:
        """Fail before any work starts if the run directory can't be written."""
        try:
            self.cells_dir.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.cells_dir, prefix=".probe.", delete=True)
            probe.close()
        except OSError as exc:
            raise HBBenchError(f"cannot write to output directory {self.cells_dir}: {exc.strerror}") from None

    def has_shard(self, cell_id: str, shard: int) -> bool:
        return self.has_cell(cell_id) or self.shard(cell_id, shard, "json").is_file()

    def write_shard(self, cell_id: str, shard: int, records: pd.DataFrame, meta: dict,
                    examples: dict | None = None) -> None:
        """The shard's records, its adversarial examples (when it keeps any), then its JSON, which marks
        the shard done."""
        atomic_write_bytes(self.shard(cell_id, shard, "parquet"), _parquet_bytes(records))
        if examples is not None:
            atomic_write_bytes(self.shard(cell_id, shard, examples_store.SUFFIX),
                               examples_store.to_bytes(examples["sample"], examples["sample_id"], examples["x_adv"],
                                                       examples.get(examples_store.DEFENDED)))
        atomic_write_json(self.shard(cell_id, shard, "json"), meta)

    def merge_shards(self, cell_id: str, n_shards: int, summarize) -> dict | None:
        """Once all shards of a cell are stored: stream them into cells/<id>.parquet, their examples
        into cells/<id>.examples.npz (where they kept any), write the summary ``summarize(records,
        metas)`` with its integrity record as cells/<id>.json, drop the shards."""
        if self.has_cell(cell_id) or not all(self.shard(cell_id, k, "json").is_file() for k in range(n_shards)):
            return None
        final = self.cell_parquet(cell_id)
        tmp = final.with_name(f".{final.name}.merge.tmp")
        writer = None
        try:
            for k in range(n_shards):
                table = pq.read_table(self.shard(cell_id, k, "parquet"))
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema.with_metadata(
                        {**(table.schema.metadata or {}), **parquet_stamp(cell_id, self.spec_id)}))
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        os.replace(tmp, final)
        examples = examples_store.merge([self.shard(cell_id, k, examples_store.SUFFIX) for k in range(n_shards)])
        kept = None
        if examples is not None:
            atomic_write_bytes(self.cell_examples(cell_id), examples[0])
            kept = (self.cell_examples(cell_id), examples[1])
        else:  # none kept now: an examples file left by an earlier run of this cell is not this one's
            self.cell_examples(cell_id).unlink(missing_ok=True)
        metas = [json.loads(self.shard(cell_id, k, "json").read_text()) for k in range(n_shards)]
        summary = summarize(pd.read_parquet(final), metas)
        atomic_write_json(self.cell_json(cell_id), seal(summary, final, self.spec_id, kept))
        shutil.rmtree(self.shards_dir(cell_id), ignore_errors=True)
        return summary

    def remove_temporaries(self) -> None:
        """Temporary files of atomic writes that a killed run never renamed: never read as results
        (a cell counts only as <id>.parquet + <id>.json), removed once the sweep holds the run's lock."""
        for pattern in (".*.tmp", "cells/.*.tmp", "cells/*.shards/.*.tmp", "defended_clean/.*.tmp"):
            for path in self.root.glob(pattern):
                path.unlink(missing_ok=True)

    def set_aside(self, findings, on_event) -> None:
        """Move the files of damaged and foreign ``findings`` under ``<run>/damaged/<time>/`` (never
        deleted), with one ``damaged`` event each, so their cells count as unfinished."""
        if not findings:
            return
        aside = self._aside_dir()
        for f in findings:
            for rel in f.files:
                try:
                    (aside / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(self.root / rel, aside / rel)
                except OSError as exc:
                    raise HBBenchError(f"cannot move {self.root / rel} aside to {aside}: {exc.strerror}; nothing "
                                       "was deleted") from None
            then = ("a new one is written from this command's spec" if f.path == MANIFEST else
                    "the cell is recomputed" if f.cell_id else "not part of this run")
            on_event("damaged", path=self.root / f.path, reason=f.reason, action=f"moved to {aside}/; {then}")

    def _aside_dir(self) -> Path:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside, k = self.damaged_dir / stamp, 1
        while aside.exists():  # two resumes within a second
            k += 1
            aside = self.damaged_dir / f"{stamp}-{k}"
        return aside


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(df, preserve_index=False)
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    return buf.getvalue().to_pybytes()
