"""Threat models: what the attacker's gradient sees of a defense.

- ``oblivious``: the attack targets the undefended model; the defense acts at prediction only.
- ``bpda``: the attack targets the defended model, with the defense replaced by the identity on the
  backward pass. ART's PyTorch path differentiates through ``forward()`` and never calls
  ``estimate_forward()`` (ART issue #1526), so BPDA lives in ``forward()`` as a straight-through
  estimator: ``x + (defended(x) - x).detach()``.
- ``adaptive``: the attack differentiates through the defense's own ``forward()``; only defenses
  written in PyTorch have one.
"""
from __future__ import annotations

import torch
from art.defences.preprocessor.preprocessor import Preprocessor, PreprocessorPyTorch

from hbbench.errors import HBBenchError

THREAT_MODELS = ("oblivious", "bpda", "adaptive")


class StraightThrough(PreprocessorPyTorch):
    """Wrap any ART preprocessor (NumPy or PyTorch) so its backward pass is the identity (BPDA)."""

    def __init__(self, inner: Preprocessor, device_type: str = "cpu"):
        super().__init__(device_type=device_type, is_fitted=True, apply_fit=False, apply_predict=True)
        self.inner = inner

    def forward(self, x: torch.Tensor, y=None):
        with torch.no_grad():
            if isinstance(self.inner, PreprocessorPyTorch):
                defended = self.inner.forward(x.detach(), None)[0]
            else:
                defended = torch.from_numpy(self.inner(x.detach().cpu().numpy())[0]).to(x.device)
        return x + (defended.to(x.dtype) - x).detach(), y


def attack_defenses(defense: Preprocessor | None, threat: str, device_type: str = "cpu") -> tuple[list, str]:
    """The preprocessors the attacker's classifier carries for ``threat``, and a label for the
    gradient the attacker gets through the defense ('none', 'identity' or 'true'). A defense with
    no PyTorch forward has no true gradient: under ``adaptive`` it falls back to BPDA, and the
    label says so, so no table passes that off as a full adaptive attack."""
    if threat not in THREAT_MODELS:
        raise HBBenchError(f"unknown threat model '{threat}'; valid choices: {', '.join(THREAT_MODELS)}")
    if defense is None:
        return [], "n/a (no defense)"
    if threat == "oblivious":
        return [], "none (attack ignores defense)"
    if threat == "bpda" or not is_differentiable(defense):
        label = "identity (BPDA)" if threat == "bpda" else "identity (BPDA; defense has no gradient)"
        return [StraightThrough(defense, device_type)], label
    return [defense], "true"


def is_differentiable(defense: Preprocessor | None) -> bool:
    return defense is None or isinstance(defense, PreprocessorPyTorch)
