"""Dataset registry: every factory returns a ``Dataset`` of float32 images in [0, 1], channels
first, with int64 labels, in a fixed order. ``n`` takes the first N samples, except that the image-file
datasets (imagefolder, imagenet) draw N class-balanced ones from ``seed`` by default (``sample="first"``:
the first N)."""
from __future__ import annotations

import importlib.util
import re
from functools import partial
from itertools import zip_longest
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from hbbench.datasets.folders import synset_folders
from hbbench.datasets.imagenet import split_samples, val_wnids
from hbbench.errors import HBBenchError
from hbbench.registry import Registry

DATASETS = Registry("dataset")
SAMPLING = ("stratified", "first")


class Dataset:
    """Labels and ids in memory; images read on demand (``images(indices)``), so a shard of a large
    dataset never needs the rest in memory. ``x`` reads them all (handy for small sets)."""

    def __init__(self, name: str, y: np.ndarray, num_classes: int, ids: list[str], *,
                 x: np.ndarray | None = None, paths: list[Path] | None = None, size: int = 224,
                 classes: str | None = None):
        self.name, self.y, self.num_classes, self.ids = name, y, num_classes, ids
        self.classes = classes  # the class set its labels index ("imagenet-1k", "cifar-10"); None: not declared
        self._x, self._paths, self._size = x, paths, size

    def __len__(self) -> int:
        return len(self.y)

    @property
    def x(self) -> np.ndarray:
        return self.images(range(len(self)))

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self._x.shape[1:]) if self._x is not None else (3, self._size, self._size)

    def images(self, indices, workers: int = 0) -> np.ndarray:
        """Float32 images (len(indices), C, H, W) in [0, 1]; files are decoded through a torch
        DataLoader (``workers`` > 0 decodes in parallel processes)."""
        indices = list(indices)
        if self._x is not None:
            return self._x[indices]
        if not indices:
            return np.empty((0, *self.sample_shape), np.float32)
        files = ImageFiles([self._paths[i] for i in indices], self._size)
        if not workers:  # decoded here: the report reads images without importing torch
            return np.stack([files[i] for i in range(len(files))])
        from torch.utils.data import DataLoader  # lazy: only parallel decoding needs torch

        return np.concatenate([b.numpy() for b in DataLoader(files, batch_size=64, num_workers=workers)])


class ImageFiles:
    """A map-style torch dataset of image files with the ImageNet evaluation transform."""

    def __init__(self, paths: list[Path], size: int):
        self.paths, self.transform = paths, imagenet_transform(size)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            with Image.open(self.paths[i]) as im:
                return self.transform(im.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise HBBenchError(f"cannot read image {self.paths[i]}: {exc}") from None


def _validate_n(n):
    if n is not None and (not isinstance(n, int) or n < 1):
        raise HBBenchError(f"n must be a positive integer, got {n}")


def imagenet_transform(size: int = 224):
    """Resize the short side to size*256/224, centre-crop size (the usual ImageNet evaluation): an RGB
    PIL image -> float32 (3, size, size) in [0, 1]. The same pixels as torchvision's ``Compose([Resize(
    round(size * 256 / 224)), CenterCrop(size), ToTensor()])`` (tests/test_datasets_imagenet.py compares
    them), written with PIL, whose resize torchvision calls for PIL images: reading a dataset then needs
    no torch (2 s to import, torchvision 2 s more), so ``hbbench report`` renders without it."""
    return partial(_evaluation_crop, size=size)


def _evaluation_crop(im: Image.Image, size: int) -> np.ndarray:
    short = round(size * 256 / 224)
    w, h = im.size  # torchvision.transforms.functional._compute_resized_output_size, then center_crop
    new_w, new_h = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    im = im.resize((new_w, new_h), Image.BILINEAR)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    pixels = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)) / np.float32(255)


def _validate_images(paths: list[Path]) -> None:
    """Read every file's header before any work starts, so a broken file is named up front."""
    for p in paths:
        try:
            with Image.open(p):
                pass
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise HBBenchError(f"cannot read image {p}: {exc}") from None


