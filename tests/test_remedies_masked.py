"""Remedies where the model masks every loss (docs/evaluation.md, "Remedies", second round): a one-hot
model has a zero gradient for cross-entropy, DLR and the margin alike, so no gradient remedy may read
"repaired" on its own measurement; HopSkipJump (gradient-free) and, with a surrogate, a transfer attack
are what can break it. In their own file so that they run beside tests/test_remedies.py."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

import pandas as pd
import pytest
import torch

from hbbench.api import sweep
from hbbench.models import MODELS, load_model
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
def onehot_model(on):
    """(`onehot_test`, the model it wraps as --model names it): ``on``'s model behind OneHot."""
    base = tiny_cnn() if on else load_model("efficientnet_lite0")
    with registered("tests: one-hot model"):
        MODELS.register("onehot_test", "10 x one-hot(argmax) (tests only)")(
            lambda: replace(base, name="onehot_test", module=OneHot(base.module)))
        yield "onehot_test", (TINY_MODEL if on else "efficientnet_lite0")


def _affordable():
    """Small check budgets, one start per gradient remedy (every one follows a zero gradient here, so a
    restart only repeats it) and HopSkipJump's cut too (its documented one queries for minutes per image)."""
    return replace(small_budgets(), remedy_restarts=1, remedy_hsj_iters=2, remedy_hsj_evals=20)


def _masked_sweep(tmp_path, on, budgets):
    """(the one-hot model's worst-case row, the wrapped model's) under a --checks full sweep: the tiny
    CNN's 4 images, or EfficientNet-Lite0's first 2 (it gets both right; a repair is per image)."""
    spec = dict(on, attacks=["fgsm", "pgd[max_iter=3]"], defenses=["none"], threat_models=["bpda"], n=4 if on else 2)
    with onehot_model(on) as (masked, base):
        table = sweep(dict(spec, models=[masked]), out=tmp_path, run="m", checks="full", check_samples=2,
                      check_budgets=budgets(base))
    plain = sweep(dict(spec, models=[base]), out=tmp_path, run="p", checks="none")
    return table, worst(table, "none", "bpda"), worst(plain, "none", "bpda")


@pytest.mark.slow  # two remedy rounds with HopSkipJump: minutes even on the tiny CNN
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


@pytest.mark.slow
def test_a_surrogate_repairs_a_model_masking_every_loss(tmp_path):
    """With --surrogate efficientnet_lite0, the one-hot EfficientNet-Lite0 is broken as the model itself is."""
    _, row, plain = _masked_sweep(tmp_path, {}, lambda base: replace(_affordable(), surrogate=base))
    assert abs(row.defended_adv_top1 - plain.defended_adv_top1) <= 0.1 + 1e-9, (row.verdict, plain.defended_adv_top1)
    assert row.verdict.startswith("repaired after ") and "transfer_pgd" in row.verdict, row.verdict
