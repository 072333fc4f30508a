"""Remedies where the model masks every loss (docs/evaluation.md, "Remedies", second round): a one-hot
model has a zero gradient for cross-entropy, DLR and the margin alike, so no gradient remedy may read
"repaired" on its own measurement; HopSkipJump (gradient-free) and, with a surrogate, a transfer attack
are what can break it. On the tiny CNN (the mechanism is the same on any model): both in the fast tier."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

import pandas as pd
import torch

from hbbench.api import sweep
from hbbench.models import MODELS
from tests.conftest import TINY_MODEL, registered, small_budgets, tiny_cnn
from tests.test_remedies import statuses, worst


class OneHot(torch.nn.Module):
    """10 x one-hot(argmax) of the inner model: the same decisions, and a zero gradient for every loss
    (cross-entropy, DLR, the margin: the output does not move until the argmax flips)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        logits = self.inner(x)
        hot = torch.nn.functional.one_hot(logits.argmax(1), logits.shape[1]).to(logits.dtype)
        return logits * 0 + 10 * hot  # in the graph, with a zero gradient


@contextmanager
def onehot_model():
    """(`onehot_test`, the model it wraps as --model names it): the tiny CNN behind OneHot."""
    base = tiny_cnn()
    with registered("tests: one-hot model"):
        MODELS.register("onehot_test", "10 x one-hot(argmax) (tests only)")(
            lambda: replace(base, name="onehot_test", module=OneHot(base.module)))
        yield "onehot_test", TINY_MODEL


def _affordable():
    """Small check budgets, one start per gradient remedy (every one follows a zero gradient here, so a
    restart only repeats it) and HopSkipJump's cut too (its documented one queries for minutes per image)."""
    return replace(small_budgets(), remedy_restarts=1, remedy_hsj_iters=2, remedy_hsj_evals=20)


def _masked_sweep(tmp_path, tiny, budgets):
    """(the one-hot model's worst-case row, the wrapped model's) under a --checks full sweep on the tiny
    CNN's 4 images."""
    spec = dict(tiny, attacks=["fgsm", "pgd[max_iter=3]"], defenses=["none"], threat_models=["bpda"], n=4)
    with onehot_model() as (masked, base):
        table = sweep(dict(spec, models=[masked]), out=tmp_path, run="m", checks="full", check_samples=2,
                      check_budgets=budgets(base))
    plain = sweep(dict(spec, models=[base]), out=tmp_path, run="p", checks="none")
    return table, worst(table, "none", "bpda"), worst(plain, "none", "bpda")


def test_a_model_masking_every_loss_is_never_repaired_by_a_masked_remedy(tmp_path, tiny):
    """Issue 28: the logit-loss remedies follow a zero gradient too; their own probe says so, and the
    verdict reads "repaired" only where a remedy brings the figure to the wrapped model's."""
    _, row, plain = _masked_sweep(tmp_path, tiny, lambda base: _affordable())
    assert statuses(tmp_path / "m", "zero_gradient")[("none", "bpda")] == "fail"
    cells = [pd.read_json(p, typ="series") for p in (tmp_path / "m" / "cells").glob("*.json")]
    logit_remedies = [c for c in cells if str(c["attack"]).startswith(("pgd_margin", "apgd_dlr"))]
    assert logit_remedies and all(c["gradient_zero_share"] == 1.0 for c in logit_remedies)  # measured, own loss
    if row.verdict.startswith("repaired"):
        assert row.defended_adv_top1 <= plain.defended_adv_top1 + 0.1 + 1e-9, row.verdict
    else:
        assert row.verdict.startswith("unverified (tried: ") and "hsj_eps" in row.verdict, row.verdict


def test_a_surrogate_repairs_a_model_masking_every_loss(tmp_path, tiny):
    """With the wrapped model as --surrogate, the one-hot model is broken as the model itself is (the
    transfer is the same on any model: the tiny CNN's, in the fast tier)."""
    _, row, plain = _masked_sweep(tmp_path, tiny, lambda base: replace(_affordable(), surrogate=base))
    assert abs(row.defended_adv_top1 - plain.defended_adv_top1) <= 0.1 + 1e-9, (row.verdict, plain.defended_adv_top1)
    assert row.verdict.startswith("repaired after ") and "transfer_pgd" in row.verdict, row.verdict
