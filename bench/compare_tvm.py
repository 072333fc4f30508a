"""TotalVarMin in PyTorch (`tvm`) vs ART's TotalVarMin (`tvm_art`) at the registered defaults: defended
top-1 on clean and on oblivious PGD-10 4/255 images, and how far apart the two outputs are.

    python -m bench.compare_tvm [--n 200] [--data imagefolder:../shared/datasets/imagenet-samples-200]

The adversarial images are crafted once against the undefended model (hbbench's `pgd` preset: 10
steps of eps/4 from one seeded random start). Each implementation then defends the same images in
the same batches from the same seed, so both draw the same masks. Prints figures; never asserts.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from bench.common import machine


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--data", default="imagefolder:../shared/datasets/imagenet-samples-200")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from hbbench.attacks import TRANSFER, make_attack
    from hbbench.classifier import make_classifier
    from hbbench.datasets import load_first
    from hbbench.defenses import make_defense
    from hbbench.execution import apply_defense, seed_everything

    clf = make_classifier("efficientnet_lite0", device="cpu")
    ds = load_first(args.data, n=args.n)  # docs/defenses.md's figures: the first N, not a stratified draw
    x, y = ds.x, ds.y
    log(f"{len(y)} images from {args.data}; crafting PGD-10 4/255 against the undefended model")
    seed_everything("compare_tvm", "pgd")
    x_adv = make_attack("pgd", clf, eps=4 / 255, batch_size=args.batch_size, **TRANSFER).generate(x, y=y).astype(
        np.float32)

    def top1(images):
        return clf.predict(images, batch_size=args.batch_size).argmax(1)

    out, pred, secs = {}, {}, {}
    for name in ("tvm_art", "tvm"):
        defense = make_defense(name, clf)
        for split, images in (("clean", x), ("adv", x_adv)):
            seed_everything("compare_tvm", split)  # the same masks for both implementations
            t = time.perf_counter()
            out[name, split] = apply_defense(defense, images, args.batch_size)
            secs[name, split] = time.perf_counter() - t
            pred[name, split] = top1(out[name, split])
            log(f"{name} {split}: {secs[name, split]:.0f} s")

    n = len(y)
    print(f"machine: {machine()}; {args.threads} torch threads; {n} images of {args.data}; "
          f"batches of {args.batch_size}")
    print(f"undefended: clean top-1 {(top1(x) == y).mean():.3f}, PGD-10 4/255 top-1 {(top1(x_adv) == y).mean():.3f}")
    print("\n| defense | clean top-1 | PGD-10 4/255 top-1 | s / image |\n|---|---|---|---|")
    for name, label in (("tvm_art", "ART TotalVarMin (`tvm_art`)"), ("tvm", "PyTorch TotalVarMin (`tvm`)")):
        per_image = (secs[name, "clean"] + secs[name, "adv"]) / (2 * n)
        print(f"| {label} | {(pred[name, 'clean'] == y).mean():.3f} | {(pred[name, 'adv'] == y).mean():.3f} "
              f"| {per_image:.4f} |")
    print()
    for split in ("clean", "adv"):
        diff = np.abs(out["tvm", split] - out["tvm_art", split])
        agree = int((pred["tvm", split] == pred["tvm_art", split]).sum())
        print(f"{split}: mean |tvm - tvm_art| = {diff.mean():.2e} (max {diff.max():.2e}; mean change of the image "
              f"by tvm_art {np.abs(out['tvm_art', split] - (x if split == 'clean' else x_adv)).mean():.4f}); "
              f"defended predictions agree on {agree} / {n}")
    for split, label in (("clean", "clean"), ("adv", "PGD-10 4/255")):
        gap = abs((pred["tvm", split] == y).mean() - (pred["tvm_art", split] == y).mean())
        print(f"|top-1(tvm) - top-1(tvm_art)|, {label}: {gap:.3f} (target <= 0.02)")


if __name__ == "__main__":
    main()
