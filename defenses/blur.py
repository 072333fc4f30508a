"""The one Gaussian blur of hbbench: the `blur` baseline and Heat-and-Blur's massive blur are the same
operation, so the ablation Heat-and-Blur must beat blurs exactly as Heat-and-Blur does."""
from __future__ import annotations

import math

import kornia
import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (kornia), kernel +-3 sigma capped to the image, reflect border;
    differentiable. sigma <= 0, or a kernel under 3 pixels, leaves ``x`` as it is."""
    if sigma <= 0:
        return x
    h, w = x.shape[-2:]
    k = min(2 * math.ceil(3 * sigma) + 1, 2 * (min(h, w) - 1) + 1)  # reflect padding needs k // 2 < side
    if k < 3:
        return x
    return kornia.filters.gaussian_blur2d(x, (k, k), (float(sigma), float(sigma)), border_type="reflect")


class GaussianBlur(PreprocessorPyTorch):
    """Plain Gaussian blur of std ``sigma`` pixels as an ART preprocessor (true gradient)."""

    def __init__(self, sigma: float, device_type: str = "cpu"):
        super().__init__(device_type=device_type, is_fitted=True, apply_fit=False, apply_predict=True)
        self.sigma = float(sigma)

    def forward(self, x: torch.Tensor, y=None):
        return gaussian_blur(x, self.sigma), y
