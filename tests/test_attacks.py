"""Every ART preset runs on real images and respects its budget; PGD breaks the embedded model."""
import numpy as np
import pytest

from art.attacks import evasion as E

from hbbench.attacks import ATTACKS, attack_norm, has_budget, make_attack
from hbbench.attacks.cw_torch import CarliniWagnerL2Torch
from tests.conftest import top1

EPS = 4 / 255
# Small iteration counts keep the suite fast; the presets' own defaults are used by sweeps.
FAST = {"apgd": {"max_iter": 3}, "autoattack": {}, "square": {"max_iter": 5}, "cw": {"max_iter": 3},
        "cw_art": {"max_iter": 2}, "cw_linf": {"max_iter": 2}, "deepfool": {"max_iter": 3},
        "hopskipjump": {"max_iter": 1, "max_eval": 20, "init_eval": 5, "init_size": 5}}


# Attacks whose ART object has no `norm` attribute: the norm their algorithm minimises or bounds.
NORM_OF_CLASS = {E.CarliniL2Method: "2", CarliniWagnerL2Torch: "2", E.CarliniLInfMethod: "inf", E.DeepFool: "2"}
EXPECTED_PRESETS = {"fgsm", "pgd", "bim", "cw", "cw_art", "cw_linf", "deepfool", "apgd", "autoattack", "square",
                    "hopskipjump"}


def test_the_documented_presets_are_registered():
    assert EXPECTED_PRESETS <= set(ATTACKS.names())


def _art_norm(attack) -> str:
    norm = getattr(attack, "norm", None)
    if norm is None:
        return NORM_OF_CLASS[type(attack)]
    return "inf" if np.isinf(float(norm)) else str(int(norm))


@pytest.mark.parametrize("name", ATTACKS.names())
def test_declared_norm_and_budget_match_the_art_attack(name, classifier):
    """What summary.csv's `norm` column and the --eps sweep read (the registration) is what the ART
    object really does; a preset with a norm parameter is checked at both values."""
    attack = make_attack(name, classifier)
    assert attack_norm(name) == _art_norm(attack)
    assert has_budget(name) == ("eps" in type(attack).attack_params)
    if "norm" in ATTACKS.resolve(name)[0].params:
        other = "2" if attack_norm(name) == "inf" else "inf"
        assert attack_norm(name, {"norm": other}) == _art_norm(make_attack(name, classifier, norm=other)) == other


def test_cw_linf_rows_say_norm_inf():
    from hbbench.runner import describe
    from hbbench.grid import expand
    from hbbench.spec import SweepSpec

    cells = expand(SweepSpec(attacks=["cw_linf", "pgd[norm=2]", "cw"], defenses=["none"], threat_models=["oblivious"]))
    assert [describe(c)["norm"] for c in cells] == ["inf", "2", "2"]


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
        norm = attack_norm(name)
        size = np.abs(delta).max(1) if norm == "inf" else np.linalg.norm(delta, axis=1)
        assert (size <= EPS + 1e-6).all()


def test_unknown_attack_parameter_is_refused(classifier):
    from hbbench.errors import HBBenchError

    with pytest.raises(HBBenchError, match="max_iters"):
        make_attack("pgd", classifier, max_iters=3)
