"""Named presets of ART's evasion attacks with documented defaults.

Parameters use ART's own names (eps, eps_step, max_iter, ...). Each preset declares at registration
its ``norm`` (``inf`` or ``2``; a preset with a ``norm`` parameter declares its default), whether
it takes a ``budget`` (is swept over ``--eps``; cw, cw_art, cw_linf, deepfool and hopskipjump find
their own perturbation size and run once) and whether it follows the model's ``gradient`` (square
and hopskipjump only query outputs); the evaluation checks read these. ``eps_step=None`` means eps/4.
"""
from __future__ import annotations

import numpy as np
import torch
from art.attacks import evasion as E

from hbbench.attacks.autoattack_torch import AutoAttackTorch
from hbbench.attacks.cw_torch import CarliniWagnerL2Torch
from hbbench.attacks.early_stop import EarlyStopPGD
from hbbench.attacks.registry import ATTACKS
from hbbench.classifier import with_loss
from hbbench.errors import HBBenchError




def canonical_norm(norm) -> str:
    """'inf' or '2' for the spellings users type (inf, linf, np.inf, 2, l2)."""
    text = str(norm).lower()
    if text in ("inf", "linf", "np.inf"):
        return "inf"
    if text in ("2", "l2"):
        return "2"
    raise HBBenchError(f"norm must be inf or 2, got '{norm}'")


def _norm(norm) -> float:
    return np.inf if canonical_norm(norm) == "inf" else 2


def _step(eps: float, eps_step: float | None) -> float:
    if eps <= 0:
        raise HBBenchError(f"eps must be > 0, got {eps}")
    return eps / 4 if eps_step is None else float(eps_step)


@ATTACKS.register("fgsm", "FastGradientMethod: one signed-gradient step of size eps",
                  norm="inf", budget=True, gradient=True)
def fgsm(classifier, eps: float = 4 / 255, norm: str = "inf", batch_size: int = 32):
    return E.FastGradientMethod(classifier, norm=_norm(norm), eps=eps, eps_step=_step(eps, eps),
                                batch_size=batch_size)


def _on_when_undefended(classifier, name: str, value) -> bool:
    """``auto``: on for a classifier that carries no preprocessing defense (the undefended model, scored
    on itself). The sweep sets both flags itself (hbbench.runner.craft): best iterate wherever the run
    is scored on the model it attacks, early stop only where the preset asks for it."""
    if value == "auto":
        return not getattr(classifier, "preprocessing_defences", None)
    if not isinstance(value, bool):
        raise HBBenchError(f"{name} must be true, false or auto, got {value!r}")
    return value


def _pgd(classifier, early_stop, best_iterate, **params):
    """ART's PGD; on tensors (ART's PyTorch PGD, hbbench's best-iterate subclass of it) when every
    preprocessing step of the classifier is PyTorch, else ART's NumPy PGD (neither flag)."""
    if getattr(classifier, "all_framework_preprocessing", False):
        return EarlyStopPGD(classifier, early_stop=_on_when_undefended(classifier, "early_stop", early_stop),
                            best_iterate=_on_when_undefended(classifier, "best_iterate", best_iterate),
                            verbose=False, **params)
    return E.ProjectedGradientDescent(classifier, verbose=False, **params)


@ATTACKS.register("pgd", "ProjectedGradientDescent (Madry et al.): max_iter steps of eps/4 from a random start; "
                  "best_iterate: an image any iterate fooled keeps a fooling iterate; early_stop: it also "
                  "leaves the batch at the first (faster; NDCG/MRR then those of a minimal example). Through "
                  "the API auto is on for an undefended classifier; the sweep keeps the best iterate where "
                  "the run is scored on the model it attacks, and stops early only with early_stop=true",
                  norm="inf", budget=True, gradient=True)
def pgd(classifier, eps: float = 4 / 255, eps_step: float | None = None, max_iter: int = 10,
        num_random_init: int = 1, norm: str = "inf", batch_size: int = 32, early_stop: bool | str = "auto",
        best_iterate: bool | str = "auto"):
    return _pgd(classifier, early_stop, best_iterate, norm=_norm(norm), eps=eps, eps_step=_step(eps, eps_step),
                max_iter=max_iter, num_random_init=num_random_init, batch_size=batch_size)


@ATTACKS.register("bim", "BasicIterativeMethod (Kurakin et al.): PGD without random start, Linf; early_stop and "
                  "best_iterate as pgd", norm="inf", budget=True, gradient=True)
def bim(classifier, eps: float = 4 / 255, eps_step: float | None = None, max_iter: int = 10, batch_size: int = 32,
        early_stop: bool | str = "auto", best_iterate: bool | str = "auto"):
    return _pgd(classifier, early_stop, best_iterate, norm=np.inf, eps=eps, eps_step=_step(eps, eps_step), max_iter=max_iter,
                num_random_init=0, batch_size=batch_size)


