"""Cheap measurements a work unit takes beside its attack, stored with each cell, from which the
checks read whether the defense is randomized and whether its gradient is masked."""
from __future__ import annotations

import numpy as np

RANDOMNESS_PROBE_IMAGES = 2  # a randomized defense differs on any image; two keep the probe cheap


def is_randomized(defense, x: np.ndarray, batch_size: int, apply, seed) -> bool:
    """Whether two passes of ``defense`` over the same images, under two different seeds, differ.
    ``apply(defense, x, batch_size)`` runs it; ``seed(*parts)`` seeds every RNG it could use."""
    if defense is None:
        return False
    x = x[:RANDOMNESS_PROBE_IMAGES]
    outputs = []
    for draw in (1, 2):
        seed("randomness probe", draw)
        outputs.append(apply(defense, x, batch_size))
    return not np.array_equal(outputs[0], outputs[1])


def silent_success(fooled_at: np.ndarray, scored_probs: np.ndarray, y: np.ndarray) -> dict:
    """Images some iterate of the attack fooled (``fooled_at`` >= 0, hbbench.attacks.early_stop), and
    those of them the scored adversarial example leaves correct (lost: a "silent success")."""
    found = fooled_at >= 0
    return {"silent_found": int(found.sum()), "silent_lost": int((found & (scored_probs.argmax(1) == y)).sum())}


def zero_gradient_share(attacked, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    """Share of samples whose loss gradient, as the attacker's classifier computes it (through the
    defense the threat model puts in front), is exactly zero everywhere or not finite."""
    onehot = np.eye(attacked.nb_classes, dtype=np.float32)[y]  # ART's PyTorch loss_gradient wants one-hot
    masked = []
    for start in range(0, len(x), batch_size):
        g = attacked.loss_gradient(x[start:start + batch_size], onehot[start:start + batch_size])
        flat = np.asarray(g, np.float64).reshape(len(g), -1)
        masked.append(~np.isfinite(flat).all(1) | (np.abs(flat).max(1) == 0))
    return float(np.concatenate(masked).mean())
