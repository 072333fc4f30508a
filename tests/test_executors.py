"""Sharded runs and parallel executors give the same table as one process: sharding on the tiny CNN
(fast tier) and EfficientNet-Lite0 (slow tier); the worker pool and Ray (fresh processes) on the tiny CNN
in the slow tier (what crosses processes is the work and its seeds, whatever the model)."""
import pandas as pd
import pytest

from hbbench.spec import SweepSpec
from hbbench.api import sweep

SPEC = dict(attacks=["fgsm", "pgd[max_iter=2]"], defenses=["jpeg"], threat_models=["oblivious", "bpda"], n=3,
            batch_size=2, shard_size=2)


def _numbers(table: pd.DataFrame) -> pd.DataFrame:
    timing = [c for c in table.columns if c.endswith("_seconds") or c == "seconds_per_image"]
    return table.drop(columns=timing).reset_index(drop=True)


def _on_tiny(tiny) -> dict:
    return dict(SPEC, **{k: tiny[k] for k in ("models", "plugins", "dataset", "device")})


def _local(spec: dict, out):
    """The in-process reference, on one thread (the sweep's ``threads``) like each of two workers on two
    cores: float sums depend on the thread count, and a JPEG quantisation step can turn that into a
    flipped class."""
    return sweep(SweepSpec(**spec), out=out, run="r", threads=1), out / "r"


@pytest.fixture(scope="module")
def spec(tiny) -> dict:
    """The grid the executors run: on the tiny CNN."""
    return _on_tiny(tiny)


@pytest.fixture(scope="module")
def local(tmp_path_factory, spec):
    return _local(spec, tmp_path_factory.mktemp("local-tiny"))


@pytest.fixture(scope="module", params=["tiny", pytest.param("efficientnet", marks=pytest.mark.slow)])
def local_sharded(request, tmp_path_factory):
    return request.getfixturevalue("local") if request.param == "tiny" else _local(SPEC, tmp_path_factory.mktemp("local"))


def test_shards_merge_into_one_cell_file(local_sharded):
    table, run_dir = local_sharded
    grid = table[table.attack != "worst_case"]
    assert len(grid) == 2 * 2 * 2 and (table.n == 3).all()  # cells merged from shards, then worst-case rows
    assert len(table) - len(grid) == 2 * 2
    assert not list((run_dir / "cells").glob("*.shards"))  # merged and removed
    rec = pd.read_parquet(run_dir / "cells" / f"{table.cell_id[0]}.parquet")
    assert list(rec["sample"]) == [0, 1, 2]


@pytest.fixture(scope="module")
def ray_running():
    """One local Ray instance for this module's Ray tests, as on a cluster the sweep finds running: the
    executor uses it and leaves it up. (tests/test_plugins.py runs Ray the other way: started for the
    sweep and shut down after it.) Starting Ray costs 5-10 s a time here."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_executor_matches_local(local, tmp_path, spec, ray_running):
    table, _ = local
    ray_table = sweep(SweepSpec(**spec), out=tmp_path, run="r", executor="ray", workers=2)
    pd.testing.assert_frame_equal(_numbers(ray_table), _numbers(table))
    assert ray_running.is_initialized()  # a running instance is the user's: the sweep leaves it up


@pytest.mark.slow
def test_worker_pool_matches_local(local, tmp_path, spec):
    table, _ = local
    pool_table = sweep(SweepSpec(**spec), out=tmp_path, run="r", workers=2)
    pd.testing.assert_frame_equal(_numbers(pool_table), _numbers(table))
