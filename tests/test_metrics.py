"""Metrics on hand-computed cases."""
import math

import numpy as np
import pytest

from hbbench.metrics import (attack_success_rate, bootstrap_ci, perturbation_norms, ranking_ndcg, reciprocal_rank,
                             topk_accuracy, true_prob, true_rank)

CLEAN = np.array([[0.5, 0.3, 0.15, 0.05]])  # tau=0.9 -> relevant list: classes 0, 1, 2 (mass 0.95)


def g(rel):  # gain
    return 2 ** rel - 1


IDEAL = g(0.5) / math.log2(2) + g(0.3) / math.log2(3) + g(0.15) / math.log2(4)


def test_unchanged_ranking_scores_one():
    assert ranking_ndcg(CLEAN, CLEAN)[0] == pytest.approx(1.0)
    # same order, other probabilities: only the order (and the tau-cut) matter
    assert ranking_ndcg(CLEAN, np.array([[0.4, 0.3, 0.2, 0.1]]))[0] == pytest.approx(1.0)


def test_relevant_classes_gone_scores_zero():
    # the evaluated list is class 3 alone (0.98 >= tau), which is outside the relevant list
    assert ranking_ndcg(CLEAN, np.array([[0.0, 0.0, 0.02, 0.98]]))[0] == 0.0


def test_partial_case_by_hand():
    # evaluated order 3, 2, 1, 0 (cut after three: 0.5 + 0.3 + 0.15 >= 0.9) -> relevances 0, 0.15, 0.3
    dcg = g(0.0) / math.log2(2) + g(0.15) / math.log2(3) + g(0.3) / math.log2(4)
    got = ranking_ndcg(CLEAN, np.array([[0.05, 0.15, 0.3, 0.5]]))[0]
    assert got == pytest.approx(dcg / IDEAL) and got == pytest.approx(0.30041, abs=1e-5)


def test_swap_of_top_two():
    dcg = g(0.3) / math.log2(2) + g(0.5) / math.log2(3) + g(0.15) / math.log2(4)
    got = ranking_ndcg(CLEAN, np.array([[0.3, 0.5, 0.15, 0.05]]))[0]
    assert got == pytest.approx(dcg / IDEAL)


def test_true_rank_mrr_and_prob():
    p = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    y = np.array([2, 0])
    assert list(true_rank(p, y)) == [2, 1]
    assert list(reciprocal_rank(p, y)) == [0.5, 1.0]
    assert list(true_prob(p, y)) == [0.3, 0.5]


def test_topk_and_attack_success():
    p = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5]])
    y = np.array([2, 0, 0])
    assert topk_accuracy(p, y, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(p, y, 2) == pytest.approx(2 / 3)
    clean_pred, adv_pred, labels = np.array([1, 0, 2]), np.array([2, 0, 0]), np.array([1, 0, 0])
    assert attack_success_rate(clean_pred, adv_pred, labels) == pytest.approx(0.5)  # 2 right when clean, 1 fooled
    assert math.isnan(attack_success_rate(np.array([1]), np.array([1]), np.array([0])))


def test_norms():
    x = np.zeros((2, 1, 2, 2))
    x_adv = x.copy()
    x_adv[0, 0, 0, 0], x_adv[0, 0, 1, 1] = 0.3, -0.4
    n = perturbation_norms(x, x_adv)
    assert n["l0"][0] == 0.5 and n["l2"][0] == pytest.approx(0.5) and n["linf"][0] == pytest.approx(0.4)
    assert n["l0"][1] == n["l2"][1] == n["linf"][1] == 0


def test_bootstrap_ci_is_deterministic_and_covers_the_mean():
    v = np.r_[np.ones(30), np.zeros(70), [np.nan]]
    lo, hi = bootstrap_ci(v, seed=1)
    assert lo < 0.3 < hi and (lo, hi) == bootstrap_ci(v, seed=1)


def test_ndcg_refuses_logits():
    logits = np.array([[2.0, -1.0, 0.5, 0.1]])
    with pytest.raises(ValueError, match="softmax"):
        ranking_ndcg(CLEAN, logits)
    with pytest.raises(ValueError, match="clean_probs"):
        ranking_ndcg(np.array([[3.0, 1.0, 0.0, 0.0]]), CLEAN)
