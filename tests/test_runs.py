"""Runs from Python (hbbench.load_run, hbbench.compare) and what each cell's attack cost, on one real
sweep of the example plugin's tiny CNN (random weights: cheap, every image misclassified), in-process."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import hbbench
from hbbench.errors import HBBenchError
from hbbench.spec import SweepSpec
from tests.conftest import TINY_PLUGIN


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    # the tiny CNN at 224 px on the embedded images with their true labels: it gets every one wrong
    spec = SweepSpec(models=["tiny_cnn[weights=random]"], plugins=[TINY_PLUGIN],
                     attacks=["fgsm", "pgd[max_iter=10]", "pgd[max_iter=10,early_stop=true]"], defenses=["squeeze"],
                     threat_models=["oblivious", "bpda[eot=4]"], n=3, batch_size=3)
    hbbench.sweep(spec, out=out, run="tiny", checks="none")
    return out / "tiny"


def _cell(summary: pd.DataFrame, attack: str, defense: str, threat: str) -> pd.Series:
    rows = summary[(summary.attack == attack) & (summary.defense == defense) & (summary.threat_model == threat)]
    assert len(rows) == 1
    return rows.iloc[0]


@pytest.mark.parametrize("attack, defense, threat, backward", [
    ("fgsm", "none", "oblivious", 1), ("fgsm", "squeeze", "oblivious", 1), ("fgsm", "squeeze", "bpda[eot=4]", 4),
    ("pgd[max_iter=10]", "none", "oblivious", 10), ("pgd[max_iter=10]", "squeeze", "oblivious", 10),
    ("pgd[max_iter=10]", "none", "bpda[eot=4]", 10),  # the undefended model's run, shared: no EoT
    ("pgd[max_iter=10]", "squeeze", "bpda[eot=4]", 40),  # the sweep runs every step unless asked
    # early stop (asked for; a deterministic defense scored on the model it attacks): every image of the
    # untrained CNN is wrong from the start, so each leaves after its first step of 4 EoT draws
    ("pgd[max_iter=10,early_stop=true]", "squeeze", "bpda[eot=4]", 4)])
def test_passes_per_image_count_what_the_attack_ran(tiny_run, attack, defense, threat, backward):
    cell = _cell(pd.read_csv(tiny_run / "summary.csv"), attack, defense, threat)
    assert cell.backward_passes_per_image == backward
    assert cell.forward_passes_per_image >= backward  # each backward pass follows a forward one
    assert cell.seconds_per_image == pytest.approx(cell.attack_seconds / cell.n)


def test_cells_sharing_an_attack_run_record_its_cost_once_each(tiny_run):
    summary = pd.read_csv(tiny_run / "summary.csv")
    shared = summary[(summary.attack == "pgd[max_iter=10]") & (summary.threat_model == "oblivious")]
    assert shared.forward_passes_per_image.nunique() == 1 and shared.attack_seconds.nunique() == 1


def test_load_run_gives_summary_checks_manifest_records(tiny_run):
    run = hbbench.load_run(tiny_run)
    on_disk = pd.read_csv(tiny_run / "summary.csv")
    pd.testing.assert_frame_equal(run.summary.reset_index(drop=True), on_disk, check_dtype=False)
    assert run.manifest["status"] == "complete" and run.status == "complete"
    assert run.checks is not None and run.checks.empty  # --checks none: an empty table
    rec = run.records(attack="pgd[max_iter=10]", defense="squeeze", threat_model="bpda[eot=4]", eps="4/255")
    assert len(rec) == 3 and set(rec.defense) == {"squeeze"} and list(rec.columns[:6]) == \
        ["model", "dataset", "attack", "eps", "defense", "threat_model"]
    assert len(run.records()) == 3 * len(run.summary[run.summary.attack != "worst_case"])
    html = run._repr_html_()
    assert "tiny" in html and "worst-case top-1" in html and "3 images" in html
    with pytest.raises(HBBenchError, match="no cell"):
        run.records(defense="jpeg")


def test_compare_finds_the_one_image_whose_outcome_differs(tiny_run):
    a, b = hbbench.load_run(tiny_run), hbbench.load_run(tiny_run)
    same = hbbench.compare(a, b)
    assert len(same) == len(a.summary[a.summary.attack != "worst_case"])
    assert (same.difference == 0).all() and (same.p_value == 1).all()
    cell = _cell(b._run.summary, "fgsm", "squeeze", "oblivious").cell_id
    b._run = copy.copy(b._run)
    b._run.records = dict(b._run.records)
    flipped = b._run.records[cell].copy()
    flipped.loc[flipped["sample"] == 1, "def_adv_pred"] = flipped.loc[flipped["sample"] == 1, "label"]
    b._run.records[cell] = flipped  # image 1 now survives fgsm behind squeeze in run b
    diff = hbbench.compare(a, b)
    changed = diff[diff.difference != 0]
    assert len(changed) == 1
    row = changed.iloc[0]
    assert (row.attack, row.defense, row.threat_model) == ("fgsm", "squeeze", "oblivious")
    assert row.difference == pytest.approx(1 / 3) and row.top1_b - row.top1_a == pytest.approx(1 / 3)
    assert (row.only_a_fooled, row.only_b_fooled, row.n) == (1, 0, 3)
    assert row.p_value == 1.0  # one discordant image is no evidence: exact sign test, two-sided


def test_compare_refuses_runs_on_other_images(tiny_run):
    a, b = hbbench.load_run(tiny_run), hbbench.load_run(tiny_run)
    b._run = copy.copy(b._run)
    first = b._run.summary.cell_id.iloc[0]
    b._run.records = {**b._run.records, first: b._run.records[first].assign(sample_id=np.arange(3) + 100)}
    with pytest.raises(HBBenchError, match="different images"):
        hbbench.compare(a, b)


def test_load_run_on_a_path_that_is_not_a_run(tmp_path):
    with pytest.raises(HBBenchError, match="not a run directory"):
        hbbench.load_run(tmp_path)