@DATASETS.register("imagenet-samples", "the 20 labelled ImageNet images bundled in the foolbox package")
def imagenet_samples(n: int | None = None, size: int = 224) -> Dataset:
    spec = importlib.util.find_spec("foolbox")  # located, not imported: only its data files are used
    if spec is None or spec.origin is None:
        raise HBBenchError("the foolbox package is not installed; it carries the imagenet-samples images")
    folder = Path(spec.origin).parent / "data"
    pattern = re.compile(r"imagenet_(\d+)_(\d+)\.(jpg|png)$")
    files = sorted((p for p in folder.iterdir() if pattern.match(p.name)), key=lambda p: p.name)
    if not files:
        raise HBBenchError(f"no ImageNet samples found in {folder}; is foolbox installed?")
    files = files[:n]
    y = np.array([int(pattern.match(p.name).group(2)) for p in files], np.int64)
    _validate_images(files)
    return Dataset("imagenet-samples", y, 1000, [p.name for p in files], paths=files, size=size, classes="imagenet-1k")


def _subset(samples: list, n: int | None, seed: int, sample: str) -> list:
    """``n`` of ``samples`` ((path, class) pairs), kept in their fixed order so ids and reading order
    are stable. ``first``: the first n. ``stratified``: classes and each class's images shuffled from
    ``seed``, then one image per class in turn until n, because the first n of a sorted folder are a
    few classes only."""
    if sample not in SAMPLING:
        raise HBBenchError(f"sample must be {' or '.join(SAMPLING)}, got {sample!r}")
    if n is None or n >= len(samples):
        return samples
    if sample == "first":
        return samples[:n]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:  # what default_rng accepts
        raise HBBenchError(f"stratified sampling needs a seed >= 0, got {seed!r}")
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, (_, label) in enumerate(samples):
        by_class.setdefault(label, []).append(i)
    queues = [rng.permutation(by_class[c]) for c in rng.permutation(sorted(by_class))]
    picked = [i for turn in zip_longest(*queues) for i in turn if i is not None][:n]
    return [samples[i] for i in sorted(picked)]


def _image_dataset(name: str, samples: list[tuple[Path, int]], ids: list[str], size: int) -> Dataset:
    paths = [p for p, _ in samples]
    _validate_images(paths)
    return Dataset(name, np.array([c for _, c in samples], np.int64), 1000, ids, paths=paths, size=size,
                   classes="imagenet-1k")


@DATASETS.register("imagefolder", "images in ImageNet synset folders (PATH/<synset>/<image>); class "
                   "index from timm's ImageNet synset list, so a subset keeps true indices", prefix=True)
def imagefolder(path: str, n: int | None = None, seed: int = 0, sample: str = "stratified",
                size: int = 224) -> Dataset:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise HBBenchError(f"image folder not found: {root}")
    samples = synset_folders(root)
    if not samples:
        raise HBBenchError(f"no images found under {root} (expected {root}/<synset>/<image>.JPEG)")
    samples = _subset(samples, n, seed, sample)
    return _image_dataset(f"imagefolder:{path}", samples, [f"{p.parent.name}/{p.name}" for p, _ in samples], size)


@DATASETS.register("imagenet", "ImageNet as torchvision.datasets.ImageNet reads it: ROOT holds the devkit "
                   "(or meta.bin) and val/, flat or in synset folders (or ILSVRC2012_img_val.tar)", prefix=True)
def imagenet(root: str, split: str = "val", n: int | None = None, seed: int = 0, sample: str = "stratified",
             size: int = 224) -> Dataset:
    base = Path(root).expanduser()
    if not base.is_dir():
        raise HBBenchError(f"imagenet: {base} not found")
    if split not in ("train", "val"):
        raise HBBenchError(f"imagenet: split must be train or val, got {split!r}")
    samples = _subset(split_samples(base, split, val_wnids(base)), n, seed, sample)
    return _image_dataset(f"imagenet:{root}", samples, [p.name for p, _ in samples], size)


