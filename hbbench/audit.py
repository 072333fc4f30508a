"""The audit of what an attack returns (docs/evaluation.md, "The audit"): every adversarial example, in
every cell, for every attack (plugins included), as returned, before it is scored. An example must be
finite, inside the pixel range and, for an attack with a budget, inside the budget in the attack's
declared norm. Nothing is clipped into validity: a violation marks the cell invalid, which keeps it
out of the worst case and of every comparison (hbbench.checks), and the ``budget`` check names it.

The runner measures each shard (``shard_facts``: counts and maxima, NaN-safe); the sweep merges the
shards' facts into the cell's summary (``summary_facts``: ``audit`` "ok" or "invalid", ``audit_reason``
with the violations found, worst first, and the numbers behind them)."""
from __future__ import annotations

import numpy as np

from hbbench.labels import eps_label

PIXEL_RANGE = (0.0, 1.0)  # every classifier hbbench builds clips to [0, 1] (hbbench.classifier)
# Float tolerances. The examples are float32: a value in [0, 1] is stored to within half a unit in the
# last place, at most 6e-8, so x + eps rounds to at most ~1.2e-7 past eps; 1e-6 absolute covers that
# rounding with margin and is 4,000 times smaller than the smallest budget swept (1/255 = 0.0039), so
# no real excursion hides in it. The same holds for the pixel range (ART clips exactly to 0 and 1).
LINF_TOL = 1e-6
# An L2 projection scales the whole perturbation by eps / ||d||, computed in float32 over ~150k values
# (224 px): the norm's rounding error grows like sqrt(n) ulps, about 1e-5 relative at that size. So L2
# is audited relative to eps, with 1e-5 and an absolute floor of 1e-6 (a budget far below any swept).
L2_REL_TOL = 1e-5
OK, INVALID = "ok", "invalid"
NORM_LABEL = {"inf": "L-inf", "2": "L2"}
FACTS = ("audit_n", "audit_nan", "audit_inf", "audit_out_of_range", "audit_range_worst", "audit_over_budget",
         "audit_norm_worst")


def budget_tolerance(eps: float, norm: str) -> float:
    """How far past ``eps`` a norm may read and still be inside the budget (float rounding)."""
    return LINF_TOL if norm == "inf" else max(L2_REL_TOL * eps, LINF_TOL)


def measure(x: np.ndarray, x_adv: np.ndarray, eps: float | None, norm: str) -> dict[str, np.ndarray]:
    """Per image of ``x_adv`` (examples of images ``x``): a NaN, an infinity, the largest excursion
    outside the pixel range, the perturbation's size in ``norm`` (0 where it is not finite) and
    whether it is over the budget ``eps`` (None: an attack without a budget, never over). NaN-safe."""
    adv = np.asarray(x_adv, np.float64).reshape(len(x_adv), -1)
    clean = np.asarray(x, np.float64).reshape(len(x), -1)
    nan, inf = np.isnan(adv).any(1), np.isinf(adv).any(1)
    finite = ~(nan | inf)
    with np.errstate(invalid="ignore"):
        below = np.where(np.isfinite(adv), PIXEL_RANGE[0] - adv, 0.0).max(1, initial=0.0)
        above = np.where(np.isfinite(adv), adv - PIXEL_RANGE[1], 0.0).max(1, initial=0.0)
    excursion = np.maximum(np.maximum(below, above), 0.0)
    d = np.where(np.isfinite(adv), adv - clean, 0.0)
    size = np.abs(d).max(1, initial=0.0) if norm == "inf" else np.linalg.norm(d, axis=1)
    over = finite & (size > eps + budget_tolerance(eps, norm)) if eps is not None else np.zeros(len(adv), bool)
    return {"nan": nan, "inf": inf, "finite": finite, "excursion": excursion, "size": size, "over": over}


def shard_facts(x: np.ndarray, x_adv: np.ndarray, eps: float | None, norm: str) -> dict:
    """What the audit found on one shard's examples ``x_adv`` of images ``x``: images with a NaN, with
    an infinity, with a value outside the pixel range (and the largest excursion), over the budget
    ``eps`` in ``norm`` and the largest perturbation among the finite examples. Counts and maxima, so
    shards merge by sum and max."""
    m = measure(x, x_adv, eps, norm)
    return {"audit_n": int(len(m["nan"])), "audit_nan": int(m["nan"].sum()), "audit_inf": int(m["inf"].sum()),
            "audit_out_of_range": int((m["excursion"] > LINF_TOL).sum()),
            "audit_range_worst": float(m["excursion"].max(initial=0.0)), "audit_over_budget": int(m["over"].sum()),
            "audit_norm_worst": float(m["size"][m["finite"]].max(initial=0.0)), "audit_eps": eps, "audit_norm": norm}


def image_violations(x: np.ndarray, x_adv: np.ndarray, eps: float | None, norm: str) -> dict[int, str]:
    """The same audit per image, for a reader who names each example (hbbench recheck): the index of
    every example that fails it, with its violations in words, worst first."""
    m = measure(x, x_adv, eps, norm)
    out = {}
    for k in range(len(m["nan"])):
        found = [what for key, what in (("nan", "NaN pixels"), ("inf", "infinite pixels")) if m[key][k]]
        if m["over"][k]:
            found.append(f"outside its eps-ball: {NORM_LABEL[norm]} {m['size'][k]:.6g} > eps {eps_label(eps)} ({eps:.6g})")
        if m["excursion"][k] > LINF_TOL:
            found.append(f"pixels outside [{PIXEL_RANGE[0]:g}, {PIXEL_RANGE[1]:g}] by up to {m['excursion'][k]:.4g}")
        if found:
            out[k] = "; ".join(found)
    return out


def summary_facts(metas: list[dict]) -> dict:
    """The cell's audit from its shards' facts (none when a shard was stored before the audit)."""
    if not metas or not all("audit_n" in m for m in metas):
        return {}
    facts = {k: (max if k.endswith("_worst") else sum)(m[k] for m in metas) for k in FACTS}
    facts["audit_eps"], facts["audit_norm"] = metas[0]["audit_eps"], metas[0]["audit_norm"]
    problems = violations(facts)
    return {"audit": INVALID if problems else OK, "audit_reason": "; ".join(problems), **facts}


def violations(f: dict) -> list[str]:
    """The audit's violations in words, worst first: non-finite values, the budget, the pixel range."""
    n, out = f["audit_n"], []
    for key, what in (("audit_nan", "NaN"), ("audit_inf", "an infinite value")):
        if f[key]:
            out.append(f"{what} in {f[key]} of {n} images")
    if f["audit_over_budget"]:
        out.append(f"{NORM_LABEL[f['audit_norm']]} {f['audit_norm_worst']:.3g} > eps {f['audit_eps']:.3g} "
                   f"({eps_label(f['audit_eps'])}) on {f['audit_over_budget']} of {n} images")
    if f["audit_out_of_range"]:
        out.append(f"values outside [{PIXEL_RANGE[0]:g}, {PIXEL_RANGE[1]:g}] by up to {f['audit_range_worst']:.3g} "
                   f"in {f['audit_out_of_range']} of {n} images")
    return out


def is_invalid(summary: dict | None) -> bool:
    """Whether a stored cell summary says its examples failed the audit."""
    return bool(summary) and summary.get("audit") == INVALID
