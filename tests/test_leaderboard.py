"""`hbbench leaderboard` over real runs: two runs that differ in their defense (and share the
undefended baseline), one on other images, a damaged one, one still running, and bad input."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from hbbench.api import sweep
from hbbench.cli import main
from hbbench.spec import SweepSpec

SHARED = dict(attacks=["fgsm", "pgd[max_iter=2]"], threat_models=["oblivious", "bpda"], n=2, batch_size=2)


def cli(*args):
    try:
        runner = CliRunner(mix_stderr=False)  # click 8.1; 8.2 always keeps stderr apart
    except TypeError:
        runner = CliRunner()
    return runner.invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny):
    """On the tiny CNN and its own labelled images (tests/conftest.py)."""
    model = {k: tiny[k] for k in ("models", "plugins", "dataset", "device")}
    out = tmp_path_factory.mktemp("lab")
    sweep(SweepSpec(defenses=["squeeze"], **SHARED, **model), out=out, run="squeeze")
    sweep(SweepSpec(defenses=["median"], **SHARED, **model), out=out, run="median")
    other = tmp_path_factory.mktemp("other")
    sweep(SweepSpec(attacks=["fgsm"], defenses=["squeeze"], threat_models=["oblivious"], n=3, batch_size=3, **model),
          out=other, run="three-images", checks="none")
    return out, other


def _by_hand(out) -> pd.DataFrame:
    """The expected rows from the two runs' summary.csv files: each worst-case row, its cost the sum
    over the attack runs it counts (an oblivious run, and the undefended model's under bpda, once);
    the undefended rows both runs hold come from the newer run (median)."""
    rows = []
    for name in ("squeeze", "median"):
        s = pd.read_csv(out / name / "summary.csv")
        checks = pd.read_csv(out / name / "checks.csv")
        cells, worst = s[s.attack != "worst_case"], s[s.attack == "worst_case"]
        for w in worst.itertuples():
            if name == "squeeze" and w.defense == "none":
                continue  # the median run is newer
            mine = cells[(cells.defense == w.defense) & cells.threat_model.isin({"oblivious", w.threat_model})]
            if w.defense == "none" or w.threat_model == "oblivious":
                mine = mine[mine.threat_model == "oblivious"]  # one shared run per attack
            failed = checks[(checks.defense == w.defense) & (checks.threat_model == w.threat_model)
                            & (checks.status == "fail")]
            rows.append({"defense": w.defense, "threat_model": w.threat_model, "worst_top1": w.defended_adv_top1,
                         "worst_top1_ci_low": w.defended_adv_top1_ci_low,
                         "worst_top1_ci_high": w.defended_adv_top1_ci_high, "clean_top1": w.clean_top1,
                         "defended_clean_top1": w.defended_clean_top1, "n": w.n,
                         "verdict": "unverified" if len(failed) else "verified",
                         "forward_passes_per_image": mine.forward_passes_per_image.sum(),
                         "backward_passes_per_image": mine.backward_passes_per_image.sum(),
                         "seconds_per_image": mine.seconds_per_image.sum(), "run": name})
    return pd.DataFrame(rows).sort_values(["threat_model", "defense"]).reset_index(drop=True)


def test_rows_equal_the_table_computed_by_hand(runs):
    out, _ = runs
    result = cli("leaderboard", out)
    assert result.exit_code == 0, result.output
    board = pd.read_csv(out / "leaderboard.csv")
    expected = _by_hand(out)
    got = board.sort_values(["threat_model", "defense"]).reset_index(drop=True)[expected.columns]
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert set(board.attacks[board.threat_model == "oblivious"]) == {"fgsm (oblivious), pgd[max_iter=2] (oblivious)"}
    dataset = json.loads((out / "median" / "manifest.json").read_text())["spec"]["dataset"]
    assert dataset.startswith("npz:") and (board.dataset == dataset).all() and board["sample"].nunique() == 1
    for _, group in board.groupby("threat_model"):  # ranked: verified first, then by worst case
        assert list(group["rank"]) == list(range(1, len(group) + 1))
        keys = list(zip(~group.verdict.isin(["verified", "repaired"]), -group.worst_top1))
        assert keys == sorted(keys)
    md, html = (out / "leaderboard.md").read_text(), (out / "leaderboard.html").read_text()
    assert "| median |" in md and "fwd / img" in md
    assert "<table" in html and "<script" not in html and "http" not in html.replace("http-equiv", "")


def test_runs_on_other_images_are_ranked_apart(runs, tmp_path):
    out, other = runs
    result = cli("leaderboard", out, other, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    three = board[board.run == "three-images"]
    assert len(three) == 2 and set(three.defense) == {"none", "squeeze"}
    assert set(three["sample"]) == {s for s in board["sample"] if s.startswith("3 images")}
    assert board["sample"].nunique() == 2 and sorted(three["rank"]) == [1, 2]
    assert set(three.verdict) == {"not checked"} and set(three.attacks) == {"fgsm (oblivious)"}
    assert (three.backward_passes_per_image == 1).all()


def test_damaged_and_running_runs_are_named_and_left_out(runs, tmp_path):
    out, _ = runs
    lab = tmp_path / "lab"
    for name in ("squeeze", "median"):
        shutil.copytree(out / name, lab / name)
    parquet = next((lab / "median" / "cells").glob("*.parquet"))
    parquet.write_bytes(parquet.read_bytes()[:100])
    manifest = json.loads((lab / "squeeze" / "manifest.json").read_text())
    shutil.copytree(out / "squeeze", lab / "running")
    (lab / "running" / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    result = cli("leaderboard", lab)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output + result.stderr
    named = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(named) == 1 and "median (damaged" in named[0] and "running (in progress" in named[0]
    board = pd.read_csv(lab / "leaderboard.csv")
    assert set(board.run) == {"squeeze"}


@pytest.mark.parametrize("make", ["empty folder", "a file", "missing", "--out a file"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, make):
    path = tmp_path / "x"
    if make == "empty folder":
        path.mkdir()
    elif make in ("a file", "--out a file"):
        path.write_text("not a run")
    result = cli("leaderboard", path) if make != "--out a file" else cli("leaderboard", tmp_path, "--out", path)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]