@DATASETS.register("cifar10", "CIFAR-10 test set through torchvision (downloads only with download=true)")
def cifar10(n: int | None = None, root: str = "~/.cache/hbbench/cifar10", download: bool = False) -> Dataset:
    import torchvision  # lazy: torchvision (2 s) loads only for the datasets that use it

    try:
        ds = torchvision.datasets.CIFAR10(str(Path(root).expanduser()), train=False, download=download)
    except RuntimeError:
        raise HBBenchError(f"CIFAR-10 is not in {root}; pass --download to fetch it") from None
    k = len(ds.data) if n is None else min(n, len(ds.data))
    x = ds.data[:k].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return Dataset("cifar10", np.asarray(ds.targets[:k], np.int64), 10, [str(i) for i in range(k)], x=x,
                   classes="cifar-10")


@DATASETS.register("npz", "a .npz file with arrays x (N,C,H,W or N,H,W,C, in [0,1] or 0..255) and y", prefix=True)
def npz(path: str, n: int | None = None) -> Dataset:
    p = Path(path).expanduser()
    if not p.is_file():
        raise HBBenchError(f"npz file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as data:
            if "x" not in data or "y" not in data:
                raise HBBenchError(f"{p} must hold arrays named x and y, has: {', '.join(data.files)}")
            x, y = data["x"][:n], data["y"][:n]
    except (OSError, ValueError) as exc:
        raise HBBenchError(f"cannot read npz file {p}: {exc}") from None
    if x.ndim != 4:
        raise HBBenchError(f"{p}: x must have 4 dimensions (N,C,H,W), got shape {x.shape}")
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise HBBenchError(f"{p}: x contains NaN or infinite values")
    if x.max() > 1.0:
        x = x / 255.0
    if x.min() < 0.0 or x.max() > 1.0:
        raise HBBenchError(f"{p}: x must lie in [0, 1] or 0..255")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise HBBenchError(f"{p}: y must be {len(x)} integer labels, got shape {y.shape} dtype {y.dtype}")
    num_classes = int(y.max()) + 1 if len(y) else 0
    return Dataset(f"npz:{path}", y.astype(np.int64), num_classes, [str(i) for i in range(len(y))],
                   x=np.ascontiguousarray(x))


def load_dataset(name: str = "imagenet-samples", n: int | None = None, seed: int = 0, **params) -> Dataset:
    """Load a registered dataset (``imagenet-samples``, ``imagefolder:PATH``, ``imagenet:ROOT``,
    ``cifar10``, ``npz:PATH``); ``n`` takes N samples: the first N in the dataset's fixed order, or
    for the datasets that sample (``imagefolder``, ``imagenet``), N drawn from ``seed``."""
    _validate_n(n)
    if "seed" in DATASETS.resolve(name)[0].params:
        params["seed"] = seed
    ds = DATASETS.create(name, n=n, **params)
    if len(ds) == 0:
        raise HBBenchError(f"dataset {name} is empty")
    return ds


def cell_params(name: str, params: dict) -> dict:
    """The dataset parameters a cell draws its images with: the dataset's default sampling written in,
    then ``params``. Which images --n draws is part of a cell, so a run made before stratified
    sampling (first N) is not resumed with stratified draws; the report reloads a run's images by it."""
    accepted = DATASETS.resolve(name)[0].params
    return {**({"sample": accepted["sample"]} if "sample" in accepted else {}), **params}


def load_first(name: str, n: int | None = None, **params) -> Dataset:
    """The first ``n`` samples in the dataset's fixed order, also where ``n`` would otherwise draw a
    stratified subset: an image index means that position, and some documented tables were measured
    on the first N images."""
    if "sample" in DATASETS.resolve(name)[0].params:
        params.setdefault("sample", "first")
    return load_dataset(name, n=n, **params)
