"""hbbench's ``autoattack`` (standard version) against the authors' own code (``pyautoattack``, the
``bench`` extra) on the same model, images and budgets: robust top-1 from both, the images on which they
disagree, and both wall times.

The model is EfficientNet-Lite0 as hbbench loads it (``load_model`` + ``make_classifier``: BatchNorm
folded, channels-last on CPU); pyautoattack wants a torch module on [0, 1] inputs, so it gets that same
module behind the classifier's normalisation. The images: the first ``--n`` of the shared 200-image
folder as ``load_dataset("imagefolder:...")`` samples them (class-balanced), labelled with their true
ImageNet classes. Both run L-inf, version standard, at each ``--eps``; hbbench seeds NumPy, pyautoattack
takes ``seed=0``. Target: robust top-1 within one image of ``--n`` at every ε.

    .venv/bin/python -m bench.bench_autoattack [--n 32] [--eps 1/255,2/255]
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from pyautoattack import AutoAttack

from bench.common import machine
from hbbench.attacks import make_attack
from hbbench.classifier import make_classifier
from hbbench.datasets import load_dataset
from hbbench.models import load_model
from hbbench.parsing import parse_budget

SHARED_200 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "imagenet-samples-200"


class Normalized(torch.nn.Module):
    """``module`` on [0, 1] pixels: the normalisation hbbench's classifier applies as ART preprocessing."""

    def __init__(self, module, mean, std):
        super().__init__()
        self.module = module
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, np.float32)).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(np.asarray(std, np.float32)).reshape(1, -1, 1, 1))

    def forward(self, x):
        return self.module((x - self.mean) / self.std)


def _load() -> float:
    return os.getloadavg()[0]


def _one_side(name, eps_text, robust, seconds, linf, eps, load_before, load_after):
    print(f"eps {eps_text}: {name} robust top-1 {robust.mean():.3f} ({int(robust.sum())}/{len(robust)}); wall "
          f"{seconds:.1f} s; max L-inf {linf:.5f} (eps {eps:.5f}); 1-min load avg {load_before:.2f} before, "
          f"{load_after:.2f} after")
    print(f"  robust ({name}): " + "".join("1" if r else "." for r in robust))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--eps", default="1/255,2/255")
    ap.add_argument("--data", default=f"imagefolder:{SHARED_200}")
    ap.add_argument("--n-iter", type=int, default=100, help="APGD / FAB iterations (the authors': 100)")
    ap.add_argument("--n-queries", type=int, default=5000, help="Square's queries (the authors': 5000)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--impl", choices=["both", "hbbench", "pyautoattack"], default="both",
                    help="run one side only (to run the two in parallel processes on a busy machine); each prints "
                         "its robust flags, one character per image, to compare")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_model("efficientnet_lite0")
    clf = make_classifier(loaded, device="cpu")
    reference = Normalized(clf.model, loaded.mean, loaded.std).eval()
    data = load_dataset(args.data, n=args.n)
    x, y = data.x, data.y.astype(np.int64)
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    with torch.no_grad():
        clean = clf.predict(x).argmax(1) == y
        assert (reference(x_t).argmax(1).numpy() == clf.predict(x).argmax(1)).all(), "the wrapper changes predictions"
    print(f"# {machine()}; threads {args.threads}; {len(y)} images of {args.data}; clean top-1 {clean.mean():.3f} "
          f"({int(clean.sum())}/{len(y)}); APGD/FAB {args.n_iter} iterations, Square {args.n_queries} queries")
    logging.basicConfig(level=logging.WARNING)

    for eps_text in args.eps.split(","):
        eps = parse_budget(eps_text)
        load0 = _load()
        if args.impl != "pyautoattack":
            np.random.seed(0)
            ours = make_attack("autoattack", clf, eps=eps, n_iter=args.n_iter, n_queries=args.n_queries)
            t0 = time.perf_counter()
            x_ours = ours.generate(x, y=y)
            t_ours = time.perf_counter() - t0
            robust_ours = clf.predict(x_ours).argmax(1) == y
            linf_ours = np.abs(x_ours - x).reshape(len(x), -1).max(1).max()
            if args.impl == "hbbench":
                _one_side("hbbench", eps_text, robust_ours, t_ours, linf_ours, eps, load0, _load())
                print(f"  hbbench robust after each attack: {ours.robust_after}")
                continue

        load1 = _load()
        aa = AutoAttack(reference, norm="Linf", eps=eps, version="standard", device="cpu", seed=0)
        aa.apgd.n_iter = aa.apgd_targeted.n_iter = aa.fab.n_iter = args.n_iter
        aa.square.n_queries = args.n_queries
        t0 = time.perf_counter()
        x_ref, _ = aa.run_standard_evaluation(x_t, y_t, batch_size=len(y))
        t_ref = time.perf_counter() - t0
        with torch.no_grad():
            robust_ref = (reference(x_ref).argmax(1) == y_t).numpy()
        load2 = _load()
        linf_ref = (x_ref - x_t).abs().reshape(len(x), -1).amax(1).max().item()
        if args.impl == "pyautoattack":
            _one_side("pyautoattack", eps_text, robust_ref, t_ref, linf_ref, eps, load1, load2)
            continue

        differ = np.nonzero(robust_ours != robust_ref)[0]
        print(f"eps {eps_text}: robust top-1 hbbench {robust_ours.mean():.3f} ({int(robust_ours.sum())}/{len(y)}) "
              f"pyautoattack {robust_ref.mean():.3f} ({int(robust_ref.sum())}/{len(y)}); "
              f"disagree on {len(differ)} image(s){': ' if len(differ) else ''}"
              + ", ".join(f"#{i} {data.ids[i]} (hbbench {'robust' if robust_ours[i] else 'fooled'})" for i in differ))
        print(f"  hbbench robust after each attack: {ours.robust_after}")
        print(f"  wall: hbbench {t_ours:.1f} s, pyautoattack {t_ref:.1f} s; max L-inf hbbench {linf_ours:.5f}, "
              f"pyautoattack {linf_ref:.5f} (eps {eps:.5f}); 1-min load avg {load0:.2f} / {load1:.2f} / {load2:.2f} "
              f"(before hbbench / before pyautoattack / after)")
        print("  robust (hbbench):      " + "".join("1" if r else "." for r in robust_ours))
        print("  robust (pyautoattack): " + "".join("1" if r else "." for r in robust_ref))


if __name__ == "__main__":
    main()
