"""Heat-and-Blur cost: its time over one forward + input-gradient backward of the model (target <= 1.2).
Its images/s beside the other defenses: bench/bench_defenses.py.

    python -m bench.bench_heatblur [--n 16] [--repeats 5] [--model 'torchvision:vgg19[weights=random]']

Prints figures only (median of several runs); never asserts on time.
"""
from __future__ import annotations

import statistics

import numpy as np
import torch

from bench.common import batch_parser, interleaved_seconds, machine, median_ratio


def main(argv=None):
    ap = batch_parser(__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0", help="any registered model, e.g. "
                    "'torchvision:vgg19[weights=random]' (random weights are fine for timing)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from hbbench.classifier import make_classifier
    from hbbench.datasets import load_dataset
    from hbbench.defenses import make_defense

    clf = make_classifier(args.model, device=args.device)
    ds = load_dataset("imagenet-samples")
    x = torch.from_numpy(np.concatenate([ds.x] * (args.n // len(ds) + 1))[: args.n]).to(clf.device)
    model = clf.model
    mean = torch.as_tensor(np.asarray(clf.preprocessing.mean, np.float32), device=clf.device)
    std = torch.as_tensor(np.asarray(clf.preprocessing.std, np.float32), device=clf.device)
    sync = torch.cuda.synchronize if clf.device.type == "cuda" else (lambda: None)

    def fwd_bwd():
        xi = x.detach().clone().requires_grad_(True)
        out = model((xi - mean) / std)
        (g,) = torch.autograd.grad(out.max(dim=1).values.sum(), xi)
        sync()
        return g

    def forward_only():
        with torch.no_grad():
            model((x - mean) / std)
        sync()

    hb = make_defense("heatblur", clf)

    def heatblur():
        with torch.no_grad():  # as in ART's predict; HeatBlur opens enable_grad for its heatmap itself
            hb.forward(x)
        sync()

    print(f"machine: {machine()}; {args.model}, batch {args.n} x 3 x 224 x 224; median of {args.repeats} runs")
    t = interleaved_seconds({"fb": fwd_bwd, "hb": heatblur, "f": forward_only}, args.repeats)
    ratio = median_ratio(t["hb"], t["fb"])
    t_fb, t_hb, t_f = (statistics.median(t[k]) for k in ("fb", "hb", "f"))
    print(f"model forward (no grad), F:                  {t_f:7.3f} s  ({t_f / args.n:.3f} s per image)")
    print(f"model forward + input-gradient backward, G:  {t_fb:7.3f} s  ({t_fb / args.n:.3f} s per image; G/F {t_fb / t_f:.2f})")
    print(f"HeatBlur {hb!r}: {t_hb:7.3f} s")
    print(f"cost ratio HeatBlur / (forward + backward) = {ratio:.2f}  (median of back-to-back ratios; target <= 1.2)")
    print(f"defended prediction (HeatBlur + forward) / plain forward = {(t_hb + t_f) / t_f:.2f}")


if __name__ == "__main__":
    main()
