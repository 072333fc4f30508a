"""What the evaluation checks cost (targets from docs/evaluation.md, no timed tests):

- the default sweep (`hbbench sweep --attacks fgsm,pgd,cw --defense heatblur,jpeg`, fresh
  processes, round-robin) with `--checks none`, `--checks default` and `--checks full`: the default
  checks add <= 15%, full checks <= 2.5x the sweep without checks;
- EoT: ART PGD-10 under `bpda[eot=K]` through the random `noise` defense vs the single-draw attack,
  in one process on the embedded images: <= 1.1 K x.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

from bench.common import embedded, interleaved_seconds, machine, median_ratio, run_cli

SWEEP = ["sweep", "--attacks", "fgsm,pgd,cw", "--defense", "heatblur,jpeg"]


def sweep_costs(repeats: int, keep: str | None = None, levels=("default", "full")) -> None:
    """``keep``: a folder that keeps the last --checks full run (its checks.csv holds the binarization
    outcome of every setting, docs/evaluation.md). ``levels``: the check levels timed beside none."""
    if keep and (Path(keep) / "checks-full").exists():
        raise SystemExit(f"{keep}/checks-full exists: a resumed run would time nothing")
    times = {level: [] for level in ("none", *levels)}
    for r in range(repeats):
        for level in times:
            with tempfile.TemporaryDirectory() as tmp:
                out = keep if keep and level == "full" and r == repeats - 1 else tmp
                seconds, _ = run_cli([*SWEEP, "--checks", level, "--run", f"checks-{level}"], out)
            times[level].append(seconds)
            print(f"  --checks {level}: {seconds:.1f} s", flush=True)
    for level in levels:
        print(f"--checks {level} / --checks none: {median_ratio(times[level], times['none']):.2f}x "
              f"(medians {statistics.median(times[level]):.1f} s / {statistics.median(times['none']):.1f} s; "
              f"target {'<= 1.15x' if level == 'default' else '<= 2.5x'})")


def eot_cost(k: int, repeats: int, n: int) -> None:
    from hbbench.attacks import make_attack
    from hbbench.classifier import with_defenses
    from hbbench.defenses import StraightThrough, make_defense

    clf, data = embedded(n)
    noise = StraightThrough(make_defense("noise", clf))
    single, eot = with_defenses(clf, [noise]), with_defenses(clf, [noise], eot_draws=k)

    def run(attacked):
        return lambda: make_attack("pgd", attacked, eps=4 / 255).generate(data.x, y=data.y)

    times = interleaved_seconds({"single": run(single), "eot": run(eot)}, repeats=repeats)
    ratio = median_ratio(times["eot"], times["single"])
    print(f"PGD-10 bpda[eot={k}] / bpda through noise ({n} images): {np.median(times['eot']):.2f} s / "
          f"{np.median(times['single']):.2f} s = {ratio:.2f}x = {ratio / k:.2f} K (target <= 1.1 K)")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eot", type=int, default=4)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--skip-sweep", action="store_true", help="only the EoT figure (the sweeps take ~20 min)")
    ap.add_argument("--skip-eot", action="store_true", help="only the sweeps")
    ap.add_argument("--levels", default="default,full", help="check levels timed beside --checks none")
    ap.add_argument("--keep", default=None, help="keep the --checks full run in this folder (run checks-full)")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    if not args.skip_eot:
        eot_cost(args.eot, args.repeats, args.n)
    if not args.skip_sweep:
        levels = tuple(v for v in args.levels.split(",") if v)
        if not set(levels) <= {"default", "full"}:
            raise SystemExit(f"--levels takes default and/or full, got {args.levels!r}")
        sweep_costs(args.repeats, args.keep, levels)


if __name__ == "__main__":
    main()
