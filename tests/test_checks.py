"""Evaluation checks on real ART attacks: a planted gradient-masking defense is caught, a randomized
defense is caught until the attacker uses EoT, and honest settings (the undefended model, JPEG under
BPDA) raise no failing check. Each runs twice (the ``on`` fixture, tests/conftest.py): on the tiny CNN
and its own labelled images (fast tier), and on EfficientNet-Lite0 over the embedded images (slow)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hbbench.api import sweep
from hbbench.checks import auxiliary, remedies
from hbbench.checks.run import resolve_checks
from hbbench.classifier import with_defenses
from hbbench.defenses import StraightThrough, make_defense
from hbbench.grid import expand
from hbbench.spec import SweepSpec
from tests.conftest import cli_runner


def statuses(run_dir, check) -> dict:
    t = pd.read_csv(run_dir / "checks.csv")
    t = t[t.check == check]
    return {(r.defense, r.threat_model): r.status for r in t.itertuples()}


def test_planted_gradient_masking_is_caught_by_unbounded_and_zero_gradient(tmp_path, planted_defense, on):
    n = 4 if on else 2  # the tiny CNN's 4 images; EfficientNet-Lite0's first 2 (both right): each check is per image
    sweep(dict(on, attacks=["pgd[max_iter=3]"], defenses=[planted_defense], threat_models=["adaptive", "bpda"], n=n),
          out=tmp_path, run="r", checks="unbounded,zero_gradient", check_samples=n)
    run = tmp_path / "r"
    assert statuses(run, "zero_gradient")[(planted_defense, "adaptive")] == "fail"
    assert statuses(run, "unbounded")[(planted_defense, "adaptive")] == "fail"
    # The same defense under BPDA gets the identity gradient: nothing is masked.
    assert statuses(run, "zero_gradient")[(planted_defense, "bpda")] == "pass"
    assert statuses(run, "unbounded")[(planted_defense, "bpda")] == "pass"
    assert statuses(run, "unbounded")[("none", "adaptive")] == "pass"


def test_randomized_defense_without_eot_is_flagged_and_eot_clears_it(tmp_path, on):
    sweep(dict(on, attacks=["fgsm"], defenses=["noise", "jpeg"], threat_models=["bpda", "bpda[eot=3]"], n=2),
          out=tmp_path, run="r", checks="randomized_without_eot")
    got = statuses(tmp_path / "r", "randomized_without_eot")
    assert got[("noise", "bpda")] == "fail"
    assert got[("noise", "bpda[eot=3]")] == "pass"
    assert got[("jpeg", "bpda")] == "pass"  # deterministic: no EoT needed
    summary = pd.read_csv(tmp_path / "r" / "summary.csv")
    eot_rows = summary[(summary.threat_model == "bpda[eot=3]") & (summary.attack == "fgsm")]
    assert set(eot_rows.attack_gradient) == {"n/a (no defense)", "identity (BPDA, EoT over 3 draws)"}


@pytest.mark.parametrize("net", ["tiny_classifier", pytest.param("classifier", marks=pytest.mark.slow)])
def test_eot_gradient_is_the_mean_of_single_draw_gradients(net, data4, request):
    classifier = request.getfixturevalue(net)  # the tiny CNN (fast tier) or EfficientNet-Lite0 (slow tier)
    noise = make_defense("noise", classifier, sigma=0.1)
    x, y = data4.x[:2], np.eye(1000, dtype=np.float32)[data4.y[:2]]
    single = with_defenses(classifier, [StraightThrough(noise)])
    eot = with_defenses(classifier, [StraightThrough(noise)], eot_draws=3)
    np.random.seed(7)
    g_eot = eot.loss_gradient(x, y)
    np.random.seed(7)
    draws = [single.loss_gradient(x, y) for _ in range(3)]
    np.testing.assert_allclose(g_eot, np.mean(draws, axis=0), rtol=1e-5, atol=1e-9)
    assert not np.allclose(draws[0], draws[1])  # the draws really differ


def test_undefended_and_jpeg_under_bpda_raise_no_failing_check_and_run_no_remedy(tmp_path, on, budgets):
    """Honest settings at the documented budgets on the real model (``budgets``): no check fails, so no
    remedy runs and every verdict is "verified"."""
    spec = dict(on, attacks=["fgsm", "pgd"], defenses=["jpeg"], threat_models=["oblivious", "bpda"], n=2 if on else 4)
    table = sweep(spec, out=tmp_path, run="r", checks="full", check_samples=2 if on else 4, check_budgets=budgets)
    checks = pd.read_csv(tmp_path / "r" / "checks.csv")
    assert set(checks.check) >= {"unbounded", "not_converged", "blackbox_beats_whitebox", "zero_gradient",
                                 "single_step_beats_iterative", "transfer_beats_whitebox"}
    assert not (checks.status == "fail").any(), checks[checks.status == "fail"].to_string()
    worst = table[table.attack == "worst_case"]
    assert set(zip(worst.defense, worst.threat_model)) == {("none", "oblivious"), ("none", "bpda"),
                                                            ("jpeg", "oblivious"), ("jpeg", "bpda")}
    cells = table[table.attack != "worst_case"]
    for r in worst.itertuples():  # never above the weakest single attack it covers
        same = cells[(cells.defense == r.defense) & (cells.threat_model == r.threat_model)]
        assert r.defended_adv_top1 <= same.defended_adv_top1.min() + 1e-9

    assert set(worst.verdict) == {"verified"}
    grid = expand(SweepSpec.from_dict(spec))
    expected = {c.id for c in grid + auxiliary.added_cells(auxiliary.plan(grid, resolve_checks("full"), budgets))}
    stored = {p.stem for p in (tmp_path / "r" / "cells").glob("*.json")}
    assert stored == expected  # no remedy cell: every per-image outcome is the grid's or a check's
    assert not stored & {c.id for c in remedies.possible(grid, budgets)}


def test_check_command_adds_costly_checks_without_recomputing_cells(tmp_path, on_flags):
    from hbbench.cli import main

    runner = cli_runner()
    args = ["sweep", *on_flags, "--attacks", "fgsm", "--defense", "jpeg", "--threat", "bpda", "--n", "2", "--checks", "none",
            "--out", str(tmp_path), "--run", "r"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0
    # no terminal: one progress line per finished cell, the last without an estimate
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(lines) == 2 and lines[0].startswith("[1/2] fgsm eps=4/255 x ") and "left" in lines[0]
    assert lines[1].startswith("[2/2] ") and "elapsed" in lines[1] and "left" not in lines[1]
    run = tmp_path / "r"
    before = {p.name: p.stat().st_mtime_ns for p in (run / "cells").iterdir()}
    result = runner.invoke(main, ["check", str(run), "--checks", "unbounded", "--check-samples", "2"])
    assert result.exit_code == 0, result.stderr
    assert "Evaluation checks (docs/evaluation.md): 0 failed, 0 warned, 2 passed" in result.stdout
    after = {p.name: p.stat().st_mtime_ns for p in (run / "cells").iterdir()}
    assert all(after[name] == mtime for name, mtime in before.items())  # the grid's cells untouched
    cell_files = lambda names: [n for n in names if n.endswith((".json", ".parquet"))]  # noqa: E731
    assert len(cell_files(after)) == len(cell_files(before)) + 2 * 2  # two unbounded runs (none, jpeg under bpda)
    assert set(pd.read_csv(run / "checks.csv").check) == {"unbounded"}

    grid_cell = pd.read_csv(run / "summary.csv").cell_id.iloc[0]
    (run / "cells" / f"{grid_cell}.json").unlink()
    files = sorted(p.name for p in run.rglob("*"))
    result = runner.invoke(main, ["check", str(run), "--checks", "full"])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "unfinished" in lines[0], result.stderr
    assert sorted(p.name for p in run.rglob("*")) == files  # nothing written


def test_costly_checks_keep_their_image_count_across_resumes(tmp_path, on):
    """The default --check-samples (10) on a 2-image run means 2 images: asking again is no change;
    a resume with only the cheap checks keeps the count; another count is refused, not mixed."""
    from hbbench.errors import HBBenchError

    spec = dict(on, attacks=["fgsm"], defenses=["jpeg"], threat_models=["bpda"], n=2)
    sweep(spec, out=tmp_path, run="r", checks="unbounded")
    sweep(spec, out=tmp_path, run="r", checks="unbounded")
    sweep(spec, out=tmp_path, run="r", checks="default")
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["check_samples"] == 2
    with pytest.raises(HBBenchError, match="ran its costly checks on 2 images"):
        sweep(spec, out=tmp_path, run="r", checks="unbounded", check_samples=1)


def test_check_budgets_are_options_recorded_and_kept(tmp_path, tiny):
    """Smaller budgets plan smaller cells (the Square check's queries here); the manifest records them,
    verify expects their cells, and a resume with other budgets is refused instead of mixing them."""
    from hbbench.checks import auxiliary
    from hbbench.errors import HBBenchError
    from hbbench.grid import expand
    from hbbench.options import CheckBudgets
    from hbbench.spec import SweepSpec
    from hbbench.verification import verify_run

    spec = dict(tiny, attacks=["fgsm"], defenses=["jpeg"], threat_models=["bpda"])
    sweep(spec, out=tmp_path, run="r", checks="blackbox_beats_whitebox", check_budgets=CheckBudgets(square_queries=5))
    run = tmp_path / "r"
    assert json.loads((run / "manifest.json").read_text())["check_budgets"] == {"square_queries": 5}
    summaries = [json.loads(p.read_text()) for p in (run / "cells").glob("*.json")]
    assert "square[max_iter=5,norm=inf]" in {s["attack"] for s in summaries}
    _, findings = verify_run(run)
    assert {f.status for f in findings} == {"ok"}, findings
    with pytest.raises(HBBenchError, match="other budgets"):
        sweep(spec, out=tmp_path, run="r", checks="blackbox_beats_whitebox")
    assert CheckBudgets().record() == {}  # the defaults: nothing recorded
    cells = expand(SweepSpec.from_dict(spec))
    assert {c.attack for c, _ in auxiliary.plan(cells, ["blackbox_beats_whitebox"])["blackbox_beats_whitebox"]} == \
        {"square[max_iter=100,norm=inf]"}
    unbounded = [c for c, _ in auxiliary.plan(cells, ["unbounded"], CheckBudgets(unbounded_iters=7))["unbounded"]]
    assert unbounded and all(dict(c.attack_params)["max_iter"] == 7 and c.eps == 1.0 for c in unbounded)  # a budget too
    assert CheckBudgets() == CheckBudgets(100, 1000, 4, 5, (8, 16), unbounded_iters=50)  # the documented defaults (docs/evaluation.md)
    with pytest.raises(HBBenchError, match="positive integers"):
        CheckBudgets(remedy_restarts=0)
