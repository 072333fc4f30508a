"""Carlini & Wagner's L2 attack in PyTorch, as an ART ``EvasionAttack``.

ART's ``CarliniL2Method`` (1.20.1) is a NumPy implementation: each iteration takes two
``class_gradient`` backward passes (target and runner-up logit) and then a line search of up to
``max_halving + max_doubling`` extra forward passes. On 224px ImageNet models on CPU that makes one
preset cell cost ~18x an ART PGD-10 cell. This version follows the original paper and reference code
(https://github.com/carlini/nn_robust_attacks, ``l2_attack.py``) instead:

- the variable is ``w`` in tanh space, ``x_adv = clip_min + (tanh(w) + 1) / 2 * (clip_max - clip_min)``,
  so the output always lies in the classifier's clip range;
- Adam on ``w`` (reset at every binary-search step, restarting from the clean image);
- loss ``||x_adv - x||_2^2 + c * max(Z_y - max_{j!=y} Z_j, -kappa)`` (untargeted; targeted swaps the
  two logit terms), summed over the batch so every sample has its own independent objective;
- per-sample binary search over ``c``: on success ``c`` moves halfway towards the lower bound, on
  failure it grows x10 until an upper bound is known, then bisects;
- the best (smallest-L2) successful iterate per sample is kept; samples never fooled are returned unchanged.

One forward and one backward pass per iteration: the logits of that forward pass, detached, also decide
which iterates succeed. Logits are computed exactly as ART's ``PyTorchClassifier.loss_gradient`` does
(``_apply_preprocessing(..., no_grad=False)`` then ``_model(x)[-1]``), so PyTorch preprocessing defences
and ART's normalisation sit in the graph. The classifier must therefore have only framework (PyTorch)
preprocessing; NumPy-only defences raise an error (wrap them in ``StraightThrough`` for BPDA).
"""
from __future__ import annotations

import numpy as np
import torch
from art.attacks.attack import EvasionAttack
from art.config import ART_NUMPY_DTYPE
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.estimator import BaseEstimator, LossGradientsMixin
from art.utils import check_and_transform_label_format

from hbbench.classifier import require_pytorch_path

_C_UPPER = 1e10  # the reference code's bound on c; above it a sample is given up


