"""Total variance minimisation (Guo et al., ICLR 2018) in PyTorch: ART's ``TotalVarMin``, batched.

ART's algorithm, kept: each image's pixels are kept with probability ``prob`` (a Bernoulli mask from
NumPy's global generator, drawn exactly as ART draws it), and each channel plane ``z`` (H x W) of
each image is the result of ``max_iter`` L-BFGS-B iterations, started from ``x``, on ART's objective

    sqrt(sum(mask * (z - x)^2)) + lamb * (sum_i ||z[i+1, :] - z[i, :]||_norm + sum_j ||z[:, j+1] - z[:, j]||_norm)

with the gradient ART hands to SciPy (for ``norm=2`` its total-variation part is ``2 d / ||d||``,
twice the derivative of the loss above; kept, since it steers the optimiser), then clipped to
``clip_values``. What differs: the image-channel planes are solved together on the input's device
(on the CPU a chunk at a time), in float32 with float64 line-search scalars; the optimiser is L-BFGS with SciPy L-BFGS-B's initial step
(1 / ||g|| on the first iteration), memory (10 pairs), Moré-Thuente line search (MINPACK ``dcsrch``:
ftol 1e-3, gtol 0.9, xtol 0.1) and stopping rules (``max_iter`` iterations, projected gradient
<= 1e-5, relative decrease <= 2.2e-9) — without bounds L-BFGS-B's step is the L-BFGS step. Measured
agreement and the remaining differences: docs/defenses.md.

Gradient (``adaptive`` threat model): the optimisation is unrolled under autograd. Every iterate is
``z_{k+1} = z_k + a_k d_k``, where the L-BFGS direction ``d_k`` (two-loop recursion over the stored
pairs) and the objective's gradient are differentiated exactly; the step lengths ``a_k`` chosen by
the line search are held constant (the line search runs without a graph: its accept/reject logic is
piecewise constant). The mask is a sample, not a function of the input.
"""
from __future__ import annotations

import numpy as np
import torch
from art.defences.preprocessor import TotalVarMin
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch

from hbbench.errors import HBBenchError

MEMORY = 10                  # L-BFGS-B's default number of stored correction pairs (maxcor)
PGTOL = 1e-5                 # SciPy's default projected-gradient tolerance (gtol of minimize)
FTOL = 2.220446049250313e-09  # SciPy's default relative-decrease tolerance (ftol of minimize)
MAX_LS = 20                  # L-BFGS-B's maximum line-search evaluations per iteration (maxls)
LS_FTOL, LS_GTOL, LS_XTOL = 1e-3, 0.9, 0.1  # L-BFGS-B's arguments to dcsrch
STPMAX = 1e10                # L-BFGS-B's step bound without box constraints ("big")
EPS = float(np.finfo(np.float64).eps)
# On the CPU planes are solved in chunks of about one 224-px RGB image: an iteration's ~30 working
# tensors then stay in cache (measured 2-4x faster than all 48 planes of a batch of 16 at once).
CPU_CHUNK = 3 * 224 * 224


def validate_params(name: str, prob, lamb, max_iter, norm) -> None:
    """One-line errors for TotalVarMin parameters, shared by the PyTorch and the ART defense."""
    if isinstance(prob, bool) or not isinstance(prob, (int, float, np.number)) or not 0 < prob <= 1:
        raise HBBenchError(f"{name} prob must be in (0, 1], got {prob!r}")
    if isinstance(lamb, bool) or not isinstance(lamb, (int, float, np.number)) or not np.isfinite(lamb) or lamb < 0:
        raise HBBenchError(f"{name} lamb must be a finite number >= 0, got {lamb!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise HBBenchError(f"{name} max_iter must be an integer >= 1, got {max_iter!r}")
    if norm not in (1, 2) or isinstance(norm, bool):
        raise HBBenchError(f"{name} norm must be 1 or 2, got {norm!r}")


def draw_mask(shape, prob: float) -> np.ndarray:
    """ART's mask for an (N, C, H, W) batch: ART runs on channels-last images and draws
    ``np.random.rand(H, W, C) < prob`` image after image, i.e. one (N, H, W, C) draw."""
    n, c, h, w = shape
    return (np.random.rand(n, h, w, c) < prob).transpose(0, 3, 1, 2)


class TotalVarMinART(TotalVarMin):
    """ART's TotalVarMin on hbbench's channels-first images. ART expects channels last: it draws the
    mask over (H, W, C) and solves one problem per slice along the last axis, so an (N, C, H, W)
    batch given as is would be solved as W slices of shape (C, H), smoothing across colours."""

    def __call__(self, x: np.ndarray, y=None):
        out, y = super().__call__(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y)
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2)), y


