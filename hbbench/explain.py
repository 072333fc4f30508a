"""One picture of what Heat-and-Blur does to one image, clean and under attack.

Row 1 is the clean image, row 2 its oblivious PGD version (ART ProjectedGradientDescent, Linf, eps,
eps_step = eps/4, 10 steps, crafted against the undefended model). Each row shows: the input; the
relevance heatmap of each of the top-k predicted classes (captum, the defense's method); the combined
mask the defense uses; the massively blurred copy; the defended input the network classifies; the
top-5 predictions before and after the defense.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hbbench.errors import HBBenchError
from hbbench.labels import eps_label

TOP = 5


def panels_per_row(top_k: int) -> int:
    """input + k heatmaps + mask + blurred + defended + top-5 before + top-5 after."""
    return top_k + 6


def _image(image_or_index, dataset: str, size: int):
    """(x (1,3,H,W) float32 in [0,1], label or None, readable id)."""
    if isinstance(image_or_index, (int, np.integer)) or (isinstance(image_or_index, str) and image_or_index.isdigit()):
        from hbbench.datasets import load_first

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
    from PIL import Image

    from hbbench.datasets import imagenet_transform

    try:
        with Image.open(path) as im:
            x = imagenet_transform(size)(im.convert("RGB")).numpy()[None]
    except OSError as exc:
        raise HBBenchError(f"cannot read image {path}: {exc}") from None
    return x.astype(np.float32), None, path.name


def _class_names(n: int):
    if n == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return lambda i: info.index_to_description(int(i)).split(",")[0]
    return lambda i: str(int(i))


def explain(image_or_index=0, dataset: str = "imagenet-samples", model: str = "efficientnet_lite0",
            out: str | Path = "heatblur_explain.png", eps: float = 4 / 255, attack_iters: int = 10,
            device: str = "cpu", seed: int = 0, dpi: int = 100, **defense_params):
    """Draw the Heat-and-Blur explanation figure for one image and write it to ``out`` (PNG).

    ``image_or_index``: an index into ``dataset``, an image file path, or a (3,H,W) array in [0, 1].
    ``defense_params``: HeatBlur parameters (method, top_k, sigma, mode, ...; defaults = the
    registered ``heatblur`` defaults). Returns the matplotlib Figure; it has
    ``2 * panels_per_row(top_k)`` axes.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from hbbench.attacks import TRANSFER, make_attack
    from hbbench.classifier import make_classifier, predict_probs
    from hbbench.defenses import make_defense
    from hbbench.defenses.blur import gaussian_blur
    from hbbench.defenses.heatmaps import relevance

    if eps <= 0:
        raise HBBenchError(f"eps must be > 0, got {eps}")
    clf = make_classifier(model, device=device)
    size = int(clf.input_shape[-1])
    x, label, name = _image(image_or_index, dataset, size)
    if tuple(x.shape[1:]) != tuple(clf.input_shape):
        raise HBBenchError(f"image shape {tuple(x.shape[1:])} does not fit model input {tuple(clf.input_shape)}")
    hb = make_defense("heatblur", clf, **defense_params)
    names = _class_names(clf.nb_classes)

    np.random.seed(seed)
    torch.manual_seed(seed)
    y = np.array([label]) if label is not None else clf.predict(x).argmax(1)
    x_adv = make_attack("pgd", clf, eps=eps, max_iter=attack_iters, **TRANSFER).generate(x, y=y).astype(np.float32)

    k = hb.top_k
    ncol = panels_per_row(k)
    fig, axes = plt.subplots(2, ncol, figsize=(2.1 * ncol, 5.2), squeeze=False)
    truth = f" (true: {names(label)})" if label is not None else ""
    fig.suptitle(f"Heat-and-Blur on {name}{truth} — {hb!r}; attack: oblivious PGD-{attack_iters}, "
                 f"eps {eps_label(eps)}", fontsize=9)

    for row, (title, xi) in enumerate((("clean", x), (f"PGD {eps_label(eps)}", x_adv))):
        xt = torch.from_numpy(xi).to(clf.device)
        p_before = predict_probs(clf, xi)[0]
        top = np.argsort(-p_before)[:k]
        hb.validate_input(xt)
        m = hb.heat(xt).detach()  # combined, probability-weighted mask the defense uses
        defended = hb.compose(xt, m)  # what hb.forward returns, without computing the heatmap again
        p_after = predict_probs(clf, defended.detach().cpu().numpy())[0]
        if hb.mode == "heatmap":
            blurred = gaussian_blur(m, hb.blur_sigma(xt)).expand(-1, 3, -1, -1)
        else:
            blurred = gaussian_blur(xt, hb.blur_sigma(xt))
        ax = axes[row]
        _img(ax[0], xi[0], f"{title} input")
        for j, c in enumerate(top):
            rel, _ = relevance(hb.model, xt, targets=torch.tensor([int(c)]), method=hb.method,
                               mean=hb.mean, std=hb.std)
            _img(ax[1 + j], rel[0, 0].cpu().numpy(), f"heat #{j + 1}: {names(c)[:16]}\np={p_before[c]:.2f}",
                 cmap="inferno")
        _img(ax[k + 1], m[0, 0].detach().cpu().numpy(), f"mask m (top-{k}, weighted)", cmap="inferno")
        _img(ax[k + 2], blurred[0].detach().cpu().numpy(), f"blurred σ={hb.blur_sigma(xt):.3g}px")
        _img(ax[k + 3], defended[0].detach().cpu().numpy(), f"defended ({hb.mode})")
        _bars(ax[k + 4], p_before, names, label, "top-5 before")
        _bars(ax[k + 5], p_after, names, label, "top-5 after")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return fig


def _img(ax, arr: np.ndarray, title: str, cmap=None):
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = np.clip(arr.transpose(1, 2, 0), 0, 1)
    else:
        hi = float(np.percentile(arr, 99.5)) or 1.0
        arr = np.clip(arr / hi, 0, 1)
    ax.imshow(arr, cmap=cmap, vmin=0, vmax=1)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def _bars(ax, p: np.ndarray, names, label, title: str):
    top = np.argsort(-p)[:TOP][::-1]
    colors = ["tab:green" if label is not None and c == label else "tab:gray" for c in top]
    ax.barh(range(TOP), p[top], color=colors)
    ax.set_yticks(range(TOP))
    ax.set_yticklabels([names(c)[:18] for c in top], fontsize=6)
    ax.set_xlim(0, 1)
    ax.tick_params(axis="x", labelsize=6)
    ax.set_title(title, fontsize=7)
