"""Attacks at a budget that use no gradient of the model under test: the remedies for a model whose
every loss has a zero gradient (docs/evaluation.md, "Remedies"), where APGD-DLR and the margin loss are
masked too (a model that outputs one-hot scores).

- ``hsj_eps``: ART's HopSkipJump (decision-based: it reads predicted labels only) in L-inf. It finds a
  minimal adversarial example with no budget of its own; at the cell's ``eps`` an image counts as
  fooled only when that example lies within ``eps`` of the image, so the example is kept there and
  the clean image is returned elsewhere (the attack failed at that budget: nothing is clipped).
- ``transfer_pgd``: PGD on a surrogate model the user names (``--surrogate``), with the attacked
  classifier's defenses in front, scored on the model under test (Papernot et al. 2016).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from art.attacks import evasion as E

from hbbench.attacks.early_stop import TRANSFER
from hbbench.attacks.presets import pgd
from hbbench.attacks.registry import ATTACKS
from hbbench.classifier import make_classifier, with_defenses
from hbbench.errors import HBBenchError
from hbbench.models import load_model

WITHIN = 1e-6  # float32 rounding of an example ART projected onto the ball


class AtBudget:
    """A minimal-perturbation attack scored at a budget: its example where it lies within ``eps``
    (L-inf) of the image, the image itself elsewhere."""

    attack_params = ["eps"]
    norm = np.inf

    def __init__(self, attack, eps: float):
        self.attack, self.eps = attack, float(eps)

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
        adv = self.attack.generate(x, y=y, **kwargs).astype(np.float32)
        within = np.abs(adv - x).reshape(len(x), -1).max(1) <= self.eps + WITHIN
        return np.where(within[:, None, None, None], adv, x).astype(np.float32)


@ATTACKS.register("hsj_eps", "HopSkipJump (decision-based, labels only) in L-inf, its minimal example kept "
                  "where it lies within eps (the clean image elsewhere): an attack at a budget that uses no "
                  "gradient", norm="inf", budget=True, gradient=False)
def hsj_eps(classifier, eps: float = 4 / 255, max_iter: int = 20, max_eval: int = 1000, init_eval: int = 100,
            init_size: int = 100, batch_size: int = 32):
    if eps <= 0:
        raise HBBenchError(f"eps must be > 0, got {eps}")
    hsj = E.HopSkipJump(classifier, batch_size=batch_size, norm=np.inf, max_iter=max_iter, max_eval=max_eval,
                        init_eval=min(init_eval, max_eval), init_size=init_size, verbose=False)
    return AtBudget(hsj, eps)


@lru_cache(maxsize=2)
def _surrogate(name: str, device: str):
    """The surrogate's undefended classifier, loaded once per process."""
    return make_classifier(load_model(name), device=device)


@ATTACKS.register("transfer_pgd", "PGD crafted on a surrogate model (surrogate=NAME, as --model names models) "
                  "with the attacked classifier's defenses in front, scored on the model under test: uses no "
                  "gradient of that model", norm="inf", budget=True, gradient=False)
def transfer_pgd(classifier, surrogate: str = "", eps: float = 4 / 255, eps_step: float | None = None,
                 max_iter: int = 40, batch_size: int = 32):
    if not surrogate:
        raise HBBenchError("transfer_pgd needs surrogate=MODEL (the sweep's --surrogate)")
    if eps <= 0:
        raise HBBenchError(f"eps must be > 0, got {eps}")
    base = _surrogate(surrogate, classifier.device.type)
    defended = with_defenses(base, classifier.preprocessing_defences or [], getattr(classifier, "eot_draws", 1))
    return pgd(defended, eps=eps, eps_step=eps_step, max_iter=max_iter, batch_size=batch_size, **TRANSFER)
