"""`imagenet:ROOT` (the official validation layout, read through torchvision's devkit functions) and the
stratified `n` of image folders. The devkit is a small fake built here in torchvision's layout (1000
leaf synsets with shuffled ILSVRC2012 ids, so the id -> wnid -> index mapping is really exercised),
the images are the labelled ImageNet samples bundled in foolbox, copied into tmp_path; nothing is
downloaded."""
from __future__ import annotations

import hashlib
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hbbench.datasets import load_dataset, load_first
from hbbench.datasets.folders import imagenet_synsets
from hbbench.errors import HBBenchError
from hbbench.grid import expand
from hbbench.spec import SweepSpec
from tests.conftest import cli_runner

DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
MAT_FIELDS = ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images")  # meta.mat's synsets struct, in the order torchvision's parse_meta_mat reads


def _shared_images(k: int = 8) -> list[tuple[str, Path]]:
    """(synset, image) of k images of distinct classes bundled with foolbox (always installed: the
    embedded dataset), not in synset order."""
    import importlib.util
    import re

    folder = Path(importlib.util.find_spec("foolbox").origin).parent / "data"
    pattern = re.compile(r"imagenet_(\d+)_(\d+)\.(jpg|png)$")
    by_class = {}
    for path in sorted(folder.iterdir()):
        m = pattern.match(path.name)
        if m:
            by_class.setdefault(imagenet_synsets()[int(m.group(2))], path)
    chosen = sorted(by_class.items())[:k]
    return chosen[1::2] + chosen[::2]


def _devkit(root: Path, val_synsets: list[str], monkeypatch) -> None:
    """ROOT/ILSVRC2012_devkit_t12.tar.gz: meta.mat (the 1000 leaves with shuffled ids and one non-leaf,
    which torchvision skips) and the val ground truth (one ILSVRC2012 id per line)."""
    import scipy.io

    synsets = imagenet_synsets()
    ids = np.random.default_rng(1).permutation(len(synsets)) + 1
    rows = [(int(i), w, f"class {w}, alias", "", 0, np.zeros(0), 0, 1300) for i, w in zip(ids, synsets)]
    rows.append((len(synsets) + 1, "n00001740", "entity", "", 1, np.array([1]), 19, 0))
    table = np.empty(len(rows), dtype=[(f, "O") for f in MAT_FIELDS])
    table[:] = rows
    data = root / "devkit" / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    scipy.io.savemat(data / "meta.mat", {"synsets": table})
    id_of = dict(zip(synsets, ids))
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{id_of[s]}\n" for s in val_synsets))
    with tarfile.open(root / DEVKIT, "w:gz") as tar:
        tar.add(root / "devkit" / "ILSVRC2012_devkit_t12", arcname="ILSVRC2012_devkit_t12")
    shutil.rmtree(root / "devkit")
    _accept_md5(root / DEVKIT, "devkit", monkeypatch)


def _accept_md5(archive: Path, kind: str, monkeypatch) -> None:
    """torchvision checks the real archive's md5; the fake one stands in for it."""
    from torchvision.datasets import imagenet as tv

    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(tv.ARCHIVE_META, kind, (archive.name, md5))


def _val_name(k: int) -> str:
    return f"ILSVRC2012_val_{k:08d}.JPEG"


@pytest.fixture
def flat_root(tmp_path, monkeypatch):
    """ROOT with the devkit and a flat val/ of 8 images; returns (root, their synsets in file order)."""
    images = _shared_images()
    root = tmp_path / "imagenet"
    (root / "val").mkdir(parents=True)
    for k, (_, image) in enumerate(images, start=1):
        shutil.copy(image, root / "val" / _val_name(k))
    _devkit(root, [s for s, _ in images], monkeypatch)
    return root, [s for s, _ in images]


