"""docs/plugins.md runs as written: every `$ ` command of its console blocks, in order, in a fresh
directory whose examples/ is the repository's, each exiting 0; then what the text claims of the results.
The commands run in this process, as a user's shell would run them; the plugins they load are unloaded
after (tests/test_plugins.py runs one in a new process)."""
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

from hbbench import plugins
from tests.conftest import TINY_PLUGIN, run_doc_commands

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plugins.md"


def doc_commands() -> list[str]:
    blocks = re.findall(r"```console\n(.*?)```", DOC.read_text(), flags=re.S)
    return [line[2:].strip() for block in blocks for line in block.splitlines() if line.startswith("$ ")]


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("docs")
    (cwd / "examples").symlink_to(ROOT / "examples")  # the same files: this process may have loaded them
    argvs = [shlex.split(c) for c in doc_commands()]
    refs = {str(ROOT / a) for argv in argvs for flag, a in zip(argv, argv[1:]) if flag == "--plugin"}
    try:
        outputs = run_doc_commands(cwd, doc_commands())
    finally:
        for ref in refs - {TINY_PLUGIN}:  # the fast tier's tiny CNN stays as the session loaded it
            plugins.unload(ref)
    return cwd, outputs


def test_the_doc_has_the_walk_through():
    commands = doc_commands()
    assert any("--plugin examples/bitdepth_median.py --defense bitdepth_median,jpeg" in c for c in commands)
    assert any("--model" in c and "tiny_cnn[weights=random]" in c for c in commands)


@pytest.mark.slow  # the doc's commands as written: real processes on the real model
def test_the_listing_shows_the_plugins_defense(walked):
    _, outputs = walked
    listing = next(out for cmd, out in outputs.items() if cmd.startswith("hbbench list"))
    assert "bitdepth_median" in listing and "(plugin " in listing and "params: bits=4, window=3" in listing


@pytest.mark.slow  # the doc's commands as written: real processes on the real model
def test_the_checks_flag_the_masked_gradient_as_the_doc_says(walked):
    cwd, _ = walked
    checks = pd.read_csv(cwd / "results" / "plugin-defense" / "checks.csv")
    row = checks[(checks.check == "zero_gradient") & (checks.defense == "bitdepth_median")
                 & (checks.threat_model == "adaptive")]
    assert row.status.tolist() == ["fail"]
    summary = pd.read_csv(cwd / "results" / "plugin-defense" / "summary.csv")
    bpda = summary[(summary.attack == "pgd") & (summary.defense == "bitdepth_median") & (summary.threat_model == "bpda")]
    assert bpda.defended_adv_top1.iloc[0] == 0.0


@pytest.mark.slow  # the doc's commands as written: real processes on the real model
def test_the_model_grid_holds_both_models_and_the_report_compares_them(walked):
    cwd, outputs = walked
    run = cwd / "results" / "plugin-models"
    summary = pd.read_csv(run / "summary.csv")
    assert set(summary.model) == {"efficientnet_lite0", "tiny_cnn[weights=random]"}
    assert (summary[summary.model.str.startswith("tiny_cnn")].clean_top1 == 0).all()
    report = (run / "report.md").read_text()
    assert "tiny_cnn[weights=random]" in report and "efficientnet_lite0" in report
    # as the doc says: a comparison (table and scatter) first, then each model's own sections
    assert report.index("## Models compared") < report.index("## Model: efficientnet_lite0") \
        < report.index("## Model: tiny_cnn[weights=random]")
    # and model_sanity fails for the untrained model alone, said before everything else
    checks = pd.read_csv(run / "checks.csv")
    sanity = checks[checks.check == "model_sanity"]
    assert dict(zip(sanity.model, sanity.status)) == {"efficientnet_lite0": "pass", "tiny_cnn[weights=random]": "fail"}
    line = ("unverified: the model tiny_cnn[weights=random] does not classify these images (clean top-1 0.00 on 4 "
            "images); check its weights, its normalisation and the dataset's class indices")
    assert line in " ".join(DOC.read_text().split())
    assert report.index("> " + line) < report.index("Run plugin-models")
    printed = next(out for cmd, out in outputs.items() if cmd.startswith("hbbench sweep") and "plugin-models" in cmd)
    assert line in printed.splitlines()
    assert (run / "report_files" / "models_compared.png").is_file()
