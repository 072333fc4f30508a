"""One picture of what Heat-and-Blur does to one image, clean and under attack.

Row 1 is the clean image, row 2 its oblivious PGD version (ART ProjectedGradientDescent, Linf, eps,
eps_step = eps/4, 10 steps, crafted against the undefended model); hbbench.explain_figure draws the
rows (the report draws the same figure from a run's stored example, without this module's attack).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hbbench.attacks import TRANSFER, make_attack
from hbbench.classifier import make_classifier
from hbbench.datasets import imagenet_transform, load_first
from hbbench.defenses import make_defense
from hbbench.errors import HBBenchError
from hbbench.explain_figure import class_names, draw, panels_per_row  # noqa: F401 - panels_per_row re-exported
from hbbench.labels import eps_label


def _image(image_or_index, dataset: str, size: int):
    """(x (1,3,H,W) float32 in [0,1], label or None, readable id)."""
    if isinstance(image_or_index, (int, np.integer)) or (isinstance(image_or_index, str) and image_or_index.isdigit()):
        i = int(image_or_index)
        if i < 0:
            raise HBBenchError(f"image index must be >= 0, got {i}")
        ds = load_first(dataset, n=i + 1)  # index i is the i-th image of the fixed order
        if i >= len(ds):
            raise HBBenchError(f"dataset '{dataset}' has {len(ds)} images; index {i} is out of range")
        return ds.x[i:i + 1], int(ds.y[i]), (ds.ids[i] if ds.ids else f"{dataset}[{i}]")
    if isinstance(image_or_index, np.ndarray):
        x = np.asarray(image_or_index, np.float32)
        x = x[None] if x.ndim == 3 else x
        if x.ndim != 4 or x.shape[0] != 1:
            raise HBBenchError(f"image array must be (3,H,W) or (1,3,H,W), got {image_or_index.shape}")
        return x, None, "array"
    path = Path(str(image_or_index))
    if not path.is_file():
        raise HBBenchError(f"image not found: {path} (give a file, or an index into --data)")
    try:
        with Image.open(path) as im:
            x = imagenet_transform(size)(im.convert("RGB"))[None]
    except OSError as exc:
        raise HBBenchError(f"cannot read image {path}: {exc}") from None
    return x.astype(np.float32), None, path.name


def explain(image_or_index=0, dataset: str = "imagenet-samples", model: str = "efficientnet_lite0",
            out: str | Path = "heatblur_explain.png", eps: float = 4 / 255, attack_iters: int = 10,
            device: str = "cpu", seed: int = 0, dpi: int = 100, **defense_params):
    """Draw the Heat-and-Blur explanation figure for one image and write it to ``out`` (PNG).

    ``image_or_index``: an index into ``dataset``, an image file path, or a (3,H,W) array in [0, 1].
    ``defense_params``: HeatBlur parameters (method, top_k, sigma, mode, ...; defaults = the
    registered ``heatblur`` defaults). Returns the matplotlib Figure; it has
    ``2 * panels_per_row(top_k)`` axes.
    """
    if eps <= 0:
        raise HBBenchError(f"eps must be > 0, got {eps}")
    clf = make_classifier(model, device=device)
    size = int(clf.input_shape[-1])
    x, label, name = _image(image_or_index, dataset, size)
    if tuple(x.shape[1:]) != tuple(clf.input_shape):
        raise HBBenchError(f"image shape {tuple(x.shape[1:])} does not fit model input {tuple(clf.input_shape)}")
    hb = make_defense("heatblur", clf, **defense_params)
    names = class_names(clf.nb_classes)

    np.random.seed(seed)
    torch.manual_seed(seed)
    y = np.array([label]) if label is not None else clf.predict(x).argmax(1)
    x_adv = make_attack("pgd", clf, eps=eps, max_iter=attack_iters, **TRANSFER).generate(x, y=y).astype(np.float32)

    truth = f" (true: {names(label)})" if label is not None else ""
    return draw(x, x_adv, label, clf, hb, f"Heat-and-Blur on {name}{truth} — {hb!r}; attack: oblivious "
                f"PGD-{attack_iters}, eps {eps_label(eps)}", f"PGD {eps_label(eps)}", out, dpi)
