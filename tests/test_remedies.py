"""Remedies on real ART attacks over the embedded images (docs/evaluation.md, "Remedies"): a model
whose softmax saturates is repaired by the logit-loss attacks, a rounding defense attacked only
under adaptive by BPDA, a random defense attacked without EoT by EoT; honest settings run none."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from hbbench.api import sweep
from hbbench.checks import auxiliary, remedies
from hbbench.checks.run import resolve_checks
from hbbench.models import MODELS, load_model
from hbbench.grid import expand
from hbbench.spec import SweepSpec
from tests.test_checks import planted_defense  # noqa: F401  (the rounding defense fixture)

pytestmark = pytest.mark.slow


class Scaled(torch.nn.Module):
    """Logits times 1000 (as defensive distillation's temperature does): the same predictions, a float32
    softmax saturated to exactly one-hot on confident images, so their cross-entropy gradient is 0."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) * 1000.0


@pytest.fixture
def saturated_model():
    base = load_model("efficientnet_lite0")
    MODELS.register("saturated_test", "logits x 1000 (tests only)")(
        lambda: type(base)("saturated_test", Scaled(base.module), base.mean, base.std, base.num_classes))
    yield "saturated_test"
    del MODELS._entries["saturated_test"]


def worst(table, defense, threat):
    rows = table[(table.attack == "worst_case") & (table.defense == defense) & (table.threat_model == threat)]
    assert len(rows) == 1
    return rows.iloc[0]


def statuses(run_dir, check) -> dict:
    t = pd.read_csv(run_dir / "checks.csv")
    return {(r.defense, r.threat_model): r.status for r in t[t.check == check].itertuples()}


GRID = dict(attacks=["fgsm", "pgd[max_iter=5]"], n=4)


def test_saturated_softmax_is_repaired_by_the_logit_loss_attacks(tmp_path, saturated_model):
    table = sweep(dict(GRID, models=[saturated_model], defenses=["none"], threat_models=["bpda"]),
                  out=tmp_path, run="sat", checks="full", check_samples=2)
    assert statuses(tmp_path / "sat", "zero_gradient")[("none", "bpda")] == "fail"
    row = worst(table, "none", "bpda")
    assert {"apgd_dlr (bpda)", "pgd_margin (bpda)"} <= set(row.attack_gradient.removeprefix("worst of: ").split(", "))
    plain = sweep(dict(GRID, defenses=["none"], threat_models=["bpda"]), out=tmp_path, run="plain", checks="none")
    before = float(row.verdict.split(" failed: ")[1].split(" → ")[0])
    assert row.verdict.startswith("repaired after zero_gradient"), row.verdict
    assert before > row.defended_adv_top1  # the masked figure fell
    assert abs(row.defended_adv_top1 - worst(plain, "none", "bpda").defended_adv_top1) <= 0.25 + 1e-9  # one image
    assert "by apgd_dlr (bpda)" in row.verdict or "by pgd_margin (bpda)" in row.verdict  # the remedy that broke most


def test_rounding_defense_under_adaptive_only_is_repaired_by_bpda(tmp_path, planted_defense):  # noqa: F811
    table = sweep(dict(GRID, defenses=[planted_defense], threat_models=["adaptive"]),
                  out=tmp_path, run="r", checks="full", check_samples=2)
    assert statuses(tmp_path / "r", "zero_gradient")[(planted_defense, "adaptive")] == "fail"
    row = worst(table, planted_defense, "adaptive")
    assert {"fgsm (bpda)", "pgd[max_iter=5] (bpda)"} <= set(row.attack_gradient.removeprefix("worst of: ").split(", "))
    assert row.verdict.startswith("repaired after "), row.verdict
    grid_cost = table[(table.defense == planted_defense) & (table.attack != "worst_case")].forward_passes_per_image
    assert row.forward_passes_per_image > grid_cost.sum() > 0  # the remedies' BPDA runs are counted in its cost
    bpda = sweep(dict(GRID, defenses=[planted_defense], threat_models=["bpda"]), out=tmp_path, run="b", checks="none")
    bpda_figure = worst(bpda, planted_defense, "bpda").defended_adv_top1  # the same BPDA cells, same seeds
    assert bpda_figure - 0.25 - 1e-9 <= row.defended_adv_top1 <= bpda_figure  # within one image, never above
    assert float(row.verdict.split(" failed: ")[1].split(" → ")[0]) > row.defended_adv_top1
    assert worst(table, "none", "adaptive").verdict == "verified"


def test_random_defense_without_eot_is_repaired_by_eot(tmp_path):
    table = sweep(dict(attacks=["fgsm", "pgd[max_iter=2]"], defenses=["noise"], threat_models=["bpda"], n=2),
                  out=tmp_path, run="r", checks="full", check_samples=2)
    assert statuses(tmp_path / "r", "randomized_without_eot")[("noise", "bpda")] == "fail"
    row = worst(table, "noise", "bpda")
    assert "fgsm (bpda[eot=8])" in row.attack_gradient and "pgd[max_iter=2] (bpda[eot=8])" in row.attack_gradient
    assert row.verdict.startswith("repaired after ") and "randomized_without_eot failed" in row.verdict, row.verdict


def test_honest_settings_run_no_remedy(tmp_path):
    spec = dict(GRID, defenses=["jpeg"], threat_models=["bpda"])
    table = sweep(spec, out=tmp_path, run="r", checks="full", check_samples=2)
    assert set(table[table.attack == "worst_case"].verdict) == {"verified"}
    cells = expand(SweepSpec.from_dict(spec))
    expected = {c.id for c in cells + auxiliary.added_cells(auxiliary.plan(cells, resolve_checks("full")))}
    stored = {p.stem for p in (tmp_path / "r" / "cells").glob("*.json")}
    assert stored == expected  # no remedy cell: every per-image outcome is the grid's
    assert not stored & {c.id for c in remedies.possible(cells)}
