"""Attack costs on the same batch, timed round-robin in one process:

- ART's PGD-10 through hbbench vs a plain torch PGD-10 loop (target <= 1.10x). Both do 10 steps of
  eps/4 from a random start in the Linf ball of 4/255 on the same 20 images and the same frozen model;
  the plain loop is the floor: one forward + input-gradient backward per step.
- the ``cw`` preset (PyTorch Carlini-Wagner L2) vs that PGD-10 (target <= 5x).
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from bench.common import embedded, interleaved_seconds, machine, median_ratio
from hbbench.attacks import TRANSFER, make_attack


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
    attack = make_attack("pgd", clf, eps=eps, batch_size=args.n, **TRANSFER)  # every step, as the plain loop
    cw = make_attack("cw", clf, batch_size=args.n)
    out = {}
    t = interleaved_seconds({
        "art": lambda: out.__setitem__("art", attack.generate(ds.x, y=ds.y)),
        "plain": lambda: out.__setitem__("plain", plain_pgd(clf.model, mean, std, ds.x, ds.y, eps)),
        "cw": lambda: out.__setitem__("cw", cw.generate(ds.x, y=ds.y)),
    }, args.repeats)
    med = {k: statistics.median(v) for k, v in t.items()}
    acc = lambda xa: float((clf.predict(xa).argmax(1) == ds.y).mean())  # noqa: E731
    print(f"machine: {machine()}")
    print(f"{args.n} images 224px, median of {args.repeats} round-robin runs")
    print(f"  PGD-10 eps 4/255, hbbench (ART ProjectedGradientDescent): {med['art']:.2f} s   top-1 after {acc(out['art']):.3f}")
    print(f"  PGD-10 eps 4/255, plain torch loop:                       {med['plain']:.2f} s   top-1 after {acc(out['plain']):.3f}")
    print(f"  cw preset ({cw.__class__.__name__}):                      {med['cw']:.2f} s   top-1 after {acc(out['cw']):.3f}")
    print(f"  ratio ART PGD / plain PGD: {median_ratio(t['art'], t['plain']):.3f}  (target <= 1.10)")
    print(f"  ratio cw / ART PGD-10:     {median_ratio(t['cw'], t['art']):.2f}  (target <= 5)")


if __name__ == "__main__":
    main()