def _sorted_copy(flat: Path, synsets: list[str], dest: Path) -> Path:
    """The same images sorted into dest/<wnid>/ (what torchvision leaves after extracting val)."""
    for k, synset in enumerate(synsets, start=1):
        (dest / synset).mkdir(parents=True, exist_ok=True)
        shutil.copy(flat / _val_name(k), dest / synset / _val_name(k))
    return dest


def test_flat_val_is_labelled_by_the_devkit_with_the_models_indices(flat_root):
    root, synsets = flat_root
    ds = load_dataset(f"imagenet:{root}")
    index = imagenet_synsets()
    assert list(ds.y) == [index.index(s) for s in synsets]
    assert ds.ids == [_val_name(k) for k in range(1, len(synsets) + 1)]
    assert (root / "meta.bin").is_file()  # parsed once, as torchvision does


def test_images_equal_those_of_imagefolder(flat_root, tmp_path):
    root, synsets = flat_root
    ds = load_dataset(f"imagenet:{root}")
    folder = load_dataset(f"imagefolder:{_sorted_copy(root / 'val', synsets, tmp_path / 'folder')}")
    row = {i.split("/")[1]: k for k, i in enumerate(folder.ids)}
    order = [row[i] for i in ds.ids]
    assert np.array_equal(ds.x, folder.x[order]) and np.array_equal(ds.y, folder.y[order])


def test_synset_folder_layout_and_meta_bin_give_the_same_dataset(flat_root, tmp_path):
    root, synsets = flat_root
    flat = load_dataset(f"imagenet:{root}")
    other = tmp_path / "sorted"
    _sorted_copy(root / "val", synsets, other / "val")
    shutil.copy(root / "meta.bin", other / "meta.bin")  # no devkit archive: an existing meta.bin serves
    ds = load_dataset(f"imagenet:{other}")
    assert ds.ids == flat.ids and list(ds.y) == list(flat.y)


def test_val_archive_is_extracted_by_torchvision(flat_root, monkeypatch):
    root, synsets = flat_root
    archive = root / "ILSVRC2012_img_val.tar"
    with tarfile.open(archive, "w") as tar:
        for p in sorted((root / "val").iterdir()):
            tar.add(p, arcname=p.name)
    _accept_md5(archive, "val", monkeypatch)
    flat = load_dataset(f"imagenet:{root}")
    shutil.rmtree(root / "val")
    ds = load_dataset(f"imagenet:{root}")
    assert sorted(p.name for p in (root / "val").iterdir()) == sorted(set(synsets))
    assert ds.ids == flat.ids and list(ds.y) == list(flat.y)


def test_missing_devkit_split_and_wrong_count_are_named(flat_root, tmp_path):
    root, _ = flat_root
    with pytest.raises(HBBenchError, match="not found"):
        load_dataset(f"imagenet:{tmp_path / 'nowhere'}")
    (tmp_path / "bare" / "val").mkdir(parents=True)
    with pytest.raises(HBBenchError, match=f"has no devkit: expected {DEVKIT} or meta.bin"):
        load_dataset(f"imagenet:{tmp_path / 'bare'}")
    (root / "val" / _val_name(8)).unlink()
    with pytest.raises(HBBenchError, match="holds 7 images but the devkit labels 8"):
        load_dataset(f"imagenet:{root}")
    shutil.rmtree(root / "val")
    with pytest.raises(HBBenchError, match="no val/ folder and no ILSVRC2012_img_val.tar"):
        load_dataset(f"imagenet:{root}")


def test_cli_without_devkit_exits_2_with_one_line(tmp_path):
    from hbbench.cli import main

    (tmp_path / "bare" / "val").mkdir(parents=True)
    result = cli_runner().invoke(main, ["sweep", "--data", f"imagenet:{tmp_path / 'bare'}", "--attacks", "fgsm",
                                        "--defense", "none", "--threat", "oblivious", "--n", "1",
                                        "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: imagenet: {tmp_path / 'bare'} has no devkit: expected {DEVKIT} or meta.bin in it"]
    # the run directory is locked before the data is read (as for every data error): no cell file in it
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file() and "cells" in p.parts]


