"""The generated defense outcomes: per threat model, whether each defense helps against an attacker who
sees it, helps only obliviously, or brings no gain, from summary.csv's defended adversarial top-1. Their
words are the defense's only: verified / repaired / unverified say whether a number can be trusted
(hbbench.checks.worst_case) and never appear here."""
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


def _worst_case_gain(run: Run, defense: str, threat: str) -> float | None:
    """Mean over budgets of worst-case top-1 with the defense minus without it, or None."""
    wc = run.worst_case
    if wc.empty:
        return None
    gains = []
    for r in wc[(wc.defense == defense) & (wc.threat_model == threat)].itertuples():
        base = wc[(wc.defense == "none") & (wc.threat_model == threat) & (wc.eps == r.eps)]
        if not base.empty:
            gains.append(r.defended_adv_top1 - base.defended_adv_top1.iloc[0])
    return float(np.mean(gains)) if gains else None


def _gain(run: Run, defense: str, threat: str) -> float:
    """What a verdict reads: the worst-case gain where the run has worst-case rows, else the mean gain
    over the attack settings."""
    worst = _worst_case_gain(run, defense, threat)
    if worst is not None:
        return worst
    gains = _gains(run.summary, defense, threat)
    return float(np.mean([g[3] for g in gains])) if gains else np.nan


def verdict_texts(run: Run, costs: dict) -> dict[str, list[str]]:
    """Generated sentences per threat model, from the numbers (also used by the tests)."""
    out: dict[str, list[str]] = {}
    df = run.summary
    n = int(df.n.iloc[0])
    defended = [d for d in run.defenses if d != "none"]
    mean_gain = {(d, t): _gain(run, d, t) for d in defended for t in run.threat_models}
    for t in run.threat_models:
        lines = []
        for d in defended:
            gains = _gains(df, d, t)
            if not gains:
                continue
            if run.model_unverified():  # the model does not classify the images: no number means anything
                lines.append(f"{d}: {run.model_unverified()}.")
                continue
            worst = min(gains, key=lambda g: g[1])
            mean_d, mean_b = np.mean([g[1] for g in gains]), np.mean([g[2] for g in gains])
            c = costs[d]
            worst_gain = _worst_case_gain(run, d, t)
            text = (f"{d}: adversarial top-1 {mean_d:.2f} on average over {len(gains)} attack setting(s) vs "
                    f"{mean_b:.2f} without a defense ({mean_d - mean_b:+.2f}); worst {worst[1]:.2f} "
                    f"({worst[0]})" + ("" if worst_gain is None else
                                        f"; worst case over all attacks {worst_gain:+.2f} against no defense") +
                    f". Clean top-1 {c['clean']:.2f} → {c['defended']:.2f} with it.")
            if t != "oblivious" and "oblivious" in run.threat_models:
                obl, here = mean_gain[(d, "oblivious")], mean_gain[(d, t)]
                if obl >= HOLD_MIN_GAIN and here < max(HOLD_MIN_GAIN, 0.5 * obl):
                    text += (f" It helps only obliviously: its gain falls from {obl:+.2f} (oblivious) to "
                             f"{here:+.2f} once the attack sees it ({t}).")
                elif here >= HOLD_MIN_GAIN and run.failed_checks(d, t):
                    text += (f" Its gain under {t} is not established: {', '.join(run.failed_checks(d, t))} failed "
                             f"(docs/evaluation.md), so its gain {here:+.2f} may come from too weak an attack.")
                elif here >= HOLD_MIN_GAIN:
                    text += (f" It helps against an attacker who sees it ({t}): gain {here:+.2f} here vs "
                             f"{obl:+.2f} oblivious.")
                else:
                    text += f" No gain under either threat model (gain {obl:+.2f} oblivious, {here:+.2f} {t})."
            elif t == "oblivious":
                text += (" Helps obliviously (against an attacker who ignores it)." if mean_gain[(d, t)] >= HOLD_MIN_GAIN
                         else f" Adds less than {HOLD_MIN_GAIN:.2f} top-1 even obliviously.")
            elif mean_gain[(d, t)] >= HOLD_MIN_GAIN:  # no oblivious cells to compare with
                failed = run.failed_checks(d, t)
                text += (f" Its gain under {t} is not established: {', '.join(failed)} failed (docs/evaluation.md)."
                         if failed else f" It helps against an attacker who sees it ({t}): gain {mean_gain[(d, t)]:+.2f}.")
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
    doc.heading(2, "Which defenses help against an attacker who sees them, and which only obliviously", "verdicts")
    doc.para(f"Generated from this run's numbers: 'gain' is defended adversarial top-1 minus the undefended "
             f"model's adversarial top-1, in the worst case over the run's attacks where it has several at a "
             f"budget (else on each attack setting); a defense 'helps against an attacker who sees it' when it keeps a "
             f"gain of at least {HOLD_MIN_GAIN:.2f} (and half its oblivious gain) under an attack that sees it, and "
             f"no evaluation check failed for it there (else its gain is not established); it 'helps only "
             f"obliviously' when that gain is lost once the attack sees it; else 'no gain'. Whether a number can "
             f"be trusted is the worst-case table's verdict (verified, repaired, unverified), not these words.")
    for t, lines in verdict_texts(run, costs).items():
        doc.heading(3, f"Threat model: {t}")
        for line in lines:
            doc.para(line, cls="verdict")
