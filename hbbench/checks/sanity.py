"""``model_sanity``: does the model classify the run's images at all? Every other check compares attacks
with attacks; this one compares the undefended model with its task, so it comes before them: a model
near chance (untrained weights, inputs normalised twice, another class order) makes every robustness
number of the run meaningless. Threshold and reasons: docs/evaluation.md."""
from __future__ import annotations

from scipy.stats import binomtest

from hbbench.checks import CHECKS
from hbbench.checks.evidence import Evidence
from hbbench.checks.stats import ALPHA
from hbbench.checks.table import MODEL_CHECK

MIN_CLEAN_TOP1 = 0.2  # the floor: a fifth of the clean images; the embedded model gets 0.80 of its 20


@CHECKS.register(MODEL_CHECK, f"the undefended model's clean top-1 is significantly above chance (exact binomial "
                 f"test against 1 / classes) and at least {MIN_CLEAN_TOP1}", cost="cheap")
def model_sanity(ev: Evidence) -> list[dict]:
    done = [c for c in ev.cells if ev.done(c)]
    if not done:
        return [_row(ev.cells[0], "not run", "no cell of this model finished")]
    cell = done[0]  # every cell of a model holds the same clean predictions of the undefended model
    classes = ev.summaries[cell.id].get("num_classes")
    if not classes:
        return [_row(cell, "not run", "its cells were stored before hbbench recorded the number of classes")]
    r = ev.records(cell)
    correct, n = int((r["clean_pred"] == r["label"]).sum()), len(r)
    top1 = correct / n
    p = binomtest(correct, n, 1 / classes, alternative="greater").pvalue
    numbers = (f"{correct} of {n} right; chance 1/{classes}, exact binomial test p={p:.3g} (fail at p >= {ALPHA}); "
               f"floor {MIN_CLEAN_TOP1}")
    if p < ALPHA and top1 >= MIN_CLEAN_TOP1:
        return [_row(cell, "pass", f"the model classifies these images (clean top-1 {top1:.2f} on {n} images)",
                     numbers)]
    return [_row(cell, "fail", f"the model does not classify these images (clean top-1 {top1:.2f} on {n} images); "
                 "check its weights, its normalisation and the dataset's class indices", numbers)]


def _row(cell, status: str, reason: str, numbers: str = "") -> dict:
    """One row per model: the check is about the undefended model, under no threat model in particular."""
    return {"check": MODEL_CHECK, "model": cell.model_label or cell.model, "defense": "none", "threat_model": "all",
            "eps": None, "status": status, "reason": reason, "numbers": numbers}
