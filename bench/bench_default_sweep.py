"""Wall time of the default sweep as a user runs it (`make sweep`, a fresh process, model loading
included): `hbbench sweep --attacks fgsm,pgd,cw --defense heatblur,jpeg` on the 20 embedded images,
none/heatblur/jpeg x oblivious/bpda (target <= 180 s on 2 cores). `--defense jpeg` times the
JPEG-only grid the default was before (target then: <= 120 s)."""
from __future__ import annotations

import argparse
import statistics
import tempfile

from bench.common import machine, run_cli

TARGETS = {"heatblur,jpeg": 180, "jpeg": 120}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--defense", default="heatblur,jpeg")
    ap.add_argument("--extra", default="", help="more sweep flags, e.g. '--checks full'")
    args = ap.parse_args()
    times = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            seconds, rss = run_cli(["sweep", "--attacks", "fgsm,pgd,cw", "--defense", args.defense,
                                    *args.extra.split()], out)
        times.append(seconds)
        print(f"  run: {seconds:.1f} s, peak RSS {rss} MiB", flush=True)
    target = TARGETS.get(args.defense)
    print(f"machine: {machine()}")
    print(f"sweep --defense {args.defense} {args.extra} wall time, median of {args.repeats}: "
          f"{statistics.median(times):.1f} s" + (f"  (target <= {target} s)" if target else ""))


if __name__ == "__main__":
    main()
