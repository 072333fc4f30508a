"""A deterministic defense's clean predictions are computed once per shard and shared by every
attack, budget and threat model of the run (in memory, and through the run directory across
workers and resumes); results are identical to computing them for every cell."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hbbench import execution
from hbbench.api import sweep

GRID = dict(attacks=["fgsm", "pgd[max_iter=2]"], defenses=["jpeg", "noise"], threat_models=["oblivious", "bpda"],
            eps="2/255,4/255", n=3)


@pytest.fixture
def spec(tiny) -> dict:
    """The grid on the tiny CNN: what is shared is the defense's output, whatever the model."""
    return dict(tiny, **GRID)


def _records(run_dir, table):
    return {cid: pd.read_parquet(run_dir / "cells" / f"{cid}.parquet") for cid in table.cell_id
            if not cid.startswith("worst_case")}


def test_computed_once_and_identical_to_computing_it_per_cell(tmp_path, monkeypatch, spec):
    calls = []
    real = execution.Context.defended_clean

    def counting(self, cell, start, stop, cache_dir, compute):
        return real(self, cell, start, stop, cache_dir, lambda: calls.append(cell.defense) or compute())

    monkeypatch.setattr(execution.Context, "defended_clean", counting)
    execution._CONTEXTS.clear()
    cached = sweep(spec, out=tmp_path, run="cached", checks="none")
    assert calls == ["jpeg"]  # 8 jpeg cells, one computation; noise is random: fresh draws per cell
    assert len(list((tmp_path / "cached" / "defended_clean").glob("*.npy"))) == 1

    monkeypatch.setattr(execution.Context, "defended_clean", lambda self, cell, start, stop, cache_dir, compute: compute())
    execution._CONTEXTS.clear()
    fresh = sweep(spec, out=tmp_path, run="fresh", checks="none")
    cols = [c for c in cached.columns if not c.endswith("_seconds") and c != "seconds_per_image"]
    pd.testing.assert_frame_equal(cached[cols], fresh[cols])
    a, b = _records(tmp_path / "cached", cached), _records(tmp_path / "fresh", fresh)
    for cid in a:
        pd.testing.assert_frame_equal(a[cid], b[cid])


def test_another_process_reads_it_from_the_run_directory(tmp_path, spec):
    execution._CONTEXTS.clear()
    sweep(dict(spec, attacks=["fgsm"]), out=tmp_path, run="r", checks="none")
    (npy,) = (tmp_path / "r" / "defended_clean").glob("*.npy")
    planted = np.load(npy)
    planted[:, :] = 0
    planted[:, 7] = 1.0  # every defended-clean prediction: class 7
    np.save(npy, planted)
    for p in (tmp_path / "r" / "cells").iterdir():  # resume with every cell to compute again
        p.unlink()
    execution._CONTEXTS.clear()  # a fresh worker: nothing in memory
    table = sweep(dict(spec, attacks=["fgsm"]), out=tmp_path, run="r", checks="none")
    jpeg = table[(table.defense == "jpeg") & (table.attack != "worst_case")]
    assert (jpeg.defended_clean_top1 == 0).all()  # read from the run directory, not recomputed
