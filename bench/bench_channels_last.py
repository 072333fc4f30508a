"""Channels-last vs contiguous (NCHW) memory format, and BatchNorm folded into the convolutions
(hbbench.batchnorm) on top of channels-last, per model: one forward plus one input-gradient backward
(a PGD step) on the same batch, timed round-robin in one process, median of ``--repeats``; and whether
each variant predicts the classes of the contiguous model. hbbench.classifier.CHANNELS_LAST lists the
models that switch: those this bench measured at most 0.9x the NCHW time (median of per-round
ratios and ratio of medians both). Every registry model is folded (make_classifier).

    .venv/bin/python -m bench.bench_channels_last --n 8
"""
from __future__ import annotations

import copy
import statistics

import torch

from bench.common import batch_parser, interleaved_seconds, machine, median_ratio
from hbbench.batchnorm import fold_batchnorm
from hbbench.datasets import load_dataset
from hbbench.models import load_model

MODELS = ("efficientnet_lite0", "timm:efficientnet_b0[weights=random]", "torchvision:resnet50[weights=random]",
          "torchvision:vgg19[weights=random]")  # speed does not depend on the weights


def step(model, x, mean, std):
    xa = x.clone().requires_grad_(True)
    loss = model((xa - mean) / std).logsumexp(1).sum()
    return torch.autograd.grad(loss, xa)[0]


def main():
    ap = batch_parser(__doc__)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.from_numpy(load_dataset("imagenet-samples", n=args.n).x)
    print(f"machine: {machine()}; {args.n} images, median of {args.repeats} round-robin runs")
    print("| model | contiguous s | channels-last s | median of per-round ratios | ratio of medians | "
          "folded + channels-last s | folded / channels-last (median of per-round ratios) | BatchNorms folded "
          "| same predictions |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        loaded = load_model(name)
        plain = loaded.module.eval().requires_grad_(False)
        last = copy.deepcopy(plain).to(memory_format=torch.channels_last)
        folded = copy.deepcopy(plain)
        n_folded = fold_batchnorm(folded)
        folded.to(memory_format=torch.channels_last)
        mean, std = torch.tensor(loaded.mean).view(1, 3, 1, 1), torch.tensor(loaded.std).view(1, 3, 1, 1)
        t = interleaved_seconds({"plain": lambda: step(plain, x, mean, std),
                                 "last": lambda: step(last, x, mean, std),
                                 "folded": lambda: step(folded, x, mean, std)}, args.repeats)
        with torch.no_grad():
            reference = plain((x - mean) / std).argmax(1)
            same = all(bool((m((x - mean) / std).argmax(1) == reference).all()) for m in (last, folded))
        plain_s, last_s, folded_s = (statistics.median(t[k]) for k in ("plain", "last", "folded"))
        print(f"| {name} | {plain_s:.3f} | {last_s:.3f} | {median_ratio(t['last'], t['plain']):.2f}x | "
              f"{last_s / plain_s:.2f}x | {folded_s:.3f} | {median_ratio(t['folded'], t['last']):.2f}x | "
              f"{n_folded} | {same} |")

if __name__ == "__main__":
    main()
