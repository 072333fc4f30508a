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
import statistics
import tempfile
from pathlib import Path

from bench.common import machine, run_cli

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
    runs = {"after": None} | ({"before": args.before} if args.before else {})
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, python in runs.items():
            with tempfile.TemporaryDirectory() as out:
                seconds, rss = run_cli([*GRID, "--data", args.data, "--n", str(args.n), "--run", "grid"], out, python)
                parts = _split(Path(out) / "grid" / "summary.csv")
            times[name].append(seconds)
            print(f"  {name}: {seconds:.1f} s, peak RSS {rss} MiB; {parts}", flush=True)
    print(f"machine: {machine()}")
    for name, ts in times.items():
        print(f"{name}: median {statistics.median(ts):.1f} s over {len(ts)} run(s) ({args.n} images)")
    if args.before:
        ratios = [a / b for a, b in zip(times["after"], times["before"])]
        print(f"after / before: {statistics.median(ratios):.2f}  (target <= 0.5)")


if __name__ == "__main__":
    main()
