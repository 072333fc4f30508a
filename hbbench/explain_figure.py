"""The Heat-and-Blur explanation figure drawn for an image and an adversarial version of it that are
given: no attack here. ``hbbench explain`` crafts its PGD example and draws with ``draw``; the report
draws with a run's stored example (hbbench.examples_store), so it needs the model (the heatmaps are
its gradients) but no attack code.

Each row shows: the input; the relevance heatmap of each of the top-k predicted classes (captum, the
defense's method); the combined mask the defense uses; the massively blurred copy; the defended input
the network classifies; the top-5 predictions before and after the defense.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
from timm.data import ImageNetInfo

from hbbench.classifier import predict_probs
from hbbench.defenses.blur import gaussian_blur
from hbbench.defenses.heatmaps import relevance

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

TOP = 5


def panels_per_row(top_k: int) -> int:
    """input + k heatmaps + mask + blurred + defended + top-5 before + top-5 after."""
    return top_k + 6


def class_names(n: int):
    if n == 1000:
        info = ImageNetInfo()
        return lambda i: info.index_to_description(int(i)).split(",")[0]
    return lambda i: str(int(i))


def draw(x: np.ndarray, x_adv: np.ndarray, label, clf, hb, title: str, adv_title: str,
         out: str | Path | None = None, dpi: int = 100):
    """The figure for ``x`` (1,3,H,W) and ``x_adv`` on classifier ``clf`` defended by HeatBlur ``hb``;
    ``label`` may be None. Written to ``out`` (PNG) when given; returns the Figure."""
    names = class_names(clf.nb_classes)
    k = hb.top_k
    ncol = panels_per_row(k)
    fig, axes = plt.subplots(2, ncol, figsize=(2.1 * ncol, 5.2), squeeze=False)
    fig.suptitle(title, fontsize=9)
    for row, (name, xi) in enumerate((("clean", x), (adv_title, x_adv))):
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
        _img(ax[0], xi[0], f"{name} input")
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
    if out is not None:
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
