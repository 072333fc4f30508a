"""A run directory records its layout version; one written before it did (version 1) is read as today's
in one place (hbbench.schema), and every reader works on it: load_run, the report, the leaderboard."""
import json

import pandas as pd

from hbbench import schema
from hbbench.leaderboard import table
from hbbench.report import build_report
from hbbench.rundir import RunDir
from hbbench.runs import load_run


def _as_version_1(run):
    """Rewrite a finished run as a version-1 run was written: no schema_version, a one-model spec under
    ``model``, checks.csv without its model column, summary.csv without the costs per image."""
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["schema_version"] == schema.SCHEMA_VERSION
    del manifest["schema_version"]
    manifest["spec"]["model"] = manifest["spec"].pop("models")[0]
    (run / "manifest.json").write_text(json.dumps(manifest))
    checks = pd.read_csv(run / "checks.csv")
    checks.drop(columns="model").to_csv(run / "checks.csv", index=False)
    summary = pd.read_csv(run / "summary.csv")
    summary.drop(columns=list(schema.COSTS)).to_csv(run / "summary.csv", index=False)
    return manifest["spec"]["model"]


def test_a_version_1_run_reads_as_todays(tiny_run_copy):
    today = load_run(tiny_run_copy)
    model = _as_version_1(tiny_run_copy)
    assert schema.version(json.loads((tiny_run_copy / "manifest.json").read_text())) == 1

    run = RunDir.open(tiny_run_copy)
    assert run.read_manifest()["spec"]["models"] == model
    assert set(run.read_checks().model) == {model}
    assert run.read_summary()[list(schema.COSTS)].isna().all().all()

    old = load_run(tiny_run_copy)
    pd.testing.assert_frame_equal(old.checks[today.checks.columns], today.checks)
    board = table([old])
    assert not board.empty and set(board.model) == {model}
    assert board.forward_passes_per_image.isna().all()  # not recorded then: shown as unknown, not as 0
    html, md = build_report(tiny_run_copy, examples=False)
    assert "data-forward-passes" not in html.read_text()  # the cost table shows no number it does not have
