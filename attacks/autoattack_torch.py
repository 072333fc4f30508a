"""AutoAttack (Croce & Hein 2020, https://arxiv.org/abs/2003.01690) as its authors run it, as an ART
``EvasionAttack``: the *standard* version (APGD-CE, then APGD-T on the 9 most likely other classes,
then FAB-T on 9 targets, then Square with 5,000 queries; each attack runs only on the images every
earlier one left robust) and the *rand* version for randomized defenses (APGD-CE and APGD-DLR, each
gradient the mean of 20 passes: EoT). These are the settings of ``AutoAttack._set_version`` in the
authors' code (https://github.com/fra31/auto-attack, on the package index as ``pyautoattack``) for
L-inf and L2, and what the RobustBench leaderboards report.

What is written here, and why:

- **FAB-T** (Croce & Hein 2019, https://arxiv.org/abs/1907.02044) is here because ART has no FAB, and
  ``pyautoattack`` may not be a runtime dependency of hbbench (it is in the ``bench`` extra only, for
  ``bench/bench_autoattack.py``, which compares the two). The algorithm, its constants (alpha_max 0.1,
  eta 1.05, beta 0.9) and the L-inf / L2 projections onto a hyperplane within the box follow the
  authors' ``fab_base.py`` and ``fab_projections.py`` (MIT licence, (c) Francesco Croce).
- **APGD** is here too, not ART's ``AutoProjectedGradientDescent``, because ART's does not match the
  authors' in ways that change the figure: its targeted DLR is the untargeted ratio descended toward the
  target (not the targeted DLR, z_y - z_t over z_pi1 - (z_pi3 + z_pi4) / 2); it returns each image's last
  iterate, not an iterate that fooled it; its first step is ``eps_step``, not 2 eps; its step-size
  checkpoints and its oscillation test differ; and every step costs two forward passes and a backward
  one through NumPy. This version follows the authors' ``autopgd_base.py`` (CE, DLR and targeted DLR;
  momentum 0.75; checkpoints at 22 % of the iterations, shrinking by 3 % to at least 6 %; rho 0.75).
- **Square** is ART's ``SquareAttack`` (margin loss on logits, p_init 0.8, one restart), which follows
  the same paper's algorithm; its query budget is ``n_queries``.

Logits are computed as ART's ``PyTorchClassifier.loss_gradient`` computes them (the classifier's PyTorch
preprocessing and normalisation in the graph), so the classifier's preprocessing must be all PyTorch
(NumPy-only defenses: wrap them straight-through, BPDA). A classifier with ``eot_draws`` > 1
(hbbench's EoT) averages that many gradients per step unless ``eot_iter`` is given.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from art.attacks.attack import EvasionAttack
from art.attacks.evasion import SquareAttack
from art.config import ART_NUMPY_DTYPE
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.estimator import BaseEstimator, LossGradientsMixin
from art.utils import check_and_transform_label_format

from hbbench.classifier import require_pytorch_path

VERSIONS = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"), "rand": ("apgd-ce", "apgd-dlr")}


# ------------------------------------------------------------------ losses (the authors' definitions)
def _dlr(z: torch.Tensor, y: torch.Tensor, target=None) -> torch.Tensor:
    z_sorted, ind = z.sort(dim=1)
    u = torch.arange(len(z), device=z.device)
    if target is None:
        top_is_y = (ind[:, -1] == y).to(z.dtype)
        other = z_sorted[:, -2] * top_is_y + z_sorted[:, -1] * (1 - top_is_y)
        return -(z[u, y] - other) / (z_sorted[:, -1] - z_sorted[:, -3] + 1e-12)
    return -(z[u, y] - z[u, target]) / (z_sorted[:, -1] - 0.5 * (z_sorted[:, -3] + z_sorted[:, -4]) + 1e-12)


def _ce(z, y, target=None):
    return torch.nn.functional.cross_entropy(z, y, reduction="none")


def _norms(d: torch.Tensor, norm: str) -> torch.Tensor:
    flat = d.reshape(len(d), -1)
    return flat.abs().amax(1) if norm == "inf" else flat.pow(2).sum(1).sqrt()


def _view(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (like.ndim - 1)))


def _normalize(d: torch.Tensor, norm: str) -> torch.Tensor:
    return d / (_view(_norms(d, norm), d) + 1e-12)


# ------------------------------------------------------------------ FAB's projections (authors' fab_projections.py)
def _projection_linf(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The smallest L-inf step d with <w, t + d> = b and t + d in [0, 1]^n (row by row)."""
    w, b = w.clone(), b.clone()
    sign = 2 * ((w * t).sum(1) - b >= 0) - 1
    w.mul_(sign.unsqueeze(1))
    b.mul_(sign)
    a = (w < 0).to(t.dtype)
    d = (a - t) * (w != 0).to(t.dtype)
    p = a - t * (2 * a - 1)
    indp = torch.argsort(p, dim=1)
    b = b - (w * t).sum(1)
    b0 = (w * d).sum(1)
    indp2 = indp.flip((1,))
    ws = w.gather(1, indp2)
    bs2 = -ws * d.gather(1, indp2)
    s = torch.cumsum(ws.abs(), dim=1)
    sb = torch.cumsum(bs2, dim=1) + b0.unsqueeze(1)
    b2 = sb[:, -1] - s[:, -1] * p.gather(1, indp[:, 0:1]).squeeze(1)
    c_l = b - b2 > 0
    c2 = (b - b0 > 0) & (~c_l)
    lb = torch.zeros(int(c2.sum()), device=t.device)
    ub = torch.full_like(lb, w.shape[1] - 1)
    indp_, sb_, s_, p_, b_ = indp[c2], sb[c2], s[c2], p[c2], b[c2]
    for _ in range(math.ceil(math.log2(w.shape[1]))):
        counter4 = torch.floor((lb + ub) / 2)
        counter2 = counter4.long().unsqueeze(1)
        indcurr = indp_.gather(1, indp_.size(1) - 1 - counter2)
        b2 = (sb_.gather(1, counter2) - s_.gather(1, counter2) * p_.gather(1, indcurr)).squeeze(1)
        c = b_ - b2 > 0
        lb = torch.where(c, counter4, lb)
        ub = torch.where(c, ub, counter4)
    lb = lb.long()
    if c_l.any():
        lmbd = torch.clamp_min((b[c_l] - sb[c_l, -1]) / (-s[c_l, -1]), min=0).unsqueeze(-1)
        d[c_l] = (2 * a[c_l] - 1) * lmbd
    lmbd = torch.clamp_min((b[c2] - sb[c2, lb]) / (-s[c2, lb]), min=0).unsqueeze(-1)
    d[c2] = torch.min(lmbd, d[c2]) * a[c2] + torch.max(-lmbd, d[c2]) * (1 - a[c2])
    return d * (w != 0).to(t.dtype)


