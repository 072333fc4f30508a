"""The paper's descriptive ranking measure (an NDCG over the output's class ranking) and the
true-label rank measures. Definitions with a worked example: docs/metrics.md."""
from __future__ import annotations

import numpy as np


def _order(p: np.ndarray) -> np.ndarray:
    """Classes by descending probability, ties broken by class index."""
    return np.argsort(-p, axis=1, kind="stable")


def _mass_cut(sorted_p: np.ndarray, tau: float) -> np.ndarray:
    """Per row, the length of the shortest prefix whose mass reaches tau of the row's total mass."""
    cum = np.cumsum(sorted_p, axis=1)
    need = tau * cum[:, -1:] - 1e-12
    return np.minimum((cum < need).sum(axis=1) + 1, sorted_p.shape[1])


def ranking_ndcg(clean_probs: np.ndarray, eval_probs: np.ndarray, tau: float = 0.9) -> np.ndarray:
    """Per-sample NDCG of ``eval_probs``' class ranking against the clean output, in [0, 1].

    Relevance of a class = its clean probability if it is in the relevant list (the fewest top
    clean classes whose mass reaches tau), else 0. The evaluated list = the fewest top classes of the
    evaluated output reaching tau of its own mass. Gain 2^rel - 1, discount log2(position + 1),
    positions from 1; NDCG = DCG(evaluated list) / DCG(relevant list in clean order).
    """
    clean = np.asarray(clean_probs, np.float64)
    other = np.asarray(eval_probs, np.float64)
    if clean.shape != other.shape or clean.ndim != 2:
        raise ValueError(f"probabilities must be two (N, C) arrays of one shape, got {clean.shape} and {other.shape}")
    if not 0 < tau <= 1:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    for name, arr in (("clean_probs", clean), ("eval_probs", other)):
        # relevance IS the clean probability: logits here would silently give wrong scores
        if arr.size and (arr.min() < 0 or np.abs(arr.sum(axis=1) - 1).max() > 1e-3):
            raise ValueError(f"{name} must be probabilities (non-negative rows summing to 1); "
                             "apply softmax to logits first")
    n, c = clean.shape
    rows = np.arange(n)[:, None]
    positions = np.arange(c)[None, :]
    discount = 1.0 / np.log2(np.arange(2, c + 2))[None, :]

    clean_order = _order(clean)
    clean_sorted = clean[rows, clean_order]
    relevant_len = _mass_cut(clean_sorted, tau)
    relevance = np.zeros_like(clean)
    keep = positions < relevant_len[:, None]
    relevance[rows, clean_order] = np.where(keep, clean_sorted, 0.0)

    gain = np.exp2(relevance) - 1.0
    ideal = (gain[rows, clean_order] * discount * keep).sum(axis=1)

    eval_order = _order(other)
    eval_len = _mass_cut(other[rows, eval_order], tau)
    dcg = (gain[rows, eval_order] * discount * (positions < eval_len[:, None])).sum(axis=1)
    return np.clip(np.divide(dcg, ideal, out=np.zeros(n), where=ideal > 0), 0.0, 1.0)


def true_rank(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1-based rank of the true class: 1 + the number of classes with strictly greater probability."""
    p = np.asarray(probs)
    labels = np.asarray(labels)
    true = p[np.arange(len(p)), labels]
    return 1 + (p > true[:, None]).sum(axis=1)


def reciprocal_rank(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1 / true_rank: 1 when the true class is on top, 1/2 when second, ... (mean = MRR)."""
    return 1.0 / true_rank(probs, labels)


def true_prob(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The probability given to the true class."""
    p = np.asarray(probs)
    return p[np.arange(len(p)), np.asarray(labels)]
