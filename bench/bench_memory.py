"""Peak memory of a sharded sweep over 100 vs 1,000 images (target <= 1.5x). The 1,000 images are
../shared/datasets/imagenet-samples-200 repeated five times through symlinks in a temporary folder,
read with the folder loader (nothing is copied into the repository)."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import machine, run_cli

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "imagenet-samples-200"


def repeated_folder(root: Path, copies: int) -> Path:
    for synset in sorted(p for p in SHARED.iterdir() if p.is_dir()):
        (root / synset.name).mkdir(parents=True)
        for image in sorted(synset.iterdir()):
            for k in range(copies):
                (root / synset.name / f"{k}_{image.name}").symlink_to(image)
    return root


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--shard-size", type=int, default=50)
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data} not found: this bench needs the shared 200-image folder")
    with tempfile.TemporaryDirectory() as tmp:
        folder = repeated_folder(Path(tmp) / "data", 5)
        peaks = {}
        for n in (100, 1000):  # [sample=first]: bench/README.md's figures read the first n images
            seconds, peaks[n] = run_cli(["sweep", "--attacks", "fgsm", "--defense", "none", "--threat", "oblivious",
                                         "--data", f"imagefolder:{folder}[sample=first]", "--n", str(n),
                                         "--shard-size", str(args.shard_size)], str(Path(tmp) / f"out{n}"))
            print(f"  {n} images: {seconds:.0f} s, peak RSS {peaks[n]} MiB", flush=True)
    print(f"machine: {machine()}")
    print(f"peak RSS 1000 / 100 images (shard size {args.shard_size}): {peaks[1000] / peaks[100]:.2f}x  (target <= 1.5x)")


if __name__ == "__main__":
    main()
