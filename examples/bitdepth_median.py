"""An example hbbench plugin: a user's own preprocessing defense, bit-depth reduction followed by a
median filter, as one PyTorch preprocessor (docs/plugins.md walks through it).

    hbbench sweep --plugin examples/bitdepth_median.py --defense bitdepth_median,jpeg

Written in PyTorch, the defense has a true gradient, so the `adaptive` threat model differentiates
through it as it is; `bpda` replaces it by the identity on the backward pass.
"""
import kornia
import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch

from hbbench.defenses import DEFENSES
from hbbench.errors import HBBenchError


class BitDepthMedian(PreprocessorPyTorch):
    """Round each channel to ``bits`` bits, then take the median over a ``window`` x ``window`` patch."""

    def __init__(self, bits: int, window: int, device_type: str = "cpu"):
        super().__init__(device_type=device_type, is_fitted=True, apply_fit=False, apply_predict=True)
        self.levels, self.window = 2 ** bits - 1, window

    def forward(self, x: torch.Tensor, y=None):
        squeezed = torch.round(x * self.levels) / self.levels
        return kornia.filters.median_blur(squeezed, (self.window, self.window)), y


@DEFENSES.register("bitdepth_median", "example plugin: bit-depth reduction, then a median filter (PyTorch)")
def bitdepth_median(classifier, bits: int = 4, window: int = 3):
    # A factory takes the undefended ART classifier first: here only its device is read.
    if not 1 <= bits <= 8 or window < 1 or window % 2 == 0:
        raise HBBenchError(f"bitdepth_median: bits must be in 1..8 and window odd and >= 1, got {bits}, {window}")
    return BitDepthMedian(bits, window, "gpu" if classifier.device.type == "cuda" else "cpu")
