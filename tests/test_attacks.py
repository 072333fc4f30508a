"""Every ART preset runs on real images and respects its budget; PGD breaks the embedded model."""
import numpy as np
import pytest

from hbbench.attacks import ATTACKS, has_budget, make_attack
from tests.conftest import top1

EPS = 4 / 255
# Small iteration counts keep the suite fast; the presets' own defaults are used by sweeps.
FAST = {"apgd": {"max_iter": 3}, "autoattack": {}, "square": {"max_iter": 5}, "cw": {"max_iter": 3},
        "cw_art": {"max_iter": 2}, "cw_linf": {"max_iter": 2}, "deepfool": {"max_iter": 3},
        "hopskipjump": {"max_iter": 1, "max_eval": 20, "init_eval": 5, "init_size": 5}}


def test_at_least_ten_presets():
    assert len(ATTACKS.names()) >= 10


def test_pgd_breaks_the_embedded_model(classifier, data4):
    np.random.seed(0)
    x_adv = make_attack("pgd", classifier, eps=EPS).generate(data4.x, y=data4.y)
    assert top1(classifier, data4.x, data4.y) >= 0.75
    assert top1(classifier, x_adv, data4.y) <= 0.1


@pytest.mark.parametrize("name", [n for n in ATTACKS.names() if n != "autoattack"])
def test_attack_respects_budget_and_clip_range(name, classifier, data4):
    x, y = data4.x[:2], data4.y[:2]
    np.random.seed(0)
    params = dict(FAST.get(name, {}))
    if has_budget(name):
        params["eps"] = EPS
    x_adv = make_attack(name, classifier, **params).generate(x, y=y)
    assert x_adv.shape == x.shape
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    delta = (x_adv - x).reshape(len(x), -1)
    assert np.abs(delta).max() > 0, f"{name} changed nothing"
    if has_budget(name):
        norm = ATTACKS.resolve(name)[0].params.get("norm", "inf")
        size = np.abs(delta).max(1) if norm == "inf" else np.linalg.norm(delta, axis=1)
        assert (size <= EPS + 1e-6).all()


def test_unknown_attack_parameter_is_refused(classifier):
    from hbbench.errors import HBBenchError

    with pytest.raises(HBBenchError, match="max_iters"):
        make_attack("pgd", classifier, max_iters=3)