class TotalVarMinPyTorch(PreprocessorPyTorch):
    """ART's TotalVarMin, batched in PyTorch and differentiable (see module docstring).

    :param prob: probability of keeping a pixel (per image, channel and pixel) in the data term.
    :param norm: norm of the total-variation term, 1 or 2.
    :param lamb: weight of the total-variation term.
    :param max_iter: L-BFGS-B iterations per image-channel plane.
    :param clip_values: (min, max) of the output, or None.
    """

    def __init__(self, prob: float = 0.3, norm: int = 2, lamb: float = 0.5, max_iter: int = 10,
                 clip_values=None, device_type: str = "cpu"):
        super().__init__(device_type=device_type, is_fitted=True, apply_fit=False, apply_predict=True)
        validate_params("tvm", prob, lamb, max_iter, norm)
        self.prob, self.norm, self.lamb, self.max_iter = float(prob), int(norm), float(lamb), int(max_iter)
        self.clip_values = None if clip_values is None else (float(clip_values[0]), float(clip_values[1]))

    def forward(self, x: torch.Tensor, y=None):
        if x.dim() != 4:
            raise HBBenchError(f"tvm input x must be (N, C, H, W), got shape {tuple(x.shape)}")
        mask = torch.from_numpy(draw_mask(x.shape, self.prob)).to(x.device)
        return self.minimize(x, mask), y

    def minimize(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The defended images for a given keep-mask (same shape as ``x``)."""
        n, c, h, w = x.shape
        planes, keep = x.reshape(n * c, h, w), mask.reshape(n * c, h, w).to(x.dtype)
        step = max(1, CPU_CHUNK // (h * w) if x.device.type == "cpu" else n * c)
        z = torch.cat([_lbfgs(planes[i:i + step], keep[i:i + step], self.lamb, self.norm, self.max_iter)
                       for i in range(0, max(n * c, 1), step)]).reshape(n, c, h, w)
        return z if self.clip_values is None else z.clamp(*self.clip_values)

    def __repr__(self) -> str:
        return (f"TotalVarMinPyTorch(prob={self.prob}, norm={self.norm}, lamb={self.lamb}, "
                f"max_iter={self.max_iter}, clip_values={self.clip_values})")


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-plane dot product (P,), returned in float64 for the line search's scalar arithmetic
    (a float32 multiply and sum is 2-4x faster than a float64 sum or a batched BLAS dot here)."""
    return (a * b).sum((1, 2)).double()


def _bc(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-plane scalar (P,) broadcast against planes (P, H, W)."""
    return v.to(like.dtype)[:, None, None]


def _objective(z, x, mask, lamb: float, norm: int):
    """ART's loss (P,) in float64 and the gradient ART gives SciPy (``_deri_loss_func``), per plane."""
    r = z - x
    mr = mask * r
    sq = _dot(mr, r)
    dv = z[:, 1:, :] - z[:, :-1, :]  # ART: z[1:, :] - z[:-1, :], a norm per row of differences
    dh = z[:, :, 1:] - z[:, :, :-1]  # ART: z[:, 1:] - z[:, :-1], a norm per column of differences
    if norm == 2:  # sqrt of sums of squares: vector_norm over dim 1 is 7x slower on the CPU
        nv2, nh2 = (dv * dv).sum(2), (dh * dh).sum(1)
        nv, nh = nv2.sqrt(), nh2.sqrt()
        tv_v = dv * (2 * lamb * nv2.clamp_min(1e-12).rsqrt())[:, :, None]  # ART: max(norm, 1e-6)
        tv_h = dh * (2 * lamb * nh2.clamp_min(1e-12).rsqrt())[:, None, :]
    else:
        nv, nh = dv.abs().sum(2), dh.abs().sum(1)
        tv_v, tv_h = lamb * dv.sign(), lamb * dh.sign()
    f = sq.detach().clamp_min(0).sqrt() + lamb * (nv.sum(1, dtype=torch.float64) + nh.sum(1, dtype=torch.float64))
    g = mr / _bc(sq.clamp_min(1e-12).sqrt(), mr)  # ART: max(norm, 1e-6); clamping first keeps autograd finite at 0
    g[:, :-1, :] -= tv_v
    g[:, 1:, :] += tv_v
    g[:, :, :-1] -= tv_h
    g[:, :, 1:] += tv_h
    return f, g


def _direction(g, pairs, gamma):
    """-H g by the L-BFGS two-loop recursion; ``pairs`` holds (s, y, rho), rho = 0 for a skipped
    update, and H's initial scaling ``gamma`` is s'y / y'y of the latest accepted pair."""
    q, alphas = g, []
    for s, y, rho in reversed(pairs):
        a = rho * _dot(s, q)
        q = q - _bc(a, y) * y
        alphas.append(a)
    q = _bc(gamma, q) * q
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        q = q + _bc(a - rho * _dot(y, q), s) * s
    return -q


def _lbfgs(x, mask, lamb: float, norm: int, max_iter: int):
    """max_iter L-BFGS iterations from z = x, independently per plane of x (P, H, W)."""
    def objective(z):
        return _objective(z, x, mask, lamb, norm)

    p = x.shape[0]
    z = x
    f, g = objective(z)
    done = g.detach().abs().flatten(1).amax(1) <= PGTOL
    pairs, gamma = [], torch.ones(p, dtype=torch.float64, device=x.device)
    for it in range(max_iter):
        d = _direction(g, pairs, gamma)
        gd = _dot(g, d).detach()
        done |= gd >= 0  # not a descent direction: L-BFGS-B would restart; rare enough to stop there
        stp0 = torch.where(done, 1, 1 / _dot(d, d).detach().sqrt()) if it == 0 else torch.ones_like(gd)
        stp, f_new, g_new, failed = _line_search(objective, z.detach(), d.detach(), f, g.detach(), gd, stp0,
                                                 done)
        done |= failed
        s = _bc(stp, d) * d
        z = z + s
        if torch.is_grad_enabled() and z.requires_grad:
            g_new = objective(z)[1]  # the same gradient, now with its graph
        y = g_new - g
        sy, yy = _dot(s, y), _dot(y, y)
        # L-BFGS-B skips the update unless s'y > eps * (-g'd * stp) (so always for a stopped plane);
        # a skipped pair stays in the list with rho = 0, which only matters past MEMORY iterations
        ok = sy.detach() > EPS * (-gd * stp)
        sy, yy = torch.where(ok, sy, 1), torch.where(ok, yy, 1)  # no 1/0 in autograd's unused branch
        pairs.append((s, y, torch.where(ok, 1 / sy, 0)))
        pairs = pairs[-MEMORY:]
        gamma = torch.where(ok, sy / yy, gamma)
        done |= (f - f_new <= FTOL * torch.maximum(torch.maximum(f.abs(), f_new.abs()), torch.ones_like(f))) \
            | (g_new.detach().abs().flatten(1).amax(1) <= PGTOL)
        f, g = f_new, g_new
        if bool(done.all()):
            break
    return z


@torch.no_grad()
def _line_search(objective, z, d, f0, g0, gd0, stp, done):
    """MINPACK-2 dcsrch (Moré-Thuente) as L-BFGS-B calls it, vectorised over planes (float64
    scalars, SciPy's ``scipy.optimize._dcsrch`` translated). Returns the accepted step (0 for
    stopped planes), f and gradient there, and the planes whose search found no step in MAX_LS
    evaluations (L-BFGS-B restores the iterate then: they keep z)."""
    ls = _SearchState(stp, f0, gd0)
    finished = done.clone()
    stp_acc = torch.zeros_like(f0)
    f_acc, g_acc = f0.clone(), g0.clone()
    for _ in range(MAX_LS):
        f, g = objective(z + _bc(ls.stp, z) * d)
        dg = _dot(g, d)
        stop = ls.converged_or_warned(f, dg) & ~finished
        stp_acc = torch.where(stop, ls.stp, stp_acc)
        f_acc = torch.where(stop, f, f_acc)
        g_acc = torch.where(stop[:, None, None], g, g_acc)
        finished |= stop
        if bool(finished.all()):
            return stp_acc, f_acc, g_acc, torch.zeros_like(done)
        ls.next_step(f, dg, ~finished)
    return stp_acc, f_acc, g_acc, ~finished


class _SearchState:
    """The per-plane state of dcsrch after its START call."""

    def __init__(self, stp, f0, g0):
        self.stp = stp.clone()
        self.brackt = torch.zeros_like(f0, dtype=torch.bool)
        self.stage1 = torch.ones_like(self.brackt)
        self.finit, self.ginit, self.gtest = f0, g0, LS_FTOL * g0
        self.width = torch.full_like(f0, STPMAX)
        self.width1 = self.width / 0.5
        self.stx, self.fx, self.gx = torch.zeros_like(f0), f0.clone(), g0.clone()
        self.sty, self.fy, self.gy = torch.zeros_like(f0), f0.clone(), g0.clone()
        self.stmin, self.stmax = torch.zeros_like(f0), stp + 4.0 * stp

    def converged_or_warned(self, f, g):
        ftest = self.finit + self.stp * self.gtest
        self.stage1 = self.stage1 & ~((f <= ftest) & (g >= 0))
        return ((f <= ftest) & (g.abs() <= LS_GTOL * -self.ginit)) \
            | (self.brackt & ((self.stp <= self.stmin) | (self.stp >= self.stmax))) \
            | (self.brackt & (self.stmax - self.stmin <= LS_XTOL * self.stmax)) \
            | ((self.stp == STPMAX) & (f <= ftest) & (g <= self.gtest)) \
            | ((self.stp == 0) & ((f > ftest) | (g >= self.gtest)))

    def next_step(self, f, g, active):
        """dcsrch's update after an evaluation at stp, applied where ``active``."""
        ftest = self.finit + self.stp * self.gtest
        # stage 1 with a lower but not sufficiently lower value: dcstep on the modified function
        shift = torch.where(self.stage1 & (f <= self.fx) & (f > ftest), self.gtest, torch.zeros_like(f))
        stx, fx, gx, sty, fy, gy, stp, brackt = _dcstep(
            self.stx, self.fx - self.stx * shift, self.gx - shift, self.sty, self.fy - self.sty * shift,
            self.gy - shift, self.stp, f - self.stp * shift, g - shift, self.brackt, self.stmin, self.stmax)
        fx, fy, gx, gy = fx + stx * shift, fy + sty * shift, gx + shift, gy + shift
        width, width1 = self.width, self.width1
        bisect = brackt & ((sty - stx).abs() >= 0.66 * width1)
        stp = torch.where(bisect, stx + 0.5 * (sty - stx), stp)
        width1 = torch.where(brackt, width, width1)
        width = torch.where(brackt, (sty - stx).abs(), width)
        stmin = torch.where(brackt, torch.minimum(stx, sty), stp + 1.1 * (stp - stx))
        stmax = torch.where(brackt, torch.maximum(stx, sty), stp + 4.0 * (stp - stx))
        stp = stp.clamp(0, STPMAX)
        stuck = brackt & ((stp <= stmin) | (stp >= stmax) | (stmax - stmin <= LS_XTOL * stmax))
        stp = torch.where(stuck, stx, stp)
        for name, new in (("stx", stx), ("fx", fx), ("gx", gx), ("sty", sty), ("fy", fy), ("gy", gy),
                          ("stp", stp), ("brackt", brackt), ("width", width), ("width1", width1),
                          ("stmin", stmin), ("stmax", stmax)):
            setattr(self, name, torch.where(active, new, getattr(self, name)))


def _dcstep(stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stpmin, stpmax):
    """MINPACK-2 dcstep, its four cases computed for every plane and selected (see SciPy's
    ``scipy.optimize._dcsrch.dcstep`` for the reasoning behind each case)."""
    sgnd = dp.sign() * dx.sign()
    higher = fp > fx                                   # case 1
    opposite = ~higher & (sgnd < 0)                    # case 2
    decreasing = ~higher & ~opposite & (dp.abs() < dx.abs())  # case 3; otherwise case 4

    theta = 3 * (fx - fp) / (stp - stx) + dx + dp
    s = torch.maximum(torch.maximum(theta.abs(), dx.abs()), dp.abs())
    disc = (theta / s) ** 2 - (dx / s) * (dp / s)

    gamma = s * disc.sqrt()
    g1 = torch.where(stp < stx, -gamma, gamma)
    stpc1 = stx + ((g1 - dx) + theta) / (((g1 - dx) + g1) + dp) * (stp - stx)
    stpq1 = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx)
    stpf1 = torch.where((stpc1 - stx).abs() <= (stpq1 - stx).abs(), stpc1, stpc1 + (stpq1 - stpc1) / 2.0)

    g2 = torch.where(stp > stx, -gamma, gamma)
    stpc2 = stp + ((g2 - dp) + theta) / (((g2 - dp) + g2) + dx) * (stx - stp)
    stpq = stp + (dp / (dp - dx)) * (stx - stp)
    stpf2 = torch.where((stpc2 - stp).abs() > (stpq - stp).abs(), stpc2, stpq)

    g3 = s * disc.clamp_min(0).sqrt()
    g3 = torch.where(stp > stx, -g3, g3)
    r3 = ((g3 - dp) + theta) / ((g3 + (dx - dp)) + g3)
    stpc3 = torch.where((r3 < 0) & (g3 != 0), stp + r3 * (stx - stp), torch.where(stp > stx, stpmax, stpmin))
    near = torch.where((stpc3 - stp).abs() < (stpq - stp).abs(), stpc3, stpq)
    bound = stp + 0.66 * (sty - stp)
    near = torch.where(stp > stx, torch.minimum(bound, near), torch.maximum(bound, near))
    far = torch.where((stpc3 - stp).abs() > (stpq - stp).abs(), stpc3, stpq)
    stpf3 = torch.where(brackt, near, torch.minimum(torch.maximum(far, stpmin), stpmax))

    theta4 = 3.0 * (fp - fy) / (sty - stp) + dy + dp
    s4 = torch.maximum(torch.maximum(theta4.abs(), dy.abs()), dp.abs())
    g4 = s4 * ((theta4 / s4) ** 2 - (dy / s4) * (dp / s4)).sqrt()
    g4 = torch.where(stp > sty, -g4, g4)
    stpc4 = stp + ((g4 - dp) + theta4) / (((g4 - dp) + g4) + dy) * (sty - stp)
    stpf4 = torch.where(brackt, stpc4, torch.where(stp > stx, stpmax, stpmin))

    stpf = torch.where(higher, stpf1, torch.where(opposite, stpf2, torch.where(decreasing, stpf3, stpf4)))
    to_y = higher | (sgnd < 0)
    new_sty = torch.where(higher, stp, torch.where(to_y, stx, sty))
    new_fy = torch.where(higher, fp, torch.where(to_y, fx, fy))
    new_dy = torch.where(higher, dp, torch.where(to_y, dx, dy))
    new_stx, new_fx, new_dx = (torch.where(higher, a, b) for a, b in ((stx, stp), (fx, fp), (dx, dp)))
    return new_stx, new_fx, new_dx, new_sty, new_fy, new_dy, stpf, brackt | higher | opposite
