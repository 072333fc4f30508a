"""Top-k accuracy and attack success."""
from __future__ import annotations

import numpy as np


def topk_correct(probs: np.ndarray, labels: np.ndarray, k: int = 1) -> np.ndarray:
    """Per sample: is the true class among the k most probable (ties broken by class index)?"""
    top = np.argsort(-np.asarray(probs), axis=1, kind="stable")[:, :k]
    return (top == np.asarray(labels)[:, None]).any(axis=1)


def topk_accuracy(probs: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    return float(topk_correct(probs, labels, k).mean())


def attack_success(clean_pred: np.ndarray, adv_pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per sample: right on the clean input and wrong on the adversarial one."""
    labels = np.asarray(labels)
    return (np.asarray(clean_pred) == labels) & (np.asarray(adv_pred) != labels)


def attack_success_rate(clean_pred: np.ndarray, adv_pred: np.ndarray, labels: np.ndarray) -> float:
    """Successes over the samples classified correctly when clean (NaN when there are none)."""
    correct = np.asarray(clean_pred) == np.asarray(labels)
    if not correct.any():
        return float("nan")
    return float(attack_success(clean_pred, adv_pred, labels).sum() / correct.sum())
