"""Perturbation sizes per sample."""
from __future__ import annotations

import numpy as np


def perturbation_norms(x: np.ndarray, x_adv: np.ndarray) -> dict[str, np.ndarray]:
    """'l0' (fraction of input values changed), 'l2' and 'linf' of x_adv - x, per sample."""
    d = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
    return {"l0": (np.abs(d) > 1e-8).mean(axis=1), "l2": np.linalg.norm(d, axis=1), "linf": np.abs(d).max(axis=1)}
