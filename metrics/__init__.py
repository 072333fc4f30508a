"""Metrics: top-k accuracy, attack success, the paper's ranking NDCG, true-label rank measures,
perturbation norms and bootstrap intervals. Definitions: docs/metrics.md."""
from hbbench.metrics.accuracy import attack_success, attack_success_rate, topk_accuracy, topk_correct
from hbbench.metrics.intervals import bootstrap_ci
from hbbench.metrics.norms import perturbation_norms
from hbbench.metrics.ranking import ranking_ndcg, reciprocal_rank, true_prob, true_rank

__all__ = ["attack_success", "attack_success_rate", "bootstrap_ci", "perturbation_norms", "ranking_ndcg",
           "reciprocal_rank", "topk_accuracy", "topk_correct", "true_prob", "true_rank"]
