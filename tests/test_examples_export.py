"""Adversarial examples travel with the run (issue 29): the sweep stores them sealed beside each cell's
records, `hbbench export` writes them into one portable .npz, `hbbench recheck` audits the file and
scores it again (reproducing summary.csv's top-1s exactly), tampering is caught and named, and the
report draws its panels from the stored examples (or says why there are none).

The fast tier: the example plugin's untrained CNN on three embedded images labelled with its own
predictions (clean top-1 1.0, so the attacks have something to flip)."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from hbbench.api import sweep
from hbbench.cli import main
from hbbench.datasets import load_dataset
from hbbench.export import load
from hbbench.recheck import recheck
from hbbench.report import build_report
from hbbench.spec import SweepSpec
from tests.conftest import TINY_MODEL, tiny_cnn

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = str(ROOT / "examples" / "tiny_cnn.py")
MODEL = TINY_MODEL


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def labelled(tiny_data) -> str:
    """'npz:PATH': embedded ImageNet images labelled with the tiny CNN's own predictions (tests/conftest.py;
    the tests take the first three)."""
    return tiny_data


def _spec(data: str, **kw) -> SweepSpec:
    return SweepSpec(**{**dict(attacks=["fgsm", "pgd[max_iter=3]"], defenses=["jpeg"], models=[MODEL], dataset=data,
                                eps=["4/255"], threat_models=["oblivious", "bpda"], n=3, batch_size=2, shard_size=2,
                                device="cpu", plugins=[PLUGIN]), **kw})


@pytest.fixture(scope="module")
def run(tmp_path_factory, labelled) -> Path:
    """Every image's examples stored, over two shards (3 images, shard size 2), merged per cell."""
    out = tmp_path_factory.mktemp("results")
    sweep(_spec(labelled), out=out, run="all", checks="none", save_examples="all", command="test")
    return out / "all"


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("export") / "run.npz"
    code, out = cli("export", run, "--out", path)
    assert code == 0, out
    return path


def test_each_cell_stores_its_examples_as_crafted_and_sealed(run, labelled):
    summary = pd.read_csv(run / "summary.csv")
    clean = load_dataset(labelled, n=3).x
    for cell_id in summary.cell_id[summary.attack != "worst_case"]:
        with np.load(run / "cells" / f"{cell_id}.examples.npz", allow_pickle=False) as z:
            sample, x_adv = z["sample"], z["x_adv"]
        assert x_adv.dtype == np.float32 and list(sample) == [0, 1, 2]  # both shards, merged in order
        records = pd.read_parquet(run / "cells" / f"{cell_id}.parquet")
        linf = np.abs(x_adv - clean[sample]).reshape(3, -1).max(axis=1)
        np.testing.assert_allclose(records.linf.to_numpy(), linf, rtol=1e-6)  # the very arrays the run scored
        seal = json.loads((run / "cells" / f"{cell_id}.json").read_text())["integrity"]
        assert seal["examples"] == 3 and len(seal["examples_sha256"]) == 64
    assert not list(run.glob("cells/*.shards"))


def test_export_then_recheck_reproduces_every_top1_of_summary_csv(run, exported):
    arrays = np.load(exported, allow_pickle=False)  # NumPy alone reads it: no pickle, no hbbench
    summary = pd.read_csv(run / "summary.csv")
    cells = summary[summary.attack != "worst_case"]
    assert set(arrays["cell_cell_id"]) == set(cells.cell_id) and len(arrays["x_adv"]) == 3 * len(cells)
    assert {"label", "image_id", "cell_eps", "cell_norm", "cell_threat_model", "cell_defense", "manifest"} <= \
        set(arrays.files)
    code, out = cli("recheck", exported, "--plugin", PLUGIN, "--model", MODEL)
    assert code == 0, out
    assert "every recomputed top-1 equals the run's" in out
    checks = recheck(exported, plugins=[PLUGIN])
    top1 = dict(zip(cells.cell_id, cells.defended_adv_top1))
    for c, cell_id in zip(checks, arrays["cell_cell_id"]):
        assert c.exported == c.n == 3 and not c.audit and not c.flips and not c.noise
        assert c.top1_recomputed == c.top1_summary == top1[cell_id]  # exactly
    assert {c.top1_summary for c in checks} != {1.0}  # the attacks flipped something: not a trivial agreement


def _tampered(exported: Path, tmp_path: Path, edit) -> Path:
    arrays = dict(load(exported))
    edit(arrays)
    path = tmp_path / "tampered.npz"
    np.savez(path, **arrays)
    return path


def test_an_example_moved_outside_its_eps_ball_is_named(exported, tmp_path):
    def push(arrays):
        x = arrays["x_adv"].copy()
        x[4, 0, 10, 10] = 0.0 if x[4, 0, 10, 10] > 0.5 else 1.0  # one pixel far beyond 4/255
        arrays["x_adv"] = x
    path = _tampered(exported, tmp_path, push)
    sample, image = int(load(path)["sample"][4]), load(path)["image_id"][4]
    code, out = cli("recheck", path, "--plugin", PLUGIN)
    assert code == 1
    assert re.search(rf"audit: #{sample} \({re.escape(str(image))}\): outside its eps-ball: L-inf [0-9.]+ > eps 4/255",
                     out), out


