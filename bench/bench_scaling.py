"""Executor scaling: 1 vs 2 local worker processes on a 4-cell grid (four PGD-10 budgets against the
undefended model, oblivious: four independent attack runs). Each run is a fresh `hbbench sweep`
process, model loading included (target >= 1.7x on 2 cores)."""
from __future__ import annotations

import argparse
import statistics
import tempfile

from bench.common import machine, run_cli


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--executor", default="local", choices=["local", "ray"])
    args = ap.parse_args()
    grid = ["sweep", "--attacks", "pgd", "--eps", "1/255,2/255,3/255,4/255", "--defense", "none",
            "--threat", "oblivious", "--n", str(args.n), "--executor", args.executor]
    median = {}
    for workers in (1, 2):
        times = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as out:
                times.append(run_cli(grid + ["--workers", str(workers)], out)[0])
        median[workers] = statistics.median(times)
        print(f"  {workers} worker(s): {', '.join(f'{t:.1f}' for t in times)} s", flush=True)
    print(f"machine: {machine()}")
    print(f"4-cell grid, {args.n} images, executor {args.executor}, median of {args.repeats}: "
          f"1 worker {median[1]:.1f} s, 2 workers {median[2]:.1f} s, speed-up {median[1] / median[2]:.2f}x "
          "(target >= 1.7x)")


if __name__ == "__main__":
    main()
