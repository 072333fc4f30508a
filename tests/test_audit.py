"""The audit of every attack's examples and the budget-use checks (docs/evaluation.md, "The audit",
"Budget use"): a plugin attack whose examples leave its budget, or are NaN, gives an invalid cell, a
failing ``budget`` check, a worst case without it and a printed line; an attack at exactly eps passes;
an iterative attack whose steps cannot reach its budget fails ``budget_use`` before any image is
attacked, and its remedy (the default step, more iterations, restarts) runs under --checks full."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hbbench import audit
from hbbench.api import sweep
from hbbench.attacks import ATTACKS
from hbbench.checks import remedies
from hbbench.checks.evidence import Evidence
from hbbench.checks.run import check_table
from hbbench.grid import resolve
from tests.conftest import invoke, registered, small_budgets

EPS = 4 / 255


class Returns:
    """An 'attack' whose examples are ``make(x)``: what a plugin's generate might hand back."""

    def __init__(self, make):
        self.make = make

    def generate(self, x, y=None):
        return self.make(np.asarray(x, np.float32))


def _signs(x):
    return np.where(np.random.default_rng(0).random(x.shape) < 0.5, -1.0, 1.0).astype(np.float32)


def _at(x, radius):
    """x moved by ``radius`` in L-inf on every value, kept in [0, 1] by going the other way at the edges."""
    s = _signs(x)
    s = np.where(x + radius * s > 1, -1.0, np.where(x + radius * s < 0, 1.0, s)).astype(np.float32)
    return (x + radius * s).astype(np.float32)


def _nan(x):
    out = _at(x, 0.5 * EPS)
    out[:1, 0, 0, 0] = np.nan  # the first image of each batch
    return out


@pytest.fixture
def plugins():
    """Three plugin attacks that declare an L-inf budget: one projecting at 3 x eps, one returning NaN, one
    at exactly eps."""
    with registered("tests: audit"):
        for name, make in (("leaky", lambda eps: lambda x: _at(x, 3 * eps)), ("nan_attack", lambda eps: _nan),
                           ("exact", lambda eps: lambda x: _at(x, eps))):
            ATTACKS.register(name, "test attack", norm="inf", budget=True, gradient=True)(
                lambda classifier, eps=EPS, batch_size=32, make=make: Returns(make(eps)))
        yield


# --- the audit's arithmetic --------------------------------------------------------------------------

def test_exactly_eps_passes_and_past_it_does_not():
    x = np.random.default_rng(1).random((3, 3, 224, 224)).astype(np.float32)
    assert audit.summary_facts([audit.shard_facts(x, _at(x, EPS), EPS, "inf")])["audit"] == "ok"
    d = np.random.default_rng(2).standard_normal(x.shape)
    d = (0.5 * d / np.linalg.norm(d.reshape(3, -1), axis=1)[:, None, None, None])  # L2 exactly 0.5
    on_sphere = (np.full_like(x, 0.5) + d).astype(np.float32)  # float32, as the attacks return
    assert audit.summary_facts([audit.shard_facts(np.full_like(x, 0.5), on_sphere, 0.5, "2")])["audit"] == "ok"
    bad = audit.summary_facts([audit.shard_facts(x, _at(x, 3 * EPS), EPS, "inf")])
    assert bad["audit"] == "invalid" and bad["audit_over_budget"] == 3
    assert bad["audit_reason"].startswith("L-inf 0.0471 > eps 0.0157 (4/255) on 3 of 3 images")


def test_nan_inf_and_the_range_are_found_without_a_budget():
    x = np.full((4, 3, 8, 8), 0.5, np.float32)
    adv = x.copy()
    adv[0, 0, 0, 0], adv[1, 0, 0, 0], adv[2, 0, 0, 0] = np.nan, np.inf, 1.2
    facts = audit.summary_facts([audit.shard_facts(x[:2], adv[:2], None, "2"),
                                 audit.shard_facts(x[2:], adv[2:], None, "2")])  # two shards merged
    assert facts["audit"] == "invalid"
    assert facts["audit_reason"] == ("NaN in 1 of 4 images; an infinite value in 1 of 4 images; "
                                     "values outside [0, 1] by up to 0.2 in 1 of 4 images")
    assert audit.summary_facts([audit.shard_facts(x, x, None, "inf")])["audit"] == "ok"


# --- invalid cells in a sweep ------------------------------------------------------------------------

@pytest.mark.parametrize("attack, reason", [("leaky", "L-inf 0.0471 > eps 0.0157 (4/255) on 2 of 2 images"),
                                            ("nan_attack", "NaN in 1 of 2 images")])
