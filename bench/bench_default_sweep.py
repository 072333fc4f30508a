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
from pathlib import Path

from bench.common import after_over_before, before_after

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
    times = before_after(["sweep", "--attacks", "fgsm,pgd,cw", "--defense", args.defense, *args.extra.split()],
                         args.before, args.repeats, lambda run: "attacks: " + attack_split(run / "summary.csv"))
    target = TARGETS.get(args.defense)
    print(f"sweep --defense {args.defense} {args.extra}: median {statistics.median(times['after']):.1f} s"
          + (f"  (target <= {target} s)" if target else ""))
    if args.before:
        print(f"after / before: {after_over_before(times):.2f}  (issue 19's target: <= 0.65)")


if __name__ == "__main__":
    main()