@ATTACKS.register("cw", "Carlini-Wagner L2 in PyTorch (Adam in tanh space, per-sample binary search on c): "
                  "4 x 10 Adam steps of lr 0.001, one forward+backward each; checked against ART's CarliniL2Method",
                  norm="2", budget=False, gradient=True)
def cw(classifier, confidence: float = 0.0, learning_rate: float = 0.001, binary_search_steps: int = 4,
       max_iter: int = 10, initial_const: float = 1.0, batch_size: int = 32):
    return CarliniWagnerL2Torch(classifier, confidence=confidence, learning_rate=learning_rate,
                                binary_search_steps=binary_search_steps, max_iter=max_iter,
                                initial_const=initial_const, batch_size=batch_size)


@ATTACKS.register("cw_art", "ART's CarliniL2Method, the reference implementation: NumPy, two class-gradient "
                  "passes and a line search per step (about 18x a PGD-10 cell on CPU)",
                  norm="2", budget=False, gradient=True)
def cw_art(classifier, confidence: float = 0.0, learning_rate: float = 0.01, binary_search_steps: int = 1,
           max_iter: int = 10, initial_const: float = 1.0, max_halving: int = 2, max_doubling: int = 2,
           batch_size: int = 32):
    return E.CarliniL2Method(classifier, confidence=confidence, learning_rate=learning_rate,
                             binary_search_steps=binary_search_steps, max_iter=max_iter,
                             initial_const=initial_const, max_halving=max_halving, max_doubling=max_doubling,
                             batch_size=batch_size, verbose=False)


@ATTACKS.register("cw_linf", "CarliniLInfMethod: Carlini-Wagner under an Linf bound",
                  norm="inf", budget=False, gradient=True)
def cw_linf(classifier, confidence: float = 0.0, learning_rate: float = 0.01, max_iter: int = 10,
            initial_const: float = 1e-5, largest_const: float = 20.0, batch_size: int = 32):
    # ART doubles the constant from initial_const to largest_const for every bound it tries: 21 doublings
    # by default, the attack's main cost; a caller who knows the scale of its loss starts higher.
    return E.CarliniLInfMethod(classifier, confidence=confidence, learning_rate=learning_rate, max_iter=max_iter,
                               initial_const=initial_const, largest_const=largest_const, batch_size=batch_size,
                               verbose=False)


@ATTACKS.register("deepfool", "DeepFool: minimal L2 step across the nearest linearised boundary",
                  norm="2", budget=False, gradient=True)
def deepfool(classifier, max_iter: int = 20, epsilon: float = 0.02, nb_grads: int = 10, batch_size: int = 32):
    return E.DeepFool(classifier, max_iter=max_iter, epsilon=epsilon, nb_grads=nb_grads,
                      batch_size=batch_size, verbose=False)


@ATTACKS.register("apgd", "AutoProjectedGradientDescent (Croce & Hein): step-size-free PGD, CE loss",
                  norm="inf", budget=True, gradient=True)
def apgd(classifier, eps: float = 4 / 255, eps_step: float | None = None, max_iter: int = 20,
         nb_random_init: int = 1, norm: str = "inf", batch_size: int = 32):
    return E.AutoProjectedGradientDescent(classifier, norm=_norm(norm), eps=eps, eps_step=_step(eps, eps_step),
                                          max_iter=max_iter, nb_random_init=nb_random_init,
                                          batch_size=batch_size, loss_type="cross_entropy", verbose=False)


@ATTACKS.register("autoattack", "AutoAttack (Croce & Hein 2020) as its authors and RobustBench run it. version=standard: "
                  "APGD-CE, APGD-T (9 target classes), FAB-T (9 targets), Square (5,000 queries), each on the images "
                  "the earlier ones left robust; version=rand (randomized defenses): APGD-CE and APGD-DLR with EoT 20. "
                  "n_iter, n_target_classes, n_queries: the authors' 100, 9, 5000 (smaller for tests); slow",
                  norm="inf", budget=True, gradient=True)
def autoattack(classifier, eps: float = 4 / 255, norm: str = "inf", version: str = "standard", n_iter: int = 100,
               n_target_classes: int = 9, n_queries: int = 5000, eot_iter: int | None = None, batch_size: int = 32):
    if eps <= 0:
        raise HBBenchError(f"eps must be > 0, got {eps}")
    if version not in ("standard", "rand"):
        raise HBBenchError(f"autoattack's version must be standard or rand, got '{version}'")
    return AutoAttackTorch(classifier, eps=eps, norm=canonical_norm(norm), version=version, n_iter=n_iter,
                           n_target_classes=n_target_classes, n_queries=n_queries, eot_iter=eot_iter,
                           batch_size=batch_size)


@ATTACKS.register("autoattack_art", "ART's AutoAttack with ART's default ensemble (APGD-CE and APGD-DLR with 5 "
                  "restarts, DeepFool, Square with 5 restarts): not the authors' standard version, its figures are "
                  "not comparable to the leaderboards (use autoattack); max_iter, square_max_iter: ART's 100, 5000",
                  norm="inf", budget=True, gradient=True)