@pytest.mark.slow
def test_sweep_on_imagenet_root(flat_root, tmp_path):
    from hbbench.api import sweep

    root, _ = flat_root
    table = sweep(SweepSpec(dataset=f"imagenet:{root}", attacks=["fgsm"], defenses=["none"], n=4,
                            threat_models=["oblivious"], device="cpu"), out=tmp_path / "out", checks="none")
    assert list(table["n"]) == [4]


# Stratified n over an image folder of 3 classes x 4 images.
@pytest.fixture(scope="module")
def folder12(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder12")
    for c, synset in enumerate(imagenet_synsets()[:3]):
        (root / synset).mkdir()
        for k in range(4):
            Image.fromarray(np.full((8, 8, 3), 20 * (4 * c + k), np.uint8)).save(root / synset / f"{k}.png")
    return f"imagefolder:{root}"


def test_stratified_n_takes_each_class_in_turn_in_fixed_order(folder12):
    full = load_dataset(folder12)
    ds = load_dataset(folder12, n=6, seed=3)
    assert np.bincount(ds.y).tolist() == [2, 2, 2]
    assert ds.ids == [i for i in full.ids if i in ds.ids]  # the dataset's fixed order
    assert load_dataset(folder12, n=6, seed=3).ids == ds.ids
    assert len({tuple(load_dataset(folder12, n=3, seed=s).ids) for s in range(5)}) > 1
    assert np.array_equal(ds.x, full.x[[full.ids.index(i) for i in ds.ids]])


def test_first_and_all(folder12):
    full = load_dataset(folder12, sample="first")
    assert load_dataset(folder12).ids == full.ids and len(full) == 12
    assert load_dataset(folder12, n=5, sample="first").ids == full.ids[:5]
    assert load_dataset(folder12, n=50).ids == full.ids
    assert load_first(folder12, n=5).ids == full.ids[:5]  # an explain index, a table measured on the first N
    assert load_first("imagenet-samples", n=2).ids == load_dataset("imagenet-samples").ids[:2]
    with pytest.raises(HBBenchError, match="sample must be stratified or first, got 'random'"):
        load_dataset(folder12, sample="random")


def test_dataset_parameters_on_the_command_line(folder12):
    spec = SweepSpec.from_dict({"dataset": f"{folder12}[sample=first]", "attacks": ["fgsm"]})
    assert spec.dataset == folder12 and spec.dataset_params == {"sample": "first"}
    assert {c.dataset_params for c in expand(spec)} == {(("sample", "first"),)}
    with pytest.raises(HBBenchError, match="has no parameter bogus; it takes: sample, size"):
        expand(SweepSpec.from_dict({"dataset": f"{folder12}[bogus=1]"}))


@pytest.mark.parametrize("size", [224, 32])
def test_the_evaluation_crop_is_torchvisions_to_the_bit(size, tmp_path):
    """hbbench.datasets.imagenet_transform (PIL only) against torchvision's Resize, CenterCrop, ToTensor
    on the embedded images (one per class, 19 of 20: JPEG and PNG, landscape and portrait) and on odd-sized
    noise both ways up; the parallel decode (a DataLoader) reads the same arrays."""
    import torchvision.transforms as T

    from hbbench.datasets import imagenet_transform

    reference = T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size), T.ToTensor()])
    ds = load_dataset("imagenet-samples", size=size)
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(301, 517), (517, 301)]]
    images = [Image.open(p).convert("RGB") for _, p in _shared_images(k=len(ds))] + noise
    assert {im.width < im.height for im in images} == {True, False}
    for im in images:
        ours = imagenet_transform(size)(im)
        assert ours.dtype == np.float32 and ours.shape == (3, size, size)
        np.testing.assert_array_equal(ours, reference(im).numpy())
    np.testing.assert_array_equal(ds.images(range(4), workers=1), ds.images(range(4)))
