"""The generated verdicts: per threat model, whether each defense holds once the attack sees it or only
looks strong obliviously, from summary.csv's defended adversarial top-1."""
from __future__ import annotations

import numpy as np
import pandas as pd

from hbbench.report.data import Run, budget_rows, pick, setting_label
from hbbench.report.document import Doc

HOLD_MIN_GAIN = 0.10  # a defense "helps" when it adds at least this much top-1 over no defense


def _gains(df: pd.DataFrame, defense: str, threat: str) -> list[tuple[str, float, float, float]]:
    """(setting, defended top-1, undefended top-1, gain) for each attack x budget under ``threat``."""
    out = []
    for attack, eps in budget_rows(df):
        d = pick(df, attack, eps, defense, threat)
        base = pick(df, attack, eps, "none", threat)
        if d.empty or base.empty:
            continue
        top1, base_top1 = float(d.defended_adv_top1.iloc[0]), float(base.defended_adv_top1.iloc[0])
        out.append((setting_label(attack, eps), top1, base_top1, top1 - base_top1))
    return out


def verdict_texts(run: Run, costs: dict) -> dict[str, list[str]]:
    """Generated sentences per threat model, from the numbers (also used by the tests)."""
    out: dict[str, list[str]] = {}
    df = run.summary
    n = int(df.n.iloc[0])
    defended = [d for d in run.defenses if d != "none"]
    mean_gain = {(d, t): np.mean([g[3] for g in _gains(df, d, t)]) if _gains(df, d, t) else np.nan
                 for d in defended for t in run.threat_models}
    for t in run.threat_models:
        lines = []
        for d in defended:
            gains = _gains(df, d, t)
            if not gains:
                continue
            worst = min(gains, key=lambda g: g[1])
            mean_d, mean_b = np.mean([g[1] for g in gains]), np.mean([g[2] for g in gains])
            c = costs[d]
            text = (f"{d}: adversarial top-1 {mean_d:.2f} on average over {len(gains)} attack setting(s) vs "
                    f"{mean_b:.2f} without a defense ({mean_d - mean_b:+.2f}); worst {worst[1]:.2f} "
                    f"({worst[0]}). Clean top-1 {c['clean']:.2f} → {c['defended']:.2f} with it.")
            if t != "oblivious" and "oblivious" in run.threat_models:
                obl, here = mean_gain[(d, "oblivious")], mean_gain[(d, t)]
                if obl >= HOLD_MIN_GAIN and here < max(HOLD_MIN_GAIN, 0.5 * obl):
                    text += (f" It only looks strong obliviously: its gain falls from {obl:+.2f} (oblivious) to "
                             f"{here:+.2f} once the attack sees it ({t}).")
                elif here >= HOLD_MIN_GAIN:
                    text += f" It holds under {t}: gain {here:+.2f} here vs {obl:+.2f} oblivious."
                else:
                    text += f" It does not help under either threat model (gain {obl:+.2f} oblivious, {here:+.2f} {t})."
            elif t == "oblivious":
                text += (" Helps obliviously." if mean_gain[(d, t)] >= HOLD_MIN_GAIN
                         else f" Adds less than {HOLD_MIN_GAIN:.2f} top-1 even obliviously.")
            lines.append(text)
        if not defended:
            lines.append("Only the undefended model is in this run.")
        if n < 50 and defended:
            lines.append(f"(n = {n}: each image is {1 / n:.2f} of top-1, and a 95% interval around a top-1 near 0.5 "
                         f"spans about ±{1 / np.sqrt(n):.2f}; see the intervals in the tables before trusting a "
                         "difference.)")
        out[t] = lines
    return out


def verdicts(doc: Doc, run: Run, costs: dict):
    doc.heading(2, "What holds and what only looks strong obliviously", "verdicts")
    doc.para(f"Generated from this run's numbers: 'gain' is defended adversarial top-1 minus the undefended "
             f"model's adversarial top-1 on the same attack setting; a defense 'holds' when it keeps a gain of "
             f"at least {HOLD_MIN_GAIN:.2f} (and half its oblivious gain) under an attack that sees it.")
    for t, lines in verdict_texts(run, costs).items():
        doc.heading(3, f"Threat model: {t}")
        for line in lines:
            doc.para(line, cls="verdict")
