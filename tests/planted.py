"""The planted models and defenses the tests register (tests/conftest.py's fixtures): torch and ART
are imported here, not in conftest.py, so pytest-xdist's controller, which runs no test, starts
without them."""
import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch


class Rounding(PreprocessorPyTorch):
    """Correct forward (colours rounded to 16 levels), useless gradient: torch.round's is zero."""

    def __init__(self):
        super().__init__(device_type="cpu", is_fitted=True, apply_fit=False, apply_predict=True)

    def forward(self, x, y=None):
        return torch.round(x * 15) / 15, y


class Scaled(torch.nn.Module):
    """Logits times 1000 (as defensive distillation's temperature does): the same predictions, a float32
    softmax saturated to exactly one-hot on confident images, so their cross-entropy gradient is 0."""

    def __init__(self, inner, factor: float = 1000.0):
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x):
        return self.inner(x) * self.factor
