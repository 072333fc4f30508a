"""hbbench's attacks beside the libraries a user would pick instead, in one process on the same
images and the same model: torchattacks, foolbox and a plain PyTorch loop (the floor: one forward
and one input-gradient backward per step). PGD-10 (step eps/4) and FGSM, L-inf, with and without a
random start (FGSM with a random start is one step of size eps from a uniform start, as foolbox's
``FGSM(random_start=True)``; hbbench and torchattacks run it as PGD with one step of eps).

Timed round-robin, median of ``--repeats``. Prints images/s, robust top-1 on the model, and, for
the attacks without a random start (deterministic), the largest |adv - plain-loop adv| and the share of
pixels that differ (a gradient within rounding of 0 can take either sign: one pixel then moves 2 eps). hbbench goes
through its Python API (``make_classifier`` + ``make_attack`` + ``generate``); its rows are the
preset's defaults and, where the preset has ``early_stop``, the same with early stop off. The peers
get a separate copy of the model in the memory format they would use (contiguous).

    pip install -e .[bench]; .venv/bin/python -m bench.bench_peers --n 16
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from bench.common import machine
from hbbench.attacks import make_attack
from hbbench.classifier import make_classifier
from hbbench.datasets import load_dataset
from hbbench.errors import HBBenchError
from hbbench.models import load_model


def plain_loop(model, mean, std, x, y, eps, step, steps, random_start):
    """PGD as ART, torchattacks and foolbox compute it: ascend the CE loss by step * sign(grad),
    project on the eps-ball around x and on [0, 1]."""
    x0, yt = torch.from_numpy(x), torch.from_numpy(y)
    xa = x0.clone()
    if random_start:
        xa = (x0 + torch.empty_like(x0).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model((xa - mean) / std), yt)
        (grad,) = torch.autograd.grad(loss, xa)
        xa = (x0 + (xa.detach() + step * grad.sign() - x0).clamp(-eps, eps)).clamp(0, 1)
    return xa.numpy()


class Normalized(torch.nn.Module):
    def __init__(self, model, mean, std):
        super().__init__()
        self.model, self.mean, self.std = model, mean, std

    def forward(self, x):
        return self.model((x - self.mean) / self.std)


def settings(eps: float) -> dict:
    """name -> (steps, step size, random start)."""
    return {"PGD-10": (10, eps / 4, False), "PGD-10 rs": (10, eps / 4, True),
            "FGSM": (1, eps, False), "FGSM rs": (1, eps, True)}


def hbbench_runs(x, y, eps, n_batch) -> dict:
    """Each hbbench row: name -> {setting -> fn}. Built with the code as it is (before/after)."""
    clf = make_classifier("efficientnet_lite0", device="cpu")
    rows = {"hbbench": {}, "hbbench early stop off": {}}
    for name, (steps, step, rs) in settings(eps).items():
        for row, extra in (("hbbench", {}), ("hbbench early stop off", {"early_stop": False})):
            if name == "FGSM" and not rs:
                params = dict(eps=eps, batch_size=n_batch)
                attack_name = "fgsm"
            else:
                params = dict(eps=eps, eps_step=step, max_iter=steps, num_random_init=int(rs), batch_size=n_batch)
                attack_name = "pgd"
            try:
                attack = make_attack(attack_name, clf, **params, **extra)
            except HBBenchError:  # no early_stop parameter (the code before it existed)
                continue
            rows[row][name] = lambda a=attack: a.generate(x, y=y)
    return {k: v for k, v in rows.items() if v}


def peer_runs(model, mean, std, x, y, eps) -> dict:
    rows = {"plain PyTorch loop": {}}
    for name, (steps, step, rs) in settings(eps).items():
        rows["plain PyTorch loop"][name] = (
            lambda s=steps, st=step, r=rs: plain_loop(model, mean, std, x, y, eps, st, s, r))
    try:
        import torchattacks
    except ImportError:
        print("torchattacks not installed (pip install -e .[bench]): skipped")
    else:
        rows["torchattacks"] = {}
        # torchattacks' set_normalization_used means inputs come normalized: the model takes pixels instead
        normalized = Normalized(model, mean, std).eval()  # torchattacks restores the mode it found
        for name, (steps, step, rs) in settings(eps).items():
            if name == "FGSM":
                atk = torchattacks.FGSM(normalized, eps=eps)
            else:
                atk = torchattacks.PGD(normalized, eps=eps, alpha=step, steps=steps, random_start=rs)
            rows["torchattacks"][name] = lambda a=atk: a(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0, 1), preprocessing=dict(
        mean=mean.flatten().tolist(), std=std.flatten().tolist(), axis=-3))
    rows["foolbox"] = {}
    for name, (steps, step, rs) in settings(eps).items():
        if steps == 1:
            atk = fb.attacks.FGSM(random_start=rs)
        else:
            atk = fb.attacks.LinfPGD(abs_stepsize=step, steps=steps, random_start=rs)
        rows["foolbox"][name] = (lambda a=atk: a(fmodel, torch.from_numpy(x), torch.from_numpy(y),
                                                 epsilons=eps)[1].numpy())
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="imagenet-samples", help="a dataset name as hbbench takes it")
    ap.add_argument("--n", type=int, default=16, help="images, attacked as one batch")
    ap.add_argument("--eps", type=float, default=4 / 255)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", default="", help="comma list of settings to run (default: all)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ds = load_dataset(args.data, n=args.n)
    x, y = ds.x, ds.y.astype(np.int64)
    loaded = load_model("efficientnet_lite0")
    model = loaded.module.eval().requires_grad_(False)
    mean = torch.tensor(loaded.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std).view(1, 3, 1, 1)
    rows = {**hbbench_runs(x, y, args.eps, args.n), **peer_runs(model, mean, std, x, y, args.eps)}
    names = [s for s in settings(args.eps) if not args.only or s in args.only.split(",")]

    times = {(r, s): [] for r in rows for s in names if s in rows[r]}
    out = {}
    for r, s in times:  # warm-up: one FGSM-sized run each
        if s.startswith("FGSM"):
            rows[r][s]()
    for _ in range(args.repeats):
        for r, s in times:
            np.random.seed(0)
            torch.manual_seed(0)
            t0 = time.perf_counter()
            out[r, s] = rows[r][s]()
            times[r, s].append(time.perf_counter() - t0)

    def top1(xa):
        with torch.no_grad():
            return float((model((torch.from_numpy(np.asarray(xa, np.float32)) - mean) / std).argmax(1).numpy()
                          == y).mean())

    print(f"machine: {machine()}; torch threads {torch.get_num_threads()}")
    print(f"{args.data}, {args.n} images, efficientnet_lite0, eps {args.eps:.5f}, median of {args.repeats} "
          f"round-robin runs; clean top-1 {top1(x):.3f}")
    print("| setting | implementation | images/s | time / plain loop | robust top-1 | max abs diff vs plain (share of pixels > 1e-6) |")
    print("|---|---|---|---|---|---|")
    for s in names:
        plain = times.get(("plain PyTorch loop", s))
        for r in rows:
            if (r, s) not in times:
                continue
            med = statistics.median(times[r, s])
            ratio = statistics.median(a / b for a, b in zip(times[r, s], plain))
            gap = np.abs(out[r, s] - out["plain PyTorch loop", s])
            diff = "—" if s.endswith("rs") else f"{gap.max():.1e} ({(gap > 1e-6).mean():.0e} of pixels)"
            print(f"| {s} | {r} | {args.n / med:.2f} | {ratio:.2f}x | {top1(out[r, s]):.3f} | {diff} |")


if __name__ == "__main__":
    main()
