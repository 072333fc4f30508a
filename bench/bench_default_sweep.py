"""Wall time of the default sweep as a user runs it (`make sweep`, a fresh process, model loading
included): `hbbench sweep --attacks fgsm,pgd,cw --defense heatblur,jpeg` on the 20 embedded images,
none/heatblur/jpeg x oblivious/bpda (target <= 180 s on 2 cores). `--defense jpeg` times the
JPEG-only grid the default was before (target then: <= 120 s). ``--before PYTHON`` times the same
command with another checkout's interpreter, round-robin with this one, and prints after / before
(issue 19's target: <= 0.65). Each run also says where its attack time went (summary.csv's
attack_seconds, one figure per attack run)."""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.common import machine, run_cli

TARGETS = {"heatblur,jpeg": 180, "jpeg": 120}


def attack_split(summary: Path) -> str:
    """Attack seconds per attack, each attack run once (cells crafted against the undefended model
    share one run: the oblivious cells and 'none')."""
    import pandas as pd

    df = pd.read_csv(summary)
    df = df[df.attack != "worst_case"]
    shared = (df.threat_model == "oblivious") | (df.defense == "none")
    runs = pd.concat([df[shared].drop_duplicates(["attack", "eps"]), df[~shared]])
    per_attack = runs.groupby("attack", sort=False)["attack_seconds"].sum()
    return ", ".join(f"{a} {s:.0f} s" for a, s in per_attack.items())


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--defense", default="heatblur,jpeg")
    ap.add_argument("--extra", default="", help="more sweep flags, e.g. '--checks full'")
    ap.add_argument("--before", default=None, help="python of the checkout to compare with (its own venv)")
    args = ap.parse_args()
    runs = {"after": None} | ({"before": args.before} if args.before else {})
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, python in runs.items():
            with tempfile.TemporaryDirectory() as out:
                seconds, rss = run_cli(["sweep", "--attacks", "fgsm,pgd,cw", "--defense", args.defense,
                                        *args.extra.split(), "--run", "sweep"], out, python)
                split = attack_split(Path(out) / "sweep" / "summary.csv")
            times[name].append(seconds)
            print(f"  {name}: {seconds:.1f} s, peak RSS {rss} MiB; attacks: {split}", flush=True)
    target = TARGETS.get(args.defense)
    print(f"machine: {machine()}")
    for name, ts in times.items():
        print(f"{name}: sweep --defense {args.defense} {args.extra} wall time, median of {len(ts)}: "
              f"{statistics.median(ts):.1f} s" + (f"  (target <= {target} s)" if target else ""))
    if args.before:
        ratios = [a / b for a, b in zip(times["after"], times["before"])]
        print(f"after / before: {statistics.median(ratios):.2f}  (issue 19's target: <= 0.65)")


if __name__ == "__main__":
    main()
