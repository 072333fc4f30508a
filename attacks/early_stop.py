"""PGD that keeps the iterate that fooled the model (best iterate) and stops attacking it (early stop).

ART's ``ProjectedGradientDescentPyTorch`` takes every image through all ``max_iter`` steps and returns
the last iterate, though the forward pass of each step already tells whether the iterate it
differentiates fools the attacked model. Here a forward hook on the network keeps those logits (no
extra pass): an image whose iterate fooled the model keeps that iterate and leaves the batch, so its
remaining forward and backward passes are not run.

That is sound only when the attack is scored on the model it attacks, and deterministically: the
undefended model, or a deterministic defense under bpda or adaptive. Then the kept iterate fools the
scored model too, and no image's outcome gets better for the defense. For a random defense a fooling
draw is not a fooling input, and an oblivious (transfer) attack wants examples beyond the bare
boundary of the undefended model: there ``early_stop`` must be off, and the runner turns it off
(``stops_early``; ``hbbench.runner.craft`` for random defenses).

The step itself is ART's (``_compute_pytorch``: loss gradient through the classifier, its EoT draws
included, signed step, projection); only the loop over steps and the random start are written here,
the random start as ART draws it, so without a fooled image the result is ART's.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from art.attacks.evasion.projected_gradient_descent.projected_gradient_descent_pytorch import (
    ProjectedGradientDescentPyTorch,
)
from art.utils import random_sphere


def stops_early(cells) -> bool:
    """Whether an attack run may stop early: each cell it feeds (``cells``, done or not) is scored on the
    model it attacks, the undefended model or the defense under bpda or adaptive. The undefended run
    also feeds the oblivious cells (transfer): then it runs to the last step."""
    return all(c.scored_on_attacked_model for c in cells)


@contextmanager
def last_logits(model: torch.nn.Module):
    """``with last_logits(net) as seen: ...`` then ``seen[0]``: the output of the network's last
    forward pass in the block (under EoT the last draw's; the defenses it is used with are
    deterministic, so every draw's)."""
    seen: list = [None]

    def keep(_module, _inputs, output):
        seen[0] = output.detach()

    handle = model.register_forward_hook(keep)
    try:
        yield seen
    finally:
        handle.remove()


class EarlyStopPGD(ProjectedGradientDescentPyTorch):
    """ART's PyTorch PGD; with ``early_stop`` an image leaves the batch at the first iterate that fools
    the attacked model and keeps that iterate. ``early_stop=False`` is ART's PGD unchanged."""

    attack_params = ProjectedGradientDescentPyTorch.attack_params + ["early_stop"]

    def __init__(self, estimator, early_stop: bool = True, **kwargs):
        super().__init__(estimator, **kwargs)
        self.early_stop = bool(early_stop)
        self.fooled_at: np.ndarray | None = None  # per image of the last generate(): step that fooled, -1 none

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
        self._fooled_steps: list[np.ndarray] = []
        adv = super().generate(x, y, **kwargs)
        single = self._fooled_steps and self.num_random_init <= 1  # restarts: ART picks among them
        self.fooled_at = np.concatenate(self._fooled_steps) if single else None
        return adv

    def _generate_batch(self, x, targets, mask, eps, eps_step) -> np.ndarray:
        if not self.early_stop or np.ndim(eps) or np.ndim(eps_step) or self.decay is not None:
            return super()._generate_batch(x, targets, mask, eps, eps_step)  # per-image budgets, momentum
        device = self.estimator.device
        x0, targets = x.to(device), targets.to(device)
        mask = None if mask is None else mask.to(device)
        labels = targets.argmax(1)
        adv = self._random_start(x0, eps, mask) if self.num_random_init > 0 else x0.clone()
        fooled_at = torch.full((len(x0),), -1, dtype=torch.long, device=device)
        active = torch.arange(len(x0), device=device)
        for step in range(self.max_iter):
            self._i_max_iter = step
            with last_logits(self.estimator.model) as seen:
                stepped = self._compute_pytorch(adv[active], x0[active], targets[active],
                                                None if mask is None else mask[active], eps, eps_step, False, None)
            predicted = seen[0].argmax(1)
            fooled = predicted == labels[active] if self.targeted else predicted != labels[active]
            fooled_at[active[fooled]] = step
            adv[active[~fooled]] = stepped[~fooled]  # a fooled image keeps the iterate that fooled
            active = active[~fooled]
            if not len(active):
                break
        self._fooled_steps.append(fooled_at.cpu().numpy())
        return adv.detach().cpu().numpy()

    def _random_start(self, x0, eps, mask):
        """ART's random start (``_compute_pytorch``'s first step), drawn from NumPy's generator as ART
        draws it, so the same seed starts at the same point."""
        noise = random_sphere(len(x0), int(np.prod(x0.shape[1:])), eps, self.norm)
        noise = torch.from_numpy(noise.reshape(x0.shape).astype(np.float32)).to(x0.device)
        if mask is not None:
            noise = noise * mask
        start = x0 + noise
        if self.estimator.clip_values is not None:
            start = start.clamp(float(self.estimator.clip_values[0]), float(self.estimator.clip_values[1]))
        return start
