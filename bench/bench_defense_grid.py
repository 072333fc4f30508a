"""Wall time of the defense-heavy grid of issue 13 (a fresh process each, model loading included):
PGD-10 at 2/255 and 4/255 against six defenses, oblivious, on the 200 shared ImageNet images, with
no checks (the grid measures the defense side):

    hbbench sweep --attacks pgd --eps 2/255,4/255 --defense heatblur,jpeg,median,tvm,blur,blur[sigma=1.5]
                  --threat oblivious --data imagefolder:../shared/datasets/imagenet-samples-200 --n 200

``--before PYTHON`` times the same command with another checkout's interpreter, round-robin with
this one: the revision before TotalVarMin in PyTorch and the defended-clean cache (8e4bf8f, whose
`tvm` was ART's TotalVarMin and which defended the clean images once per attack run). Target:
after / before <= 0.5."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import after_over_before, before_after

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "imagenet-samples-200"
GRID = ["sweep", "--attacks", "pgd", "--eps", "2/255,4/255", "--defense",
        "heatblur,jpeg,median,tvm,blur,blur[sigma=1.5]", "--threat", "oblivious", "--checks", "none"]


def _split(summary: Path) -> str:
    """Where the time went: the attack runs (counted once per run: oblivious cells share one) and
    the defenses (each cell's clean and adversarial inputs through its defense, and predictions)."""
    import pandas as pd

    df = pd.read_csv(summary)
    attack = df.drop_duplicates(["attack", "eps"])["attack_seconds"].sum()
    return f"attacks {attack:.0f} s, defenses {df['defense_seconds'].sum():.0f} s"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--before", default=None, help="python of the checkout to compare with (its own venv)")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--data", default=f"imagefolder:{SHARED}")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    times = before_after([*GRID, "--data", args.data, "--n", str(args.n)], args.before, args.repeats,
                         lambda run: _split(run / "summary.csv"))
    if args.before:
        print(f"after / before: {after_over_before(times):.2f}  (target <= 0.5)")

if __name__ == "__main__":
    main()
