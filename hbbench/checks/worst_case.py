"""Worst-case robustness (AutoAttack/RobustBench semantics): per defense x threat model x eps, the
share of images that survive every attack of the run at that budget. An attacker who knows the
defense may also ignore it, so the worst case under bpda counts the oblivious attacks too, and under
adaptive also the bpda ones (threat models in the order of what the attacker knows). Attacks without
a budget (cw, deepfool) are not comparable at an eps and stay out. The remedies' attacks
(hbbench.checks.remedies) count too: they hold every image. Each row names the attack that broke the
most images no other attack broke (``decisive_attack``), what all its attacks cost per image, and gives
the verdict on the evaluation: verified, repaired or unverified."""
from __future__ import annotations

import hashlib

import numpy as np

from hbbench import metrics as M
from hbbench.attacks import attack_norm
from hbbench.checks import remedies
from hbbench.checks.evidence import Evidence
from hbbench.checks.table import WORST_CASE
from hbbench.threats import THREAT_MODELS, get_threat_model
from hbbench.passes import cost_of_attack_runs


def _knows(threat: str) -> int:
    return list(THREAT_MODELS).index(get_threat_model(threat).name)


def rows(ev: Evidence, found: dict | None = None, full: bool = False) -> list[dict]:
    """``found``: the remedies' outcomes (hbbench.checks.remedies.outcomes); ``full``: whether the
    remedies could run (--checks full)."""
    # a cell whose examples failed the audit (hbbench.audit: outside the budget, the range, not finite) is left out
    return [r for one in ev.valid_only().per_model() for r in _rows(one, found or {}, full)]


def decisive(fooled: dict[str, np.ndarray]) -> str:
    """The attack that fooled the most images no other attack fooled ("—" when none did alone)."""
    alone = {name: int((f & ~np.logical_or.reduce([g for other, g in fooled.items() if other != name]
                                                    + [np.zeros_like(f)])).sum()) for name, f in fooled.items()}
    best = max(alone, key=alone.get, default=None)
    return best if best is not None and alone[best] > 0 else "—"


def _rows(ev: Evidence, found: dict, full: bool) -> list[dict]:
    """The worst-case rows of one model's cells."""
    remedy = [c for c, _ in ev.auxiliary.get(remedies.REMEDY, [])]
    out = []
    for (defense, threat, eps), cells in ev.groups("defense", "threat_model", "eps").items():
        if eps is None:
            continue
        weaker = [c for c in ev.cells
                  if c.defense == defense and c.eps == eps and _knows(c.threat_model) <= _knows(threat)]
        done = [c for c in weaker if ev.done(c)]
        if len(done) < 2 or len(done) < len(weaker):
            continue  # one attack is its own row; an unfinished one would overstate robustness
        before = np.logical_and.reduce([~ev.fooled(c, on="defended") for c in done])
        added = [c for c in remedy if c.defense == defense and c.eps == eps and ev.done(c)
                 and _knows(c.threat_model) <= _knows(threat)]
        done += added
        fooled = {f"{c.attack} ({c.threat_model})": ev.fooled(c, on="defended") for c in done}
        gains = {f"{c.attack} ({c.threat_model})": int((fooled[f"{c.attack} ({c.threat_model})"] & before).sum())
                 for c in added}  # images a remedy broke that every grid attack missed
        by = max(gains, key=gains.get, default="—")
        survived = np.logical_and.reduce([~f for f in fooled.values()])
        first = ev.summaries[done[0].id]
        outcome = found.get((done[0].model_label or done[0].model, defense, threat))
        best = decisive(fooled)
        lo, hi = M.bootstrap_ci(survived.astype(float), seed=0)
        attacks = sorted(fooled)
        norms = {attack_norm(c.attack_name, dict(c.attack_params)) for c in done}
        out.append({
            "model": first["model"], "dataset": first["dataset"], "attack": WORST_CASE, "eps": eps,
            "norm": norms.pop() if len(norms) == 1 else "mixed", "defense": defense, "threat_model": threat,
            "n": int(survived.size), "clean_top1": first["clean_top1"],
            "defended_clean_top1": first["defended_clean_top1"], "defended_adv_top1": float(survived.mean()),
            "defended_adv_top1_ci_low": float(lo), "defended_adv_top1_ci_high": float(hi),
            "attack_gradient": "worst of: " + ", ".join(attacks), "seed": first["seed"],
            "cell_id": WORST_CASE + "-" + hashlib.sha256("|".join(sorted(c.id for c in done)).encode()).hexdigest()[:12],
            "decisive_attack": best,
            **cost_of_attack_runs(done, ev.summaries),  # every attack counted, the remedies' too
            "verdict": remedies.verdict(outcome, float(before.mean()), float(survived.mean()), by, full),
        })
    return out