def test_an_attack_that_breaks_the_rules_is_invalid_and_left_out(tmp_path, tiny_flags, plugins, attack, reason):
    code, out, err = invoke("sweep", *tiny_flags, "--attacks", f"fgsm,pgd[max_iter=5],{attack}", "--defense", "none",
                            "--threat", "oblivious", "--eps", "4/255", "--out", tmp_path, "--run", "r")
    assert code == 0, err
    summary = pd.read_csv(tmp_path / "r" / "summary.csv")
    row = summary[summary.attack == attack].iloc[0]
    assert row.audit == "invalid" and row.audit_reason.startswith(reason), row.audit_reason
    assert set(summary[summary.attack.isin(["fgsm", "pgd[max_iter=5]"])].audit) == {"ok"}
    worst = summary[summary.attack == "worst_case"].iloc[0]  # over fgsm and PGD only
    assert attack not in worst.attack_gradient and "fgsm" in worst.attack_gradient
    checks = pd.read_csv(tmp_path / "r" / "checks.csv")
    failed = checks[(checks.check == "budget") & (checks.status == "fail")]
    assert len(failed) == 1 and attack in failed.reason.iloc[0] and reason in failed.reason.iloc[0]
    assert set(checks[checks.status == "fail"].check) == {"budget"}  # no comparison saw the invalid cell
    lines = [line for line in err if line.startswith("invalid: ")]
    assert len(lines) == 1 and attack in lines[0] and reason in lines[0]
    assert worst.verdict == "verified"  # the worst case stands on the valid attacks


def test_an_attack_at_exactly_eps_is_valid(tmp_path, tiny, plugins):
    table = sweep(dict(tiny, attacks=["fgsm", "exact"], defenses=["none"], eps=[EPS], threat_models=["oblivious"]),
                  out=tmp_path, run="r")
    assert set(table[table.attack != "worst_case"].audit) == {"ok"}
    worst = table[table.attack == "worst_case"].iloc[0]
    assert "exact" in worst.attack_gradient
    checks = pd.read_csv(tmp_path / "r" / "checks.csv")
    assert set(checks[checks.check == "budget"].status) == {"pass"}


# --- budget use ----------------------------------------------------------------------------------------

def test_steps_that_cannot_reach_the_budget_fail_before_any_image_is_attacked(tiny):
    grid = resolve(dict(tiny, attacks=["fgsm", "pgd[eps_step=0.0002]", "pgd"], defenses=["none"], eps=[EPS],
                        threat_models=["oblivious"]))
    ev = Evidence(list(grid.cells), {}, {}, None, 0)  # nothing run: no summary, no record
    table = check_table(ev, ["budget_use"])
    assert list(table.status) == ["fail"]
    assert "pgd[eps_step=0.0002]: 10 steps of 0.0002 reach 0.002 < eps 0.0157 (4/255)" in table.reason.iloc[0]
    found = remedies.outcomes(ev, table, budgets=small_budgets())
    (outcome,) = found.values()
    assert outcome.failed == ["budget_use"]
    planned = {c.attack for c in outcome.todo}
    assert "pgd[max_iter=20,num_random_init=2]" in planned  # the default step, 2x the iterations (small budgets)
    assert all("eps_step" not in a for a in planned)


def test_the_sweep_says_so_before_attacking(tmp_path, tiny_flags):
    code, _, err = invoke("sweep", *tiny_flags, "--attacks", "fgsm,pgd[eps_step=0.0002]", "--defense", "none",
                          "--threat", "oblivious", "--eps", "4/255", "--out", tmp_path, "--run", "r")
    assert code == 0, err
    said = [i for i, line in enumerate(err) if line.startswith("budget_use failed before any image is attacked: "
                                                              "pgd[eps_step=0.0002]: 10 steps of 0.0002 reach 0.002")]
    done = [i for i, line in enumerate(err) if " done; " in line]  # one line per finished cell
    assert said and (not done or said[0] < done[0]), err
    checks = pd.read_csv(tmp_path / "r" / "checks.csv")
    assert list(checks[checks.check == "budget_use"].status) == ["fail"]


def test_default_steps_reach_their_budget(tiny):
    grid = resolve(dict(tiny, attacks=["fgsm", "pgd", "bim", "apgd", "pgd[max_iter=5]"], defenses=["none"],
                        eps=[EPS], threat_models=["oblivious"]))
    table = check_table(Evidence(list(grid.cells), {}, {}, None, 0), ["budget_use"])
    assert list(table.status) == ["pass"]


@pytest.mark.slow
def test_unreachable_pgd_is_remedied_under_full_checks(tmp_path):
    """EfficientNet-Lite0 on 2 embedded images (it gets both right): PGD with steps of 0.0002 at 4/255
    fails budget_use, its remedy runs under --checks full (the small budgets: 2x the iterations, 2
    restarts, on CPU), and the worst case comes within one image of PGD's defaults."""
    spec = dict(attacks=["bim", "pgd[eps_step=0.0002]"], defenses=["none"], eps=[EPS], n=2,
                threat_models=["oblivious"])
    table = sweep(spec, out=tmp_path, run="weak", checks="full", check_samples=2, check_budgets=small_budgets())
    checks = pd.read_csv(tmp_path / "weak" / "checks.csv")
    assert set(checks[checks.check == "budget_use"].status) == {"fail"}
    worst = table[table.attack == "worst_case"].iloc[0]
    assert "pgd[max_iter=20,num_random_init=2] (oblivious)" in worst.attack_gradient, worst.attack_gradient
    assert worst.verdict.startswith("repaired after budget_use failed") or worst.verdict.startswith("unverified")
    plain = sweep(dict(spec, attacks=["pgd"]), out=tmp_path, run="plain", checks="none")
    assert abs(worst.defended_adv_top1 - plain.defended_adv_top1.iloc[0]) <= 1 / 2 + 1e-9
