"""An ImageNet ROOT as torchvision.datasets.ImageNet reads it, for the `imagenet` dataset (hbbench.datasets):
the devkit's validation labels, the val or train images in file-name order, flat or in synset folders,
and the archive extracted where the folder is missing.
"""
from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

from hbbench.datasets.folders import IMAGE_SUFFIXES, imagenet_synsets, synset_folders
from hbbench.errors import HBBenchError


# The devkit and archives are read by torchvision's own functions (the devkit's .mat layout, its md5
# checks, the val archive's extraction), so ROOT is read exactly as torchvision.datasets.ImageNet does.
def val_wnids(root: Path) -> list[str]:
    """The devkit's validation labels (wnids, in file-name order), after checking its classes are the
    model's: the devkit is parsed once into ROOT/meta.bin, as torchvision does."""
    from torchvision.datasets import imagenet as tv  # lazy: torchvision (2 s), for an ImageNet folder only

    devkit, meta = root / tv.ARCHIVE_META["devkit"][0], root / tv.META_FILE
    if not meta.is_file():
        if not devkit.is_file():
            raise HBBenchError(f"imagenet: {root} has no devkit: expected {devkit.name} or {meta.name} in it")
        try:
            tv.parse_devkit_archive(str(root))
        except (RuntimeError, OSError, tarfile.TarError, KeyError, ValueError) as exc:
            raise HBBenchError(f"imagenet: cannot parse {devkit}: {_first_line(exc)}") from None
    try:
        wnid_to_classes, val_wnids = tv.load_meta_file(str(root))
    except (RuntimeError, OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise HBBenchError(f"imagenet: cannot read {meta}: {_first_line(exc)}") from None
    # torchvision indexes the sorted wnids and timm's list is sorted: equal lists, equal class indices
    if sorted(wnid_to_classes) != list(imagenet_synsets()):
        raise HBBenchError(f"imagenet: the devkit's {len(wnid_to_classes)} classes are not the 1000 ImageNet "
                           "synsets the models are indexed by")
    return val_wnids


def split_samples(root: Path, split: str, val_wnids: list[str]) -> list[tuple[Path, int]]:
    """(image, class index) of ROOT/<split>, in file-name order whether the folder is flat (the
    official val layout, labelled by the devkit) or sorted into synset folders."""
    folder = root / split
    if not folder.is_dir():
        _extract_split(root, split)
    entries = list(folder.iterdir())
    files = sorted(p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if any(p.is_dir() for p in entries):
        if files:
            raise HBBenchError(f"imagenet: {folder} holds both synset folders and loose images (a half-sorted "
                               "extraction?)")
        samples = sorted(synset_folders(folder), key=lambda s: s[0].name)
        if not samples:
            raise HBBenchError(f"imagenet: no images found under {folder}")
        return samples
    if split != "val":
        raise HBBenchError(f"imagenet: a flat {folder} has no labels; only val's are in the devkit")
    if len(files) != len(val_wnids):
        raise HBBenchError(f"imagenet: {folder} holds {len(files)} images but the devkit labels {len(val_wnids)}; "
                           "a flat val folder must hold them all (or sort a subset into synset folders)")
    index = {s: i for i, s in enumerate(imagenet_synsets())}
    return [(p, index[wnid]) for p, wnid in zip(files, val_wnids)]


def _extract_split(root: Path, split: str) -> None:
    """No ROOT/<split> yet: torchvision's ImageNet extracts its archive there, sorted into synset folders."""
    import torchvision  # lazy: torchvision (2 s), for an ImageNet archive only

    archive = root / torchvision.datasets.imagenet.ARCHIVE_META[split][0]
    if not archive.is_file():
        raise HBBenchError(f"imagenet: {root} has no {split}/ folder and no {archive.name}")
    try:
        torchvision.datasets.ImageNet(str(root), split=split)
    except (RuntimeError, OSError, tarfile.TarError) as exc:
        raise HBBenchError(f"imagenet: cannot extract {archive}: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