class CarliniWagnerL2Torch(EvasionAttack):
    """C&W L2 (Carlini & Wagner 2017, https://arxiv.org/abs/1608.04644) with Adam, in PyTorch."""

    attack_params = EvasionAttack.attack_params + [
        "confidence",
        "targeted",
        "learning_rate",
        "binary_search_steps",
        "max_iter",
        "initial_const",
        "batch_size",
        "verbose",
    ]
    _estimator_requirements = (BaseEstimator, LossGradientsMixin, ClassifierMixin)

    def __init__(self, classifier, confidence: float = 0.0, targeted: bool = False, learning_rate: float = 0.01,
                 binary_search_steps: int = 4, max_iter: int = 10, initial_const: float = 1.0,
                 batch_size: int = 32, verbose: bool = False) -> None:
        """
        :param classifier: an ART ``PyTorchClassifier`` whose preprocessing is all PyTorch.
        :param confidence: kappa, the logit margin an adversarial example must reach.
        :param targeted: whether ``y`` holds target classes (then ``y`` is required).
        :param learning_rate: Adam's step size in tanh space.
        :param binary_search_steps: how many values of ``c`` to try per sample.
        :param max_iter: Adam steps per binary-search step (one forward + backward each).
        :param initial_const: the first ``c``.
        :param batch_size: samples optimised together.
        :param verbose: print one line per binary-search step.
        """
        super().__init__(estimator=classifier)
        self.confidence = confidence
        self._targeted = targeted
        self.learning_rate = learning_rate
        self.binary_search_steps = binary_search_steps
        self.max_iter = max_iter
        self.initial_const = initial_const
        self.batch_size = batch_size
        self.verbose = verbose
        self._check_params()

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        super()._check_params()
        require_pytorch_path("CarliniWagnerL2Torch", self.estimator)
        for name in ("binary_search_steps", "max_iter", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not self.initial_const > 0:
            raise ValueError(f"initial_const must be > 0, got {self.initial_const}")
        if not self.confidence >= 0:
            raise ValueError(f"confidence must be >= 0, got {self.confidence}")
        if not isinstance(self._targeted, bool):
            raise ValueError("targeted must be a bool")

    # ------------------------------------------------------------------ model
    def _logits(self, x_t: torch.Tensor) -> torch.Tensor:
        """Logits with gradients, exactly as ART's ``PyTorchClassifier.loss_gradient`` computes them;
        averaged over the classifier's ``eot_draws`` passes through a randomized defense (EoT)."""
        clf = self.estimator
        draws = int(getattr(clf, "eot_draws", 1))
        total = 0
        for _ in range(draws):
            x_pre, _ = clf._apply_preprocessing(x_t, y=None, fit=False, no_grad=False)
            total = total + clf._model(x_pre)[-1]
        return total / draws

    def _margin(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Z_y - max_{j!=y} Z_j (untargeted) or max_{j!=y} Z_j - Z_y (targeted): <= -kappa means success."""
        z_y = z.gather(1, y[:, None])[:, 0]
        z_other = z.masked_fill(torch.nn.functional.one_hot(y, z.shape[1]).bool(), float("-inf")).amax(1)
        return z_other - z_y if self.targeted else z_y - z_other

    # ------------------------------------------------------------------ attack
    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
        """Adversarial examples for ``x``; ``y`` are the true labels (untargeted; default: the classifier's
        predictions) or the targets (targeted), as indices or one-hot. Returns float32, shaped like ``x``."""
        clf = self.estimator
        x = np.asarray(x)
        if x.ndim < 2 or tuple(x.shape[1:]) != tuple(clf.input_shape):
            raise ValueError(f"x must have shape (N, {', '.join(map(str, clf.input_shape))}), got {x.shape}")
        if len(x) == 0:
            raise ValueError("x is empty")
        if self.targeted and y is None:
            raise ValueError("Target labels `y` need to be provided for a targeted attack.")
        if y is None:
            y_idx = np.argmax(clf.predict(x, batch_size=self.batch_size), axis=1)
        else:
            y_idx = check_and_transform_label_format(np.asarray(y), nb_classes=clf.nb_classes, return_one_hot=False)
            y_idx = np.asarray(y_idx).reshape(-1)
            if len(y_idx) != len(x):
                raise ValueError(f"y has {len(y_idx)} labels for {len(x)} samples")
        y_idx = y_idx.astype(np.int64)

        x = x.astype(ART_NUMPY_DTYPE)
        if clf.clip_values is not None:
            lo, hi = (np.asarray(v, ART_NUMPY_DTYPE) for v in clf.clip_values)
        else:
            lo, hi = np.asarray(x.min(), ART_NUMPY_DTYPE), np.asarray(x.max(), ART_NUMPY_DTYPE)
        x_adv = x.copy()
        clf._model.train(mode=False)  # as loss_gradient(training_mode=False) does
        for start in range(0, len(x), self.batch_size):
            sl = slice(start, start + self.batch_size)
            x_adv[sl] = self._generate_batch(x[sl], y_idx[sl], lo, hi)
        return x_adv

    def _generate_batch(self, x_np: np.ndarray, y_np: np.ndarray, lo_np, hi_np) -> np.ndarray:
        dev = self.estimator._device
        n = len(x_np)
        x = torch.from_numpy(x_np).to(dev)
        y = torch.from_numpy(y_np).to(dev)
        lo = torch.as_tensor(lo_np, device=dev)
        hi = torch.as_tensor(hi_np, device=dev)
        span = hi - lo
        smoother = 0.999999  # keeps arctanh finite at the clip bounds (as ART and the reference code)
        w0 = torch.atanh(((x.clamp(lo, hi) - lo) / span * 2 - 1) * smoother)
        reduce_dims = tuple(range(1, x.ndim))

        const = torch.full((n,), float(self.initial_const), dtype=x.dtype, device=dev)
        lower = torch.zeros(n, dtype=x.dtype, device=dev)
        upper = torch.full((n,), _C_UPPER, dtype=x.dtype, device=dev)
        best_l2sq = torch.full((n,), float("inf"), dtype=x.dtype, device=dev)
        best_adv = x.clone()

        for step in range(self.binary_search_steps):
            active = const < _C_UPPER
            if not bool(active.any()):
                break
            delta = torch.zeros_like(w0, requires_grad=True)
            opt = torch.optim.Adam([delta], lr=self.learning_rate)
            found = torch.zeros(n, dtype=torch.bool, device=dev)
            for it in range(self.max_iter + 1):
                last = it == self.max_iter  # the last pass only scores the final iterate (forward only)
                with torch.set_grad_enabled(not last):
                    x_new = lo + (torch.tanh(w0 + delta) + 1) / 2 * span
                    z = self._logits(x_new)
                    margin = self._margin(z, y)
                    l2sq = (x_new - x).pow(2).sum(reduce_dims)
                with torch.no_grad():  # bookkeeping from the same logits
                    ok = (margin.detach() < -self.confidence) & active
                    better = ok & (l2sq.detach() < best_l2sq)
                    best_l2sq = torch.where(better, l2sq.detach(), best_l2sq)
                    best_adv[better] = x_new.detach()[better]
                    found |= ok
                if last:
                    break
                loss = (l2sq + const * margin.clamp_min(-self.confidence))[active].sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            with torch.no_grad():  # the reference code's per-sample binary search
                upper = torch.where(found, torch.minimum(upper, const), upper)
                lower = torch.where(found, lower, torch.maximum(lower, const))
                bisect = upper < 1e9
                const = torch.where(bisect, (lower + upper) / 2, const * 10)
            if self.verbose:
                print(f"C&W-L2 torch: binary step {step + 1}/{self.binary_search_steps}: "
                      f"{int(found.sum())}/{n} fooled, best-so-far {int(torch.isfinite(best_l2sq).sum())}/{n}")
        return best_adv.cpu().numpy()
