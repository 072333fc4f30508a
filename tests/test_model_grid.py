"""Several models in one grid: cells gain the model dimension, each model's attacks run against it,
the first model's cells are the ones a one-model run gives, and checks stay within a model.

On the example plugin's tiny CNN on its own labelled images (every image right) beside a second tiny CNN
with other random weights (right on none): two models a grid tells apart, at the fast tier's cost."""
import pandas as pd
import pytest
from tests.conftest import TINY_MODEL, TINY_PLUGIN

from hbbench.api import sweep
from hbbench.runner import plan_units
from hbbench.grid import expand
from hbbench.spec import SweepSpec


def grid(models, **kw) -> SweepSpec:
    return SweepSpec(attacks=["fgsm", "pgd[max_iter=3]"], defenses=["jpeg"], models=models, n=3, batch_size=3,
                     threat_models=["oblivious", "bpda"], plugins=[TINY_PLUGIN], device="cpu", **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, other_tiny, tiny_data):
    out = tmp_path_factory.mktemp("models")
    both = sweep(grid([TINY_MODEL, other_tiny], dataset=tiny_data), out=out, run="both")
    one = sweep(grid([TINY_MODEL], dataset=tiny_data), out=out, run="one")
    return out, both, one, other_tiny


def test_one_summary_holds_both_models(runs):
    _, both, _, second = runs
    cells = both[both.attack != "worst_case"]
    assert list(dict.fromkeys(cells.model)) == [TINY_MODEL, second]
    assert len(cells) == 2 * 2 * 2 * 2  # models x attacks x {none, jpeg} x threat models
    worst = both[both.attack == "worst_case"]
    assert set(worst.model) == {TINY_MODEL, second}  # one worst case per model, never mixed
    # the images are labelled by the first network: the other is right on none of them
    assert (cells[cells.model == second].clean_top1 == 0).all()
    assert (cells[cells.model == TINY_MODEL].clean_top1 > 0).all()


def test_the_embedded_models_cells_equal_a_one_model_run(runs):
    _, both, one, _ = runs
    a = both[(both.model == TINY_MODEL) & (both.attack != "worst_case")].set_index("cell_id")
    b = one[one.attack != "worst_case"].set_index("cell_id")
    assert sorted(a.index) == sorted(b.index)  # same cells, same ids
    cols = ["clean_top1", "adv_top1", "defended_clean_top1", "defended_adv_top1", "ndcg", "mrr", "linf"]
    pd.testing.assert_frame_equal(a.loc[b.index, cols], b[cols])


def test_each_model_is_attacked_on_its_own(runs):
    out, both, _, _ = runs
    pgd = both[(both.attack == "pgd[max_iter=3]") & (both.defense == "none") & (both.threat_model == "oblivious")]
    assert len(pgd) == 2
    for cid in pgd.cell_id:  # PGD lowered every image's true-class probability on the model it attacked
        r = pd.read_parquet(out / "both" / "cells" / f"{cid}.parquet")
        assert (r.adv_true_prob < r.clean_true_prob).all()


def test_checks_name_their_model(runs):
    out, _, _, second = runs
    checks = pd.read_csv(out / "both" / "checks.csv")
    assert set(checks.model) == {TINY_MODEL, second}
    sanity = checks[checks.check == "model_sanity"]  # one row per model: only the one right on no image fails
    assert dict(zip(sanity.model, sanity.status)) == {TINY_MODEL: "pass", second: "fail"}


def test_units_run_one_model_after_the_other(other_tiny, tiny_data):
    cells = expand(grid([TINY_MODEL, other_tiny], shard_size=1, dataset=tiny_data))
    units = plan_units(cells, 3, 1, lambda c, k: False)
    models = [u.cells[0].model_key for u in units]
    switches = sum(a != b for a, b in zip(models, models[1:]))
    assert switches == 1  # all of one model's shards, then the other's: each model is loaded once
    assert all(len({c.model_key for c in u.cells}) == 1 for u in units)
