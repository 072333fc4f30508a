"""Executor scaling: 1 vs 2 local worker processes on a 4-cell grid (four PGD-10 budgets against the
undefended model, oblivious: four independent attack runs). Each run is a fresh `hbbench sweep`
process, model loading and worker start-up included.

Two comparisons:
- executor scaling, one torch thread per worker (`--threads 1`): 1 worker on one core vs 2 workers on
  two cores; what the executor itself adds or loses (target >= 1.7x on 2 cores);
- as a user runs it with the defaults: `--workers 1` (one process, torch's intra-op threads on both
  cores) vs `--workers 2` (two processes, one thread each). On 2 cores both already use both cores,
  so this one can only show the executor's overhead, not a speed-up.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile

from bench.common import machine, run_cli


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--executor", default="local", choices=["local", "ray"])
    args = ap.parse_args()
    grid = ["sweep", "--attacks", "pgd", "--eps", "1/255,2/255,3/255,4/255", "--defense", "none",
            "--threat", "oblivious", "--n", str(args.n), "--executor", args.executor]
    configs = {"1 worker x 1 thread": ["--workers", "1", "--threads", "1"],
               "2 workers x 1 thread": ["--workers", "2", "--threads", "1"],
               "1 worker (default threads)": ["--workers", "1"],
               "2 workers (default threads)": ["--workers", "2"]}
    times = {name: [] for name in configs}
    for _ in range(args.repeats):  # round-robin: load drift on a shared machine hits every config alike
        for name, flags in configs.items():
            with tempfile.TemporaryDirectory() as out:
                times[name].append(run_cli(grid + flags, out)[0])
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"  {name:28s} {', '.join(f'{s:.1f}' for s in t)} s  (median {median[name]:.1f} s)")
    print(f"machine: {machine()}")
    print(f"4-cell grid, {args.n} images, executor {args.executor}, median of {args.repeats}:")
    print(f"  executor scaling, 1 thread per worker: {median['1 worker x 1 thread'] / median['2 workers x 1 thread']:.2f}x"
          "  (target >= 1.7x)")
    print(f"  default threads, --workers 1 vs 2:    "
          f"{median['1 worker (default threads)'] / median['2 workers (default threads)']:.2f}x")


if __name__ == "__main__":
    main()
