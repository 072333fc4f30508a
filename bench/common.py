"""Shared helpers for the bench scripts: timing (median of several runs) and the embedded setup."""
from __future__ import annotations

import os
import platform
import statistics
import time

import torch


def interleaved_seconds(fns: dict, repeats: int = 5, warmup: int = 1) -> dict:
    """Time several functions round-robin: {name: [seconds per round]}. On a shared CPU the load
    drifts; ratios of runs made back to back (``median_ratio``) are steadier than ratios of medians."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def batch_parser(description: str):
    """The options every per-batch bench takes: batch size, repeats, torch threads, device."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--n", type=int, default=16, help="batch size (images of 224 px)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    return ap


def median_ratio(num: list, den: list) -> float:
    return statistics.median(a / b for a, b in zip(num, den))


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {gpu}"


def embedded(n: int = 20, device: str = "auto"):
    """The embedded model as an ART classifier and the first n embedded images."""
    from hbbench.classifier import make_classifier
    from hbbench.datasets import load_dataset

    return make_classifier("efficientnet_lite0", device=device), load_dataset("imagenet-samples", n=n)


def run_cli(args: list[str], out_dir: str, python: str | None = None) -> tuple[float, int]:
    """Run `hbbench <args> --out out_dir` in a fresh process (of ``python``: another checkout's
    interpreter times another revision); return (wall seconds, peak RSS in MiB).

    The peak comes from getrusage(RUSAGE_CHILDREN) of a wrapper process that runs only that one
    command, so it is that command's own high-water mark (worker processes included via waits)."""
    import json
    import subprocess
    import sys

    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(json.dumps([time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n"
    )
    # -P: the working directory is not put on sys.path, so another checkout's interpreter imports its own
    # hbbench, not the hbbench/ folder of the checkout the bench runs from
    cmd = [sys.executable, "-c", wrapper, python or sys.executable, "-P", "-m", "hbbench.cli", *args, "--out", out_dir]
    seconds, rss_kib = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return seconds, rss_kib // 1024


def before_after(args: list[str], before: str | None, repeats: int, describe) -> dict[str, list[float]]:
    """Time `hbbench <args> --run bench` with this checkout ("after") and, when ``before`` names another
    checkout's interpreter, with that one, round-robin, each a fresh process in its own temporary
    folder; print one line per run with ``describe(run_dir)``; return wall seconds per name."""
    import statistics
    import tempfile
    from pathlib import Path

    runs = {"after": None} | ({"before": before} if before else {})
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, python in runs.items():
            with tempfile.TemporaryDirectory() as out:
                seconds, rss = run_cli([*args, "--run", "bench"], out, python)
                parts = describe(Path(out) / "bench")
            times[name].append(seconds)
            print(f"  {name}: {seconds:.1f} s, peak RSS {rss} MiB; {parts}", flush=True)
    print(f"machine: {machine()}")
    for name, ts in times.items():
        print(f"{name}: median {statistics.median(ts):.1f} s over {len(ts)} run(s)")
    return times


def after_over_before(times: dict[str, list[float]]) -> float:
    """The median of the paired after / before ratios."""
    import statistics

    return statistics.median(a / b for a, b in zip(times["after"], times["before"]))
