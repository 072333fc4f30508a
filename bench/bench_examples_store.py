"""What storing adversarial examples costs (hbbench.examples_store): the time to compress one cell's
examples and the bytes per image, at the level hbbench writes (zlib 1) beside ``np.savez_compressed``'s
fixed level 6 and ``np.savez`` (no compression), on real examples of EfficientNet-Lite0: FGSM and
PGD-10 at 4/255, and what Heat-and-Blur and JPEG made of the PGD examples (a defense cell stores
those too). Median of several round-robin runs, one process.

    python -m bench.bench_examples_store [--n 4] [--repeats 5]
"""
from __future__ import annotations

import argparse
import io
import statistics

import numpy as np

from bench.common import interleaved_seconds, machine
from hbbench import examples_store


def _savez(compressed: bool):
    def write(arrays):
        buf = io.BytesIO()
        (np.savez_compressed if compressed else np.savez)(buf, **arrays)
        return buf.getvalue()
    return write


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4, help="images per cell (the default --save-examples is 4)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import torch

    from hbbench.attacks import make_attack
    from hbbench.defenses import make_defense

    from bench.common import embedded

    torch.set_num_threads(2)
    clf, ds = embedded(args.n, "cpu")
    x, y = ds.x, ds.y
    np.random.seed(0)
    pgd = make_attack("pgd", clf, eps=4 / 255, max_iter=10).generate(x, y=y)
    examples = {"FGSM": make_attack("fgsm", clf, eps=4 / 255).generate(x, y=y), "PGD-10": pgd}
    for name in ("heatblur", "jpeg"):
        examples[f"{name} of PGD-10"] = make_defense(name, clf)(pgd)[0]
    print(machine())
    print(f"{args.n} images of 224 px per cell; raw float32 {x[0].nbytes / 1e6:.2f} MB per image; "
          f"median of {args.repeats} round-robin runs\n")
    print(f"| examples | writer | ms per cell | MB per image | share of raw |\n|---|---|---|---|---|")
    for what, array in examples.items():
        arrays = {"sample": np.arange(args.n), "sample_id": np.array([str(i) for i in range(args.n)]),
                  "x_adv": np.ascontiguousarray(array, np.float32)}
        writers = {"hbbench (zlib 1)": lambda a=arrays: examples_store.to_bytes(a["sample"], a["sample_id"], a["x_adv"]),
                   "np.savez_compressed (zlib 6)": lambda a=arrays: _savez(True)(a),
                   "np.savez (none)": lambda a=arrays: _savez(False)(a)}
        times = interleaved_seconds(writers, repeats=args.repeats)
        for name, fn in writers.items():
            size = len(fn()) / args.n
            print(f"| {what} | {name} | {statistics.median(times[name]) * 1000:.0f} | {size / 1e6:.3f} | "
                  f"{size / array[0].nbytes:.2f} |")


if __name__ == "__main__":
    main()
