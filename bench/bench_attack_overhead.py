"""ART's PGD-10 through hbbench vs a plain torch PGD-10 loop on the same batch (target <= 1.10x).

Both do 10 steps of eps/4 from a random start in the Linf ball of 4/255 on the same 20 images and
the same frozen model; the plain loop is the floor: one forward + input-gradient backward per step.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from bench.common import embedded, machine, median_seconds
from hbbench.attacks import make_attack


def plain_pgd(model, mean, std, x, y, eps, steps=10):
    x0 = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    delta = torch.empty_like(x0).uniform_(-eps, eps)
    for _ in range(steps):
        xa = (x0 + delta).clamp(0, 1).requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model((xa - mean) / std), yt)
        (grad,) = torch.autograd.grad(loss, xa)
        delta = (delta + eps / 4 * grad.sign()).clamp(-eps, eps)
        delta = (x0 + delta).clamp(0, 1) - x0
    return (x0 + delta).numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    clf, ds = embedded(args.n, device="cpu")
    eps = 4 / 255
    mean = torch.tensor(clf.preprocessing.mean)
    std = torch.tensor(clf.preprocessing.std)
    np.random.seed(0)
    torch.manual_seed(0)
    attack = make_attack("pgd", clf, eps=eps, batch_size=args.n)
    t_art = median_seconds(lambda: attack.generate(ds.x, y=ds.y), args.repeats)
    t_plain = median_seconds(lambda: plain_pgd(clf.model, mean, std, ds.x, ds.y, eps), args.repeats)
    x_art = attack.generate(ds.x, y=ds.y)
    x_plain = plain_pgd(clf.model, mean, std, ds.x, ds.y, eps)
    acc = lambda xa: float((clf.predict(xa).argmax(1) == ds.y).mean())  # noqa: E731
    print(f"machine: {machine()}")
    print(f"PGD-10, {args.n} images 224px, eps 4/255, median of {args.repeats}")
    print(f"  hbbench (ART ProjectedGradientDescent): {t_art:.2f} s   top-1 after {acc(x_art):.3f}")
    print(f"  plain torch loop:                       {t_plain:.2f} s   top-1 after {acc(x_plain):.3f}")
    print(f"  ratio ART / plain: {t_art / t_plain:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
