"""Image folders named by ImageNet synset: the layout an image folder and an ImageNet root share."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from hbbench.errors import HBBenchError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@lru_cache(maxsize=1)
def imagenet_synsets() -> tuple[str, ...]:
    """The 1000 ImageNet synsets in class-index order (timm's ImageNet info, no network)."""
    from timm.data import ImageNetInfo  # lazy: timm (2 s) loads only where ImageNet class names are needed

    return tuple(ImageNetInfo().label_names())


def synset_folders(root: Path) -> list[tuple[Path, int]]:
    """(image, class index) under root/<synset>/, in (synset, file name) order; the index is the
    synset's position in timm's list, so a subset of the classes keeps true ImageNet indices."""
    index = {s: i for i, s in enumerate(imagenet_synsets())}
    samples = []
    for sub in sorted(d for d in root.iterdir() if d.is_dir()):
        if sub.name not in index:
            raise HBBenchError(f"folder {sub} is not an ImageNet synset (expected names like n01440764)")
        samples += [(p, index[sub.name]) for p in sorted(sub.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    return samples