def autoattack_art(classifier, eps: float = 4 / 255, eps_step: float | None = None, norm: str = "inf",
                   max_iter: int = 100, nb_random_init: int = 5, square_max_iter: int = 5000, batch_size: int = 32):
    n, step = _norm(norm), _step(eps, eps_step)
    ensemble = [  # ART's default list (art.attacks.evasion.AutoAttack, 1.20), with its budgets as parameters
        E.AutoProjectedGradientDescent(classifier, norm=n, eps=eps, eps_step=step, max_iter=max_iter, targeted=False,
                                       nb_random_init=nb_random_init, batch_size=batch_size,
                                       loss_type="cross_entropy", verbose=False),
        E.AutoProjectedGradientDescent(classifier, norm=n, eps=eps, eps_step=step, max_iter=max_iter, targeted=False,
                                       nb_random_init=nb_random_init, batch_size=batch_size,
                                       loss_type="difference_logits_ratio", verbose=False),
        E.DeepFool(classifier, max_iter=max_iter, epsilon=1e-3, nb_grads=10, batch_size=batch_size, verbose=False),
        E.SquareAttack(classifier, norm=n, max_iter=square_max_iter, eps=eps, p_init=0.8, nb_restarts=nb_random_init,
                       batch_size=batch_size, verbose=False),
    ]
    return E.AutoAttack(classifier, norm=n, eps=eps, eps_step=step, attacks=ensemble, batch_size=batch_size)


@ATTACKS.register("square", "SquareAttack: score-based black-box random search (no gradients)",
                  norm="inf", budget=True, gradient=False)
def square(classifier, eps: float = 4 / 255, max_iter: int = 100, p_init: float = 0.8, nb_restarts: int = 1,
           norm: str = "inf", batch_size: int = 32):
    if eps <= 0:
        raise HBBenchError(f"eps must be > 0, got {eps}")
    return E.SquareAttack(classifier, norm=_norm(norm), eps=eps, max_iter=max_iter, p_init=p_init,
                          nb_restarts=nb_restarts, batch_size=batch_size, verbose=False)


@ATTACKS.register("hopskipjump", "HopSkipJump: decision-based black-box attack (labels only), L2",
                  norm="2", budget=False, gradient=False)
def hopskipjump(classifier, max_iter: int = 10, max_eval: int = 1000, init_eval: int = 50, init_size: int = 50,
                norm: str = "2", batch_size: int = 32):
    return E.HopSkipJump(classifier, batch_size=batch_size, norm=_norm(norm), max_iter=max_iter,
                         max_eval=max_eval, init_eval=init_eval, init_size=init_size, verbose=False)


# Remedy attacks (docs/evaluation.md, "Remedies"): losses that do not go through the softmax, for a
# model or defense whose cross-entropy gradient is masked (saturated softmax: exactly 0 in float32).

@ATTACKS.register("apgd_dlr", "AutoProjectedGradientDescent with the DLR loss (Croce & Hein 2020): a ratio "
                  "of logit differences, invariant to the logits' scale, so a saturated softmax cannot mask it",
                  norm="inf", budget=True, gradient=True, loss="logits")
def apgd_dlr(classifier, eps: float = 4 / 255, eps_step: float | None = None, max_iter: int = 20,
             nb_random_init: int = 1, norm: str = "inf", batch_size: int = 32):
    return E.AutoProjectedGradientDescent(classifier, norm=_norm(norm), eps=eps, eps_step=_step(eps, eps_step),
                                          max_iter=max_iter, nb_random_init=nb_random_init, batch_size=batch_size,
                                          loss_type="difference_logits_ratio", verbose=False)


@ATTACKS.register("pgd_margin", "ProjectedGradientDescent on the C&W margin loss (max other logit - true "
                  "logit, Carlini & Wagner 2017) instead of cross-entropy: no softmax to saturate",
                  norm="inf", budget=True, gradient=True, loss="logits")
def pgd_margin(classifier, eps: float = 4 / 255, eps_step: float | None = None, max_iter: int = 10,
               num_random_init: int = 1, norm: str = "inf", batch_size: int = 32):
    return pgd(with_loss(classifier, MarginLoss()), eps=eps, eps_step=eps_step, max_iter=max_iter,
               num_random_init=num_random_init, norm=norm, batch_size=batch_size)


class MarginLoss(torch.nn.Module):
    """The untargeted C&W margin on logits, summed over the batch: max_{j != y} z_j - z_y (labels one-hot).
    PGD ascends it; its gradient is a difference of two logits' gradients whatever their scale."""

    def forward(self, logits, onehot):
        onehot = onehot.to(logits.dtype)
        true = (logits * onehot).sum(1)
        other = logits.masked_fill(onehot.bool(), float("-inf")).max(1).values
        return (other - true).sum()
