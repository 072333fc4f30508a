"""Putting a threat model (hbbench.threats) into effect: the preprocessors the attacker's classifier
carries, and the gradient it gets through the defense.

ART's PyTorch path differentiates through ``forward()`` and never calls ``estimate_forward()`` (ART
issue #1526), so BPDA lives in ``forward()`` as a straight-through estimator:
``x + (defended(x) - x).detach()``.
"""
from __future__ import annotations

import torch
from art.defences.preprocessor.preprocessor import Preprocessor, PreprocessorPyTorch

from hbbench.threats import get_threat_model


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


def attacker_preprocessors(defense: Preprocessor | None, threat: str, device_type: str = "cpu") -> tuple[list, str]:
    """The preprocessors the attacker's classifier carries for ``threat``, and a label for the
    gradient the attacker gets through the defense. A defense with no PyTorch forward has no true
    gradient: under ``adaptive`` it falls back to BPDA, and the label says so, so no table passes
    that off as a full adaptive attack. EoT (the mean gradient over K draws) is the attacked
    classifier's job (hbbench.classifier.with_defenses); the label names it."""
    model = get_threat_model(threat)
    if defense is None:
        return [], "n/a (no defense)"
    if not model.crafted_against_defense:
        return [], "none (attack ignores defense)"
    eot = f", EoT over {model.eot} draws" if model.eot > 1 else ""
    if model.gradient == "identity" or not is_differentiable(defense):
        label = "identity (BPDA" + ("; defense has no gradient" if model.gradient != "identity" else "") + eot + ")"
        return [StraightThrough(defense, device_type)], label
    return [defense], "true" + (f" ({eot[2:]})" if eot else "")


def is_differentiable(defense: Preprocessor | None) -> bool:
    return defense is None or isinstance(defense, PreprocessorPyTorch)