def test_a_changed_label_is_named(exported, tmp_path):
    def relabel(arrays):
        y = arrays["label"].copy()
        y[2] = (y[2] + 1) % 1000
        arrays["label"] = y
    path = _tampered(exported, tmp_path, relabel)
    arrays = load(path)
    code, out = cli("recheck", path, "--plugin", PLUGIN)
    assert code == 1
    assert f"#{int(arrays['sample'][2])} ({arrays['image_id'][2]}): label {int(arrays['label'][2])} in the export" in out


def test_a_changed_stored_prediction_is_a_disagreement(exported, tmp_path):
    """The run's recorded top-1 of an image far from a decision boundary edited: recheck names the
    image and exits 1 (an image on a boundary would be named as float noise)."""
    def restate(arrays):
        pred = arrays["stored_pred"].copy()
        pred[k] = (pred[k] + 1) % 1000
        arrays["stored_pred"] = pred
    k = int(np.argmax(load(exported)["stored_margin"]))  # the image farthest from a decision boundary
    path = _tampered(exported, tmp_path, restate)
    code, out = cli("recheck", path, "--plugin", PLUGIN)
    assert code == 1 and f"disagrees: #{int(load(path)['sample'][k])} " in out


def test_verify_finds_a_damaged_or_missing_examples_file(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    first, second = sorted(copy.glob("cells/*.examples.npz"))[:2]
    data = bytearray(first.read_bytes())
    data[-100] ^= 0xFF
    first.write_bytes(bytes(data))
    second.unlink()
    code, out = cli("verify", copy)
    assert code == 1
    assert re.search(rf"damaged\s+cells/{first.name}\s+changed after it was written", out), out
    assert re.search(rf"damaged\s+cells/{second.name}\s+missing: its JSON records 3 stored", out), out


def test_save_examples_0_gives_a_report_without_panels_saying_why(tmp_path, labelled):
    sweep(_spec(labelled, attacks=["fgsm"], threat_models=["oblivious"], n=2), out=tmp_path, run="none",
          checks="none", save_examples=0, command="test")
    run = tmp_path / "none"
    assert not list(run.glob("cells/*.examples.npz"))
    _, md = build_report(run, examples=True)
    text = md.read_text()
    assert "examples.png" not in text and "stored no adversarial examples (it was made with --save-examples 0)" in text
    code, out = cli("export", run, "--out", tmp_path / "x.npz")
    assert code == 2 and "--save-examples 0" in out


def test_the_report_draws_panels_from_the_stored_examples(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    _, md = build_report(copy, examples=True)
    text = md.read_text()
    assert "examples.png" in text and "nothing is attacked again" in text
    assert (copy / "report_files" / "examples.png").is_file()


def test_a_defense_cell_stores_the_input_its_network_classified(run):
    """x_defended is what the defense made of each stored example: the tiny CNN's top-1 on it is the
    run's recorded top-1 after the defense, image by image; an undefended cell stores none."""
    from hbbench.classifier import make_classifier

    clf = make_classifier(tiny_cnn(), device="cpu")
    summary = pd.read_csv(run / "summary.csv")
    summary = summary[summary.attack != "worst_case"]
    for cell_id, defense in zip(summary.cell_id, summary.defense):
        with np.load(run / "cells" / f"{cell_id}.examples.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if defense == "none":
            assert "x_defended" not in arrays
            continue
        x_def = arrays["x_defended"]
        assert x_def.dtype == np.float32 and x_def.shape == arrays["x_adv"].shape
        assert not np.array_equal(x_def, arrays["x_adv"])  # JPEG changed them
        records = pd.read_parquet(run / "cells" / f"{cell_id}.parquet").set_index("sample")
        assert list(clf.predict(x_def).argmax(1)) == list(records.loc[arrays["sample"], "def_adv_pred"])


def test_the_defense_panels_show_the_stored_defended_images(run, monkeypatch):
    import hbbench.report.examples as E
    from hbbench.report.data import load_run

    drawn = {}
    monkeypatch.setattr(E.P, "example_panels", lambda rows, columns: drawn.update(rows=rows, columns=columns))
    fig, caption, (threat, base_id, stored) = E.example_figure(load_run(run), 2)
    column = next(c for c in drawn["columns"] if c.startswith("jpeg on adversarial"))
    summary = pd.read_csv(run / "summary.csv")
    cell = summary[(summary.defense == "jpeg") & (summary.threat_model == threat) & (summary.cell_id != base_id)]
    with np.load(run / "cells" / f"{cell.cell_id.iloc[0]}.examples.npz", allow_pickle=False) as z:
        defended = dict(zip(z["sample"].tolist(), z["x_defended"]))
    for row in drawn["rows"]:
        sample = int(row["title"].split(":")[0].lstrip("#"))
        assert np.array_equal(row[column]["img"], defended[sample])
    assert "the input the network classified (what the defense made" in caption


def test_the_report_imports_no_attack_or_runner_code():
    """`grep -rE "runner|attacks" hbbench/report/` finds no import (issue 29)."""
    pattern = re.compile(r"^\s*(from|import)\s.*(runner|attacks|execution|hbbench\.explain\b)")
    for path in (ROOT / "hbbench" / "report").glob("*.py"):
        assert not [line for line in path.read_text().splitlines() if pattern.search(line)], path


def test_save_examples_takes_a_count_or_all(tmp_path):
    code, out = cli("sweep", "--save-examples", "-1", "--out", tmp_path)
    assert code == 2 and "--save-examples takes a count >= 0 or 'all'" in out
