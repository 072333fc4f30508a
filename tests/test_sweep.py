"""A real sweep end to end: ART attacks on embedded images, the summary contract, resume. On the tiny CNN
and its own labelled images (fast tier) and on EfficientNet-Lite0 (slow tier)."""
import json

import numpy as np
import pandas as pd
import pytest

from hbbench.aggregate import COLUMNS
from hbbench.spec import SweepSpec
from hbbench.api import sweep


@pytest.fixture(scope="module", params=["tiny", pytest.param("efficientnet", marks=pytest.mark.slow)])
def small_run(request, tmp_path_factory, tiny):
    out = tmp_path_factory.mktemp("results")
    model = {k: tiny[k] for k in ("models", "plugins", "dataset", "device")} if request.param == "tiny" else {}
    spec = SweepSpec(attacks=["fgsm", "pgd[max_iter=5]"], defenses=["jpeg"], n=3, batch_size=2, **model)
    table = sweep(spec, out=out, run="small")
    return out / "small", spec, table


def test_summary_has_contract_columns_for_every_cell(small_run):
    run_dir, spec, table = small_run
    csv = pd.read_csv(run_dir / "summary.csv")
    assert list(csv.columns[: len(COLUMNS)]) == COLUMNS
    grid, worst = csv[csv.attack != "worst_case"], csv[csv.attack == "worst_case"]
    assert len(grid) == 2 * 2 * 2  # attacks x {none, jpeg} x {oblivious, bpda}
    assert set(grid["defense"]) == {"none", "jpeg"} and set(grid["threat_model"]) == {"oblivious", "bpda"}
    assert (csv["n"] == 3).all()
    # then one worst-case row per defense x threat model at the one budget, over both attacks
    assert sorted(zip(worst.defense, worst.threat_model)) == sorted(zip(grid.defense, grid.threat_model))[::2]
    md = (run_dir / "summary.md").read_text()  # the table, after the random-weights note of an untrained model
    assert md.startswith("| attack") or (md.startswith("> ") and "random weights" in md.splitlines()[0]
                                         and md.split("\n\n", 1)[1].startswith("| attack"))
    tex = (run_dir / "summary.tex").read_text()
    assert tex.startswith("\\begin{tabular}") and tex.count("\\\\\n") == len(csv) + 1  # header + one row per cell
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["spec"]["n"] == 3
    assert manifest["versions"]["adversarial-robustness-toolbox"]


def test_summary_numbers_follow_from_per_sample_records(small_run):
    run_dir, _, table = small_run
    for row in table[table.attack != "worst_case"].itertuples():
        rec = pd.read_parquet(run_dir / "cells" / f"{row.cell_id}.parquet")
        assert len(rec) == 3
        assert row.defended_adv_top1 == pytest.approx((rec.def_adv_pred == rec.label).mean())
        assert row.mrr == pytest.approx((1 / rec.def_adv_true_rank).mean())
        assert row.linf <= 4 / 255 + 1e-6
        assert 0.0 <= row.ndcg <= 1.0


def test_none_rows_agree_across_threat_models_and_attack_hurts(small_run):
    _, _, table = small_run
    table = table[table.attack != "worst_case"]
    none = table[(table.defense == "none") & (table.attack == "pgd[max_iter=5]")]
    assert none.defended_adv_top1.nunique() == 1
    assert none.adv_top1.iloc[0] < none.clean_top1.iloc[0]
    oblivious_jpeg = table[(table.defense == "jpeg") & (table.threat_model == "oblivious")]
    # oblivious: the attack ignored JPEG, so the undefended model sees the same adversarial examples
    assert (oblivious_jpeg.adv_top1.to_numpy() == table[(table.defense == "none") &
            (table.threat_model == "oblivious")].adv_top1.to_numpy()).all()
    assert set(table.attack_gradient) >= {"identity (BPDA)", "none (attack ignores defense)"}


def test_resume_recomputes_nothing(small_run):
    run_dir, spec, table = small_run
    stamps = {p.name: p.stat().st_mtime_ns for p in (run_dir / "cells").iterdir()}
    again = sweep(spec, out=run_dir.parent, run="small")
    assert {p.name: p.stat().st_mtime_ns for p in (run_dir / "cells").iterdir()} == stamps
    pd.testing.assert_frame_equal(again, table)


def test_changed_spec_is_refused_with_the_difference(small_run):
    from hbbench.errors import HBBenchError

    run_dir, spec, _ = small_run
    other = SweepSpec(attacks=["fgsm"], defenses=["jpeg"], n=4, batch_size=2)
    with pytest.raises(HBBenchError, match=r"n: 3 -> 4"):
        sweep(other, out=run_dir.parent, run="small")


def test_same_seed_same_numbers(tmp_path, small_run):
    _, spec, table = small_run
    again = sweep(spec, out=tmp_path, run="again")
    cols = [c for c in table.columns if not c.endswith("_seconds") and c != "seconds_per_image"]
    pd.testing.assert_frame_equal(again[cols], table[cols])
    assert np.isfinite(table[table.attack != "worst_case"].attack_seconds).all()
