"""Executors run work units and hand back their per-sample records; the sweep writes them into the
run store as they arrive, so every executor resumes the same way.

- ``local``: this process (``workers=1``) or a pool of worker processes, each loading the model
  and data once and splitting the cores between them.
- ``ray``: each unit becomes a Ray task with CPU/GPU resource requests, on a running cluster
  (``address``) or a local Ray instance started for the sweep.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable, Iterator

import torch

from hbbench.errors import HBBenchError
from hbbench.grid import Grid
from hbbench.options import SweepOptions
from hbbench.plugins import load
from hbbench.registry import Registry
from hbbench.runner import ShardResult, Unit, run_unit

# An executor is called as executor(units, grid, options, on_event): the grid gives the batch size,
# the device and the plugins a worker loads; hbbench.options.SweepOptions how many workers and where.
EXECUTORS = Registry("executor", skip=4)
Results = Iterator["list[ShardResult]"]


def get_executor(name: str) -> Callable:
    return EXECUTORS.resolve(name)[0].factory


def _threads_per_worker(workers: int, threads: int | None = None) -> int:
    """torch threads per worker: as asked, else the cores split between the workers."""
    return threads or max(1, (os.cpu_count() or 1) // workers)


def _init_worker(threads: int, plugins=()) -> None:
    """A fresh worker: its torch threads, and the run's plugins in its registries."""
    torch.set_num_threads(threads)
    load(list(plugins))


def _worker_context() -> mp.context.BaseContext:
    """Workers forked from a fork server that has imported the runner (torch, ART, timm) once, so no worker
    imports them again (a spawned one did: about 6 s of CPU each on the 2-core machine). Not forked from
    this process: one that already runs torch threads can deadlock in a fork; the server has only
    imported them. Spawn where there is no fork server (Windows)."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["hbbench.runner"])
    return ctx


def _run_in_worker(unit: Unit, batch_size: int, device: str, loader_workers: int) -> list[ShardResult]:
    return run_unit(unit, batch_size=batch_size, device=device, loader_workers=loader_workers)


@EXECUTORS.register("local", "this machine: in this process, or --workers worker processes")
def run_local(units: list[Unit], grid: Grid, options: SweepOptions, on_event) -> Results:
    batch_size, device, loader_workers = grid.spec.batch_size, grid.spec.device, options.loader_workers
    workers, threads = options.workers, options.threads
    if workers == 1 or len(units) <= 1:
        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            for unit in units:
                yield run_unit(unit, batch_size=batch_size, device=device, loader_workers=loader_workers,
                               on_event=on_event)
        finally:
            torch.set_num_threads(before)
        return
    with ProcessPoolExecutor(workers, mp_context=_worker_context(), initializer=_init_worker,
                             initargs=(_threads_per_worker(workers, threads), grid.plugins)) as pool:
        pending = {pool.submit(_run_in_worker, u, batch_size, device, loader_workers) for u in units}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
        finally:
            for fut in pending:
                fut.cancel()


@EXECUTORS.register("ray", "Ray tasks on a cluster (--address) or a local Ray instance")
def run_ray(units: list[Unit], grid: Grid, options: SweepOptions, on_event) -> Results:
    batch_size, device, loader_workers = grid.spec.batch_size, grid.spec.device, options.loader_workers
    workers, address, threads = options.workers, options.address, options.threads
    try:
        import ray  # lazy: Ray is an optional extra (hbbench[ray])
    except ImportError:
        raise HBBenchError("the ray executor needs Ray: pip install 'hbbench[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        cpus = float(_threads_per_worker(workers or int(ray.available_resources().get("CPU", 1)), threads))
        gpus = 1 if device == "cuda" or (device == "auto" and ray.available_resources().get("GPU")) else 0
        task = ray.remote(num_cpus=cpus, num_gpus=gpus)(_run_in_ray)
        shipped = ray.put(grid.plugins)  # file plugins travel as source text: a node needs no copy
        pending = [task.remote(u, batch_size, device, loader_workers, int(cpus), shipped) for u in units]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started_here:
            ray.shutdown()


def _run_in_ray(unit: Unit, batch_size: int, device: str, loader_workers: int, threads: int,
                plugins=()) -> list[ShardResult]:
    _init_worker(max(1, threads), plugins)
    return run_unit(unit, batch_size=batch_size, device=device, loader_workers=loader_workers)
