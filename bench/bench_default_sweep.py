"""Wall time of the default sweep, `hbbench sweep --attacks fgsm,pgd,cw --defense jpeg`
(20 embedded images, none/jpeg x oblivious/bpda), as a user runs it: a fresh process, model
loading included (target <= 120 s on 2 cores)."""
from __future__ import annotations

import argparse
import statistics
import tempfile

from bench.common import machine, run_cli


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    times = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            seconds, rss = run_cli(["sweep", "--attacks", "fgsm,pgd,cw", "--defense", "jpeg"], out)
        times.append(seconds)
        print(f"  run: {seconds:.1f} s, peak RSS {rss} MiB", flush=True)
    print(f"machine: {machine()}")
    print(f"default sweep wall time, median of {args.repeats}: {statistics.median(times):.1f} s  (target <= 120 s)")


if __name__ == "__main__":
    main()
