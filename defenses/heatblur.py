"""Heat-and-Blur (Brama & Grinshpoun, arXiv 2003.07573) as an ART ``PreprocessorPyTorch``.

1. Heat: a relevance heatmap of the (possibly adversarial) input over the network's top-k predicted
   classes, weighted by their probabilities (``defenses/heatmaps.py``, through captum).
2. Blur: massive Gaussian blurring guided by that heatmap corrupts the adversarial perturbation; the
   result is what the network classifies. Modes:

   - ``heatmap``: the massively blurred heatmap itself is the network input (the paper's literal
     description; grey image);
   - ``mask``: relevant pixels keep the image, the rest is replaced by its massively blurred copy:
     ``m * keep(x) + (1 - m) * blur_sigma(x)``;
   - ``inverse``: the other way round: ``m * blur_sigma(x) + (1 - m) * keep(x)``;

   where ``m`` is the heatmap smoothed by ``heat_sigma`` and scaled to [0, 1] per image, and
   ``keep(x)`` is ``x`` lightly blurred by ``keep_sigma`` (0 = untouched).

Gradients: the heatmap is a constant for autograd by default (``create_graph=False``): under the
``adaptive`` threat model the attack differentiates through the blur and composition only. With
``create_graph=True`` the heatmap pass is differentiated too (double backprop; gradient-type methods).
Under ``bpda`` the threat model wraps this preprocessor in ``StraightThrough`` (identity backward).
Details, equations and the ablation behind the defaults: docs/heatblur.md.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch

import hbbench.defenses.heatmaps as heatmaps
from hbbench.defenses.blur import gaussian_blur
from hbbench.errors import HBBenchError

MODES = ("heatmap", "mask", "inverse")


class HeatBlur(PreprocessorPyTorch):
    """Heat-and-Blur preprocessing defense (see module docstring).

    :param model: the classifier's network (takes normalised input); it is never modified: in-place
        flags are switched off only during the heatmap pass and restored, hooks live only during it.
    :param mean, std: the network's input normalisation, shaped (C,) or (C, 1, 1).
    :param clip_values: valid pixel range of the input; inputs outside it are refused.
    :param method: relevance method, one of ``heatmaps.METHODS``.
    :param top_k: number of top predicted classes whose (probability-weighted) relevance is used.
    :param sigma: the massive blur's std, in pixels, or as a fraction of the image's shorter side
        when ``relative=True``.
    :param mode: ``heatmap``, ``mask`` or ``inverse``.
    :param heat_sigma: smoothing (px) of the relevance map before it is used as a mask.
    :param keep_sigma: light blur (px) of the kept image part (0 = kept as is).
    :param create_graph: differentiate through the heatmap itself (double backprop).
    """

    def __init__(self, model: torch.nn.Module, mean, std, clip_values=(0.0, 1.0), *,
                 method: str = "saliency", top_k: int = 3, sigma: float = 8.0, relative: bool = False,
                 mode: str = "inverse", heat_sigma: float = 4.0, keep_sigma: float = 1.0,
                 create_graph: bool = False, num_classes: int | None = None, device_type: str = "cpu"):
        super().__init__(device_type=device_type, is_fitted=True, apply_fit=False, apply_predict=True)
        heatmaps.validate_method(method)
        if mode not in MODES:
            raise HBBenchError(f"heatblur mode must be one of {', '.join(MODES)}, got '{mode}'")
        if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 1:
            raise HBBenchError(f"heatblur top_k must be a positive integer, got {top_k!r}")
        if num_classes is not None and top_k > num_classes:
            raise HBBenchError(f"heatblur top_k={top_k} exceeds the classifier's {num_classes} classes")
        for name, val, positive in (("sigma", sigma, True), ("heat_sigma", heat_sigma, False),
                                    ("keep_sigma", keep_sigma, False)):
            if not isinstance(val, (int, float, np.number)) or not math.isfinite(val) \
                    or (val <= 0 if positive else val < 0):
                raise HBBenchError(f"heatblur {name} must be {'> 0' if positive else '>= 0'}, got {val!r}")
        if relative and sigma > 1:
            raise HBBenchError(f"heatblur sigma with relative=True is a fraction of the image size (0, 1], got {sigma}")
        if create_graph and method not in heatmaps.DOUBLE_BACKPROP_METHODS:
            raise HBBenchError(f"heatblur create_graph=True supports methods "
                               f"{', '.join(heatmaps.DOUBLE_BACKPROP_METHODS)}, got method '{method}'")
        self.model = model
        dev = self.device
        self.mean = torch.as_tensor(np.asarray(mean, np.float32).reshape(-1), device=dev)
        self.std = torch.as_tensor(np.asarray(std, np.float32).reshape(-1), device=dev)
        self.clip_values = (float(clip_values[0]), float(clip_values[1]))
        self.method, self.top_k, self.mode = method, int(top_k), mode
        self.sigma, self.relative = float(sigma), bool(relative)
        self.heat_sigma, self.keep_sigma = float(heat_sigma), float(keep_sigma)
        self.create_graph = bool(create_graph)
        self.num_classes = num_classes
        self.last_targets = self.last_weights = None  # top-k classes and weights of the last call

    # ------------------------------------------------------------------ pieces (also used by explain)
    def blur_sigma(self, x: torch.Tensor) -> float:
        return self.sigma * min(x.shape[-2:]) if self.relative else self.sigma

    def validate_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.mean.numel():
            raise HBBenchError(f"heatblur input x must be (N, {self.mean.numel()}, H, W), got shape {tuple(x.shape)}")
        lo, hi = self.clip_values
        xmin, xmax = (float(x.detach().min()), float(x.detach().max())) if x.numel() else (lo, hi)
        if xmin < lo - 1e-5 or xmax > hi + 1e-5:
            raise HBBenchError(f"heatblur input x must lie in the clip range [{lo}, {hi}], "
                               f"got values in [{xmin:.4g}, {xmax:.4g}]")

    def relevance_map(self, x: torch.Tensor) -> torch.Tensor:
        """Raw relevance (N, 1, H, W) of the top-k classes (probability-weighted)."""
        rel, obj = heatmaps.relevance(self.model, x, method=self.method, mean=self.mean, std=self.std,
                                      top_k=self.top_k, create_graph=self.create_graph)
        self.last_targets, self.last_weights = obj.last_targets, obj.last_weights
        return rel

    def mask_from_relevance(self, rel: torch.Tensor) -> torch.Tensor:
        """m in [0, 1]: the relevance smoothed by heat_sigma, divided by its per-image maximum."""
        rel = gaussian_blur(rel, self.heat_sigma)
        return rel / rel.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)

    def heat(self, x: torch.Tensor) -> torch.Tensor:
        """The relevance mask m in [0, 1], (N, 1, H, W)."""
        return self.mask_from_relevance(self.relevance_map(x))

    def compose(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        sigma = self.blur_sigma(x)
        if self.mode == "heatmap":
            out = gaussian_blur(m, sigma).expand(-1, x.shape[1], -1, -1)
        else:
            blurred = gaussian_blur(x, sigma)
            keep = gaussian_blur(x, self.keep_sigma)
            out = m * keep + (1 - m) * blurred if self.mode == "mask" else m * blurred + (1 - m) * keep
        return out.clamp(*self.clip_values)

    # ------------------------------------------------------------------ ART interface
    def forward(self, x: torch.Tensor, y=None):
        self.validate_input(x)
        m = self.heat(x)  # opens torch.enable_grad() itself: ART's predict runs under no_grad
        if not self.create_graph:
            m = m.detach()
        return self.compose(x, m), y

    def __repr__(self) -> str:
        return (f"HeatBlur(method={self.method}, top_k={self.top_k}, sigma={self.sigma}"
                f"{' (relative)' if self.relative else ''}, mode={self.mode}, heat_sigma={self.heat_sigma}, "
                f"keep_sigma={self.keep_sigma}, create_graph={self.create_graph})")


def heatblur(classifier, method: str = "saliency", top_k: int = 3, sigma: float = 8.0,
             relative: bool = False, mode: str = "inverse", heat_sigma: float = 4.0, keep_sigma: float = 1.0,
             create_graph: bool = False):
    """Heat-and-Blur on ``classifier``'s own network and normalisation (defaults: docs/heatblur.md)."""
    pre = classifier.preprocessing
    mean = np.zeros(1, np.float32) if pre is None else np.asarray(pre.mean, np.float32)
    std = np.ones(1, np.float32) if pre is None else np.asarray(pre.std, np.float32)
    c = int(classifier.input_shape[0])
    mean, std = np.broadcast_to(mean.reshape(-1), (c,)).copy(), np.broadcast_to(std.reshape(-1), (c,)).copy()
    return HeatBlur(classifier.model, mean, std, (0.0, 1.0) if classifier.clip_values is None else tuple(classifier.clip_values), method=method,
                    top_k=top_k, sigma=sigma, relative=relative, mode=mode, heat_sigma=heat_sigma,
                    keep_sigma=keep_sigma, create_graph=create_graph, num_classes=classifier.nb_classes,
                    device_type="gpu" if classifier.device.type == "cuda" else "cpu")
