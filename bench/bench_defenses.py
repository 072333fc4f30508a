"""Preprocessing throughput of every registered defense at its registered defaults, and the speed-up
of TotalVarMin in PyTorch (`tvm`) over ART's (`tvm_art`, target >= 20x).

    python -m bench.bench_defenses [--n 16] [--repeats 5] [--threads 2] [--only tvm,tvm_art]

Each defense runs through ART's preprocessor call (NumPy in and out, as `hbbench sweep` applies it)
on a batch of n embedded images at 224 px. All defenses are timed round-robin in one process; the
speed-up is the median of back-to-back ratios, which a shared machine's drifting load affects
less than a ratio of medians. Prints figures only; never asserts on time.
"""
from __future__ import annotations

import statistics

import numpy as np
import torch

from bench.common import batch_parser, interleaved_seconds, machine, median_ratio


def main(argv=None):
    ap = batch_parser(__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma list of defenses (default: every registered one)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from hbbench.classifier import make_classifier
    from hbbench.datasets import load_dataset
    from hbbench.defenses import DEFENSES, make_defense

    clf = make_classifier("efficientnet_lite0", device=args.device)
    ds = load_dataset("imagenet-samples")
    x = np.concatenate([ds.x] * (args.n // len(ds) + 1))[: args.n]
    names = args.only.split(",") if args.only else [e.name for e in DEFENSES.entries()]
    defenses = {name: make_defense(name, clf) for name in names}
    fns = {name: (lambda d=d: d(x)) for name, d in defenses.items() if d is not None}

    print(f"machine: {machine()}; {args.threads} torch threads; batch {args.n} x 3 x 224 x 224; "
          f"median of {args.repeats} round-robin runs")
    t = interleaved_seconds(fns, args.repeats)
    print("\n| defense | s / batch | images / s |\n|---|---|---|")
    for name in fns:
        med = statistics.median(t[name])
        print(f"| `{name}` | {med:.3f} | {args.n / med:.1f} |")
    if {"tvm", "tvm_art"} <= set(fns):
        ratio = median_ratio(t["tvm_art"], t["tvm"])
        print(f"\nimages/s of tvm / tvm_art = {ratio:.1f}x (median of back-to-back ratios; target >= 20x)")


if __name__ == "__main__":
    main()