def _projection_l2(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The smallest L2 step d with <w, t + d> = b and t + d in [0, 1]^n (row by row)."""
    w = w.clone()
    c = (w * t).sum(1) - b
    ind2 = 2 * (c >= 0) - 1
    w.mul_(ind2.unsqueeze(1))
    c.mul_(ind2)
    r = torch.max(t / w, (t - 1) / w).clamp(min=-1e12, max=1e12)
    r.masked_fill_(w.abs() < 1e-8, 1e12)
    r[r == -1e12] *= -1
    rs, indr = torch.sort(r, dim=1)
    rs2 = torch.nn.functional.pad(rs[:, 1:], (0, 1))
    rs.masked_fill_(rs == 1e12, 0)
    rs2.masked_fill_(rs2 == 1e12, 0)
    w3s = (w ** 2).gather(1, indr)
    w5 = w3s.sum(dim=1, keepdim=True)
    ws = w5 - torch.cumsum(w3s, dim=1)
    d = -(r * w)
    d.mul_((w.abs() > 1e-8).to(t.dtype))
    s = torch.cat((-w5 * rs[:, 0:1], torch.cumsum((-rs2 + rs) * ws, dim=1) - w5 * rs[:, 0:1]), 1)
    c4 = s[:, 0] + c < 0
    c3 = (d * w).sum(dim=1) + c > 0
    c2 = ~(c4 | c3)
    lb = torch.zeros(int(c2.sum()), device=t.device)
    ub = torch.full_like(lb, w.shape[1] - 1)
    s_, c_ = s[c2], c[c2]
    for _ in range(math.ceil(math.log2(w.shape[1]))):
        counter4 = torch.floor((lb + ub) / 2)
        c3 = s_.gather(1, counter4.long().unsqueeze(1)).squeeze(1) + c_ > 0
        lb = torch.where(c3, counter4, lb)
        ub = torch.where(c3, ub, counter4)
    lb = lb.long()
    if c4.any():
        alpha = c[c4] / w5[c4].squeeze(-1)
        d[c4] = -alpha.unsqueeze(-1) * w[c4]
    if c2.any():
        alpha = (s[c2, lb] + c[c2]) / ws[c2, lb] + rs[c2, lb]
        alpha[ws[c2, lb] == 0] = 0
        c5 = (alpha.unsqueeze(-1) > r[c2]).to(t.dtype)
        d[c2] = d[c2] * c5 - alpha.unsqueeze(-1) * w[c2] * (1 - c5)
    return d * (w.abs() > 1e-8).to(t.dtype)


class AutoAttackTorch(EvasionAttack):
    """AutoAttack, standard or rand version (module docstring), on an ART ``PyTorchClassifier``."""

    attack_params = EvasionAttack.attack_params + [
        "eps", "norm", "version", "n_iter", "n_target_classes", "n_queries", "eot_iter", "batch_size", "verbose",
    ]
    _estimator_requirements = (BaseEstimator, LossGradientsMixin, ClassifierMixin)

    def __init__(self, classifier, eps: float = 4 / 255, norm: str = "inf", version: str = "standard",
                 n_iter: int = 100, n_target_classes: int = 9, n_queries: int = 5000, eot_iter: int | None = None,
                 batch_size: int = 32, verbose: bool = False) -> None:
        """
        :param classifier: an ART ``PyTorchClassifier`` whose preprocessing is all PyTorch, inputs in [0, 1].
        :param eps: the budget, in ``norm``.
        :param norm: ``inf`` or ``2``.
        :param version: ``standard`` (APGD-CE, APGD-T, FAB-T, Square) or ``rand`` (APGD-CE, APGD-DLR, EoT).
        :param n_iter: iterations of each APGD run and of each FAB-T run (the authors': 100).
        :param n_target_classes: target classes of APGD-T and FAB-T (the authors': 9).
        :param n_queries: Square's queries (the authors': 5,000).
        :param eot_iter: gradients averaged per APGD step (rand: 20); None: the classifier's ``eot_draws``
            for the standard version, 20 for rand.
        :param batch_size: images attacked together.
        :param verbose: print the robust count after each attack.
        """
        super().__init__(estimator=classifier)
        self.eps = eps
        self.norm = "inf" if str(norm).lower() in ("inf", "linf", "np.inf") else str(norm)
        self.version = version
        self.n_iter = n_iter
        self.n_target_classes = n_target_classes
        self.n_queries = n_queries
        self.eot_iter = eot_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self.robust_after: dict[str, int] = {}  # robust images left after each attack, from the last generate
        self._check_params()

    def _check_params(self) -> None:
        super()._check_params()
        require_pytorch_path("AutoAttackTorch", self.estimator)
        if self.version not in VERSIONS:
            raise ValueError(f"version must be one of {sorted(VERSIONS)}, got {self.version!r}")
        if self.norm not in ("inf", "2"):
            raise ValueError(f"norm must be inf or 2, got {self.norm!r}")
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        for name in ("n_iter", "n_target_classes", "n_queries", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.eot_iter is not None and (not isinstance(self.eot_iter, (int, np.integer)) or self.eot_iter < 1):
            raise ValueError(f"eot_iter must be a positive integer, got {self.eot_iter!r}")

    # ------------------------------------------------------------------ model
    def _logits(self, x_t: torch.Tensor) -> torch.Tensor:
        clf = self.estimator
        x_pre, _ = clf._apply_preprocessing(x_t, y=None, fit=False, no_grad=False)
        return clf._model(x_pre)[-1]

    def _predict(self, x_t: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._logits(x_t).argmax(1)

    def _eot(self) -> int:
        if self.eot_iter is not None:
            return int(self.eot_iter)
        return 20 if self.version == "rand" else int(getattr(self.estimator, "eot_draws", 1))

    def _rand(self, shape, like: torch.Tensor, normal: bool = False) -> torch.Tensor:
        t = torch.randn(shape, generator=self._gen) if normal else torch.rand(shape, generator=self._gen)
        return t.to(device=like.device, dtype=like.dtype)

    # ------------------------------------------------------------------ APGD (authors' autopgd_base.py)
    def _loss_and_grad(self, x_adv, y, loss, target):
        x_adv = x_adv.detach().requires_grad_(True)
        grad = torch.zeros_like(x_adv)
        for _ in range(self._eot()):
            with torch.enable_grad():
                z = self._logits(x_adv)
                loss_indiv = loss(z, y, target)
                grad += torch.autograd.grad(loss_indiv.sum(), [x_adv])[0].detach()
        return z.detach(), loss_indiv.detach(), grad / self._eot()

    def _project(self, x_new, x):
        if self.norm == "inf":
            return torch.min(torch.max(x_new, x - self.eps), x + self.eps).clamp(0.0, 1.0)
        d = x_new - x
        return (x + _normalize(d, "2") * torch.clamp(_view(_norms(d, "2"), d), max=self.eps)).clamp(0.0, 1.0)

    def _apgd_run(self, x, y, loss, target=None):
        """One APGD run; returns (still robust, an example per image: one that fooled it where any did)."""
        n = len(x)
        n_iter = self.n_iter
        n_iter_2, n_iter_min, size_decr = max(int(0.22 * n_iter), 1), max(int(0.06 * n_iter), 1), max(int(0.03 * n_iter), 1)
        t = self._rand(x.shape, x, normal=self.norm == "2")
        if self.norm == "inf":
            t = 2 * t - 1
        x_adv = (x + self.eps * _normalize(t, self.norm)).clamp(0.0, 1.0)
        x_best, x_best_adv = x_adv.clone(), x_adv.clone()
        loss_steps = torch.zeros(n_iter, n, device=x.device)
        z, loss_indiv, grad = self._loss_and_grad(x_adv, y, loss, target)
        grad_best = grad.clone()
        acc = z.argmax(1) == y
        loss_best = loss_indiv.clone()
        step = 2.0 * self.eps * torch.ones(n, *([1] * (x.ndim - 1)), device=x.device, dtype=x.dtype)
        x_adv_old = x_adv.clone()
        k, counter3 = n_iter_2, 0
        loss_best_last_check = loss_best.clone()
        reduced_last_check = torch.ones_like(loss_best)
        for i in range(n_iter):
            with torch.no_grad():
                grad2 = x_adv - x_adv_old
                x_adv_old = x_adv.clone()
                a = 0.75 if i > 0 else 1.0
                direction = torch.sign(grad) if self.norm == "inf" else _normalize(grad, "2")
                x_adv_1 = self._project(x_adv + step * direction, x)
                x_adv = self._project(x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a), x)
            z, loss_indiv, grad = self._loss_and_grad(x_adv, y, loss, target)
            with torch.no_grad():
                pred = z.argmax(1) == y
                acc = acc & pred
                x_best_adv[~pred] = x_adv[~pred]
                loss_steps[i] = loss_indiv
                better = loss_indiv > loss_best
                x_best[better], grad_best[better], loss_best[better] = x_adv[better], grad[better], loss_indiv[better]
                counter3 += 1
                if counter3 == k:
                    increases = torch.zeros(n, device=x.device)
                    for c5 in range(k):
                        increases += (loss_steps[i - c5] > loss_steps[i - c5 - 1]).float()
                    oscillation = (increases <= k * 0.75).float()
                    no_improvement = (1.0 - reduced_last_check) * (loss_best_last_check >= loss_best).float()
                    oscillation = torch.max(oscillation, no_improvement)
                    reduced_last_check = oscillation.clone()
                    loss_best_last_check = loss_best.clone()
                    halve = oscillation > 0
                    if halve.any():
                        step[halve] /= 2.0
                        x_adv[halve], grad[halve] = x_best[halve].clone(), grad_best[halve].clone()
                    k = max(k - size_decr, n_iter_min)
                    counter3 = 0
        return acc, x_best_adv

    def _apgd(self, x, y, loss):
        """APGD with one restart (standard and rand versions: n_restarts = 1)."""
        acc, adv = self._apgd_run(x, y, loss)
        return torch.where(_view(acc, x), x, adv)

    def _apgd_targeted(self, x, y):
        adv = x.clone()
        acc = self._predict(x) == y
        for target_class in range(2, self._n_targets() + 2):
            idx = acc.nonzero().flatten()
            if len(idx) == 0:
                break
            with torch.no_grad():
                target = self._logits(x[idx]).sort(dim=1)[1][:, -target_class]
            acc_curr, adv_curr = self._apgd_run(x[idx], y[idx], _dlr, target)
            fooled = idx[~acc_curr]
            acc[fooled] = False
            adv[fooled] = adv_curr[~acc_curr]
        return adv

    def _n_targets(self) -> int:
        return min(self.n_target_classes, self.estimator.nb_classes - 1)

    # ------------------------------------------------------------------ FAB-T (authors' fab_base.py, fab_pt.py)
    def _fab_targeted(self, x, y):
        adv = x.clone()
        acc = self._predict(x) == y
        for target_class in range(2, self._n_targets() + 2):
            idx = acc.nonzero().flatten()
            if len(idx) == 0:
                break
            x_to_fool, y_to_fool = x[idx], y[idx]
            adv_curr = self._fab_run(x_to_fool, y_to_fool, target_class)
            res = _norms(x_to_fool - adv_curr, self.norm)
            still = (self._predict(adv_curr) == y_to_fool) | (res > self.eps)
            fooled = idx[~still]
            acc[fooled] = False
            adv[fooled] = adv_curr[~still]
        return adv

    def _fab_run(self, x, y, target_class):
        """One FAB run toward each image's ``target_class``-th most likely class (no random start: the
        standard version runs FAB-T with one restart); returns the smallest fooling iterate per image."""
        with torch.no_grad():
            z0 = self._logits(x)
        pred = (z0.argmax(1) == y).nonzero().flatten()
        adv_c = x.clone()
        if len(pred) == 0:
            return adv_c
        la_target = z0.sort(dim=-1)[1][:, -target_class][pred]
        im2, la2 = x[pred].clone(), y[pred].clone()
        bs = len(im2)
        u1 = torch.arange(bs, device=x.device)
        adv = im2.clone()
        res2 = torch.full((bs,), 1e10, device=x.device)
        x1 = im2.clone()
        x0 = im2.reshape(bs, -1)
        proj = _projection_linf if self.norm == "inf" else _projection_l2
        alpha_max, eta, beta = 0.1, 1.05, 0.9
        for _ in range(self.n_iter):
            im = x1.clone().requires_grad_(True)
            with torch.enable_grad():
                z = self._logits(im)
                diffy = -(z[u1, la2] - z[u1, la_target])
                dg = torch.autograd.grad(diffy.sum(), [im])[0].detach()
            with torch.no_grad():
                df = diffy.detach()
                w = dg.reshape(bs, -1)
                b = -df + (w * x1.reshape(bs, -1)).sum(-1)
                d3 = proj(torch.cat((x1.reshape(bs, -1), x0), 0), torch.cat((w, w), 0), torch.cat((b, b), 0))
                d1, d2 = d3[:bs].reshape(x1.shape), d3[-bs:].reshape(x1.shape)
                a0 = torch.clamp_min(_norms(d3, self.norm), 1e-8)
                a1, a2 = _view(a0[:bs], x1), _view(a0[-bs:], x1)
                alpha = torch.clamp(a1 / (a1 + a2), min=0.0, max=alpha_max)
                x1 = ((x1 + eta * d1) * (1 - alpha) + (im2 + d2 * eta) * alpha).clamp(0.0, 1.0)
                is_adv = self._predict(x1) != la2
                if is_adv.any():
                    ia = is_adv.nonzero().flatten()
                    t = _norms(x1[ia] - im2[ia], self.norm)
                    smaller = t < res2[ia]
                    adv[ia[smaller]] = x1[ia[smaller]]
                    res2[ia] = torch.where(smaller, t, res2[ia])
                    x1[ia] = im2[ia] + (x1[ia] - im2[ia]) * beta
        succ = res2 < 1e10
        adv_c[pred[succ]] = adv[succ]
        return adv_c

    # ------------------------------------------------------------------ Square (ART's)
    def _square(self, x, y):
        attack = SquareAttack(self.estimator, norm=np.inf if self.norm == "inf" else 2, eps=self.eps,
                              max_iter=self.n_queries, p_init=0.8, nb_restarts=1, batch_size=self.batch_size,
                              verbose=False)
        y_onehot = np.eye(self.estimator.nb_classes, dtype=ART_NUMPY_DTYPE)[y.cpu().numpy()]
        adv = attack.generate(x.cpu().numpy(), y=y_onehot)
        return torch.from_numpy(np.asarray(adv, ART_NUMPY_DTYPE)).to(x.device)

    # ------------------------------------------------------------------ the ensemble
    def _run(self, name, x, y):
        if name == "apgd-ce":
            return self._apgd(x, y, _ce)
        if name == "apgd-dlr":
            return self._apgd(x, y, _dlr)
        if name == "apgd-t":
            return self._apgd_targeted(x, y)
        if name == "fab-t":
            return self._fab_targeted(x, y)
        return self._square(x, y)

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
        """Adversarial examples for ``x`` (float32, shaped like ``x``); ``y`` the true labels, as indices or
        one-hot (default: the classifier's predictions). An image no attack fooled is returned unchanged."""
        clf = self.estimator
        x = np.asarray(x, ART_NUMPY_DTYPE)
        if x.ndim < 2 or tuple(x.shape[1:]) != tuple(clf.input_shape):
            raise ValueError(f"x must have shape (N, {', '.join(map(str, clf.input_shape))}), got {x.shape}")
        if y is None:
            y_idx = np.argmax(clf.predict(x, batch_size=self.batch_size), axis=1)
        else:
            y_idx = np.asarray(check_and_transform_label_format(np.asarray(y), nb_classes=clf.nb_classes,
                                                                return_one_hot=False)).reshape(-1)
        if len(y_idx) != len(x):
            raise ValueError(f"y has {len(y_idx)} labels for {len(x)} samples")
        self._gen = torch.Generator().manual_seed(int(np.random.randint(2 ** 31 - 1)))
        clf._model.train(mode=False)
        dev = clf._device
        x_t = torch.from_numpy(x).to(dev)
        y_t = torch.from_numpy(y_idx.astype(np.int64)).to(dev)
        robust = torch.cat([self._predict(x_t[s:s + self.batch_size]) == y_t[s:s + self.batch_size]
                            for s in range(0, len(x), self.batch_size)])
        x_adv = x_t.clone()
        self.robust_after = {"clean": int(robust.sum())}
        for name in VERSIONS[self.version]:
            idx_all = robust.nonzero().flatten()
            for s in range(0, len(idx_all), self.batch_size):
                idx = idx_all[s:s + self.batch_size]
                adv = self._run(name, x_t[idx], y_t[idx])
                finite = torch.isfinite(adv).flatten(1).all(1)  # ART's Square (L2) can divide by zero
                adv = torch.where(_view(finite, adv), adv, x_t[idx])
                fooled = (self._predict(adv) != y_t[idx]) & finite
                robust[idx[fooled]] = False
                x_adv[idx[fooled]] = adv[fooled]
            self.robust_after[name] = int(robust.sum())
            if self.verbose:
                print(f"AutoAttack ({self.version}): {name}: {self.robust_after[name]}/{len(x)} robust")
        return x_adv.detach().cpu().numpy().astype(ART_NUMPY_DTYPE)
