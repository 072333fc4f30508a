"""Every ART preset runs on real images and respects its budget; PGD breaks the embedded model."""
import numpy as np
import pytest

from art.attacks import evasion as E

from hbbench.attacks import ATTACKS, attack_norm, has_budget, make_attack
from hbbench.attacks.cw_torch import CarliniWagnerL2Torch
from tests.conftest import top1

EPS = 4 / 255
# Small iteration counts keep the suite fast; the presets' own defaults are used by sweeps.
FAST = {"apgd": {"max_iter": 3}, "autoattack": {"n_iter": 2, "n_target_classes": 1, "n_queries": 5},
        "autoattack_art": {"max_iter": 2, "nb_random_init": 1, "square_max_iter": 5},
        "square": {"max_iter": 5}, "cw": {"max_iter": 3},
        "cw_art": {"max_iter": 2}, "cw_linf": {"max_iter": 2, "initial_const": 1.0, "largest_const": 4.0},
        "deepfool": {"max_iter": 3, "nb_grads": 3},
        "hopskipjump": {"max_iter": 1, "max_eval": 20, "init_eval": 5, "init_size": 5},
        "hsj_eps": {"max_iter": 1, "max_eval": 20, "init_eval": 5, "init_size": 5},
        "transfer_pgd": {"surrogate": "efficientnet_lite0", "max_iter": 3}}
REQUIRED = {"transfer_pgd": {"surrogate": "efficientnet_lite0"}}  # parameters a preset cannot do without
# hsj_eps returns the clean image where HopSkipJump's example lies beyond eps: nothing changed is a result
MAY_LEAVE_UNCHANGED = {"hsj_eps"}


# Attacks whose ART object has no `norm` attribute: the norm their algorithm minimises or bounds.
NORM_OF_CLASS = {E.CarliniL2Method: "2", CarliniWagnerL2Torch: "2", E.CarliniLInfMethod: "inf", E.DeepFool: "2"}
EXPECTED_PRESETS = {"fgsm", "pgd", "bim", "cw", "cw_art", "cw_linf", "deepfool", "apgd", "autoattack", "autoattack_art",
                    "square", "hopskipjump"}


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
    attack = make_attack(name, classifier, **REQUIRED.get(name, {}))
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


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_respects_budget_and_clip_range(name, classifier, data4):
    x, y = data4.x[:1], data4.y[:1]  # one image the model gets right: the contract is per image
    np.random.seed(0)
    params = dict(FAST.get(name, {}))
    if has_budget(name):
        params["eps"] = EPS
    x_adv = make_attack(name, classifier, **params).generate(x, y=y)
    assert x_adv.shape == x.shape
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    delta = (x_adv - x).reshape(len(x), -1)
    assert np.abs(delta).max() > 0 or name in MAY_LEAVE_UNCHANGED, f"{name} changed nothing"
    if has_budget(name):
        norm = attack_norm(name)
        size = np.abs(delta).max(1) if norm == "inf" else np.linalg.norm(delta, axis=1)
        assert (size <= EPS + 1e-6).all()


def test_unknown_attack_parameter_is_refused(classifier):
    from hbbench.errors import HBBenchError

    with pytest.raises(HBBenchError, match="max_iters"):
        make_attack("pgd", classifier, max_iters=3)


# --- AutoAttack: the authors' standard and rand versions (hbbench.attacks.autoattack_torch) -----------------

def test_autoattack_defaults_are_the_authors_standard_version(classifier):
    """The preset's defaults are AutoAttack._set_version('standard')'s, L-inf and L2 (pyautoattack 0.2)."""
    from hbbench.attacks.autoattack_torch import VERSIONS

    attack = make_attack("autoattack", classifier, eps=EPS)
    assert (attack.version, attack.n_iter, attack.n_target_classes, attack.n_queries) == ("standard", 100, 9, 5000)
    assert VERSIONS["standard"] == ("apgd-ce", "apgd-t", "fab-t", "square")
    rand = make_attack("autoattack", classifier, eps=EPS, version="rand")
    assert VERSIONS["rand"] == ("apgd-ce", "apgd-dlr") and rand._eot() == 20


@pytest.fixture(scope="module")
def tiny_clf4():
    """The tiny plugin CNN and four embedded images labelled with its own predictions (all 'right')."""
    from hbbench.classifier import make_classifier
    from hbbench.datasets import load_dataset
    from hbbench.models import load_model
    from hbbench.plugins import load_refs
    from tests.conftest import TINY_PLUGIN

    load_refs([TINY_PLUGIN])
    clf = make_classifier(load_model("tiny_cnn", weights="random"), device="cpu")
    x = load_dataset("imagenet-samples", n=4).x
    return clf, x, clf.predict(x).argmax(1)


@pytest.mark.parametrize("version", ["standard", "rand"])
def test_autoattack_versions_run_each_attack_on_what_is_left(version, tiny_clf4):
    """Small budgets on the tiny CNN: every attack of the version reports how many images it left robust,
    the counts never grow, the examples stay in the ball and the pixel range, and the robust ones are
    returned unchanged."""
    from hbbench.attacks.autoattack_torch import VERSIONS

    clf, x, y = tiny_clf4
    np.random.seed(0)
    for eps in (0.1 / 255, EPS):
        attack = make_attack("autoattack", clf, eps=eps, version=version, n_iter=3, n_target_classes=2, n_queries=5,
                             eot_iter=2)
        x_adv = attack.generate(x, y=y)
        counts = list(attack.robust_after.values())
        assert list(attack.robust_after) == ["clean", *VERSIONS[version]]
        assert counts == sorted(counts, reverse=True) and counts[0] == 4
        robust = clf.predict(x_adv).argmax(1) == y
        assert robust.sum() == counts[-1]
        delta = np.abs(x_adv - x).reshape(len(x), -1).max(1)
        assert (delta <= eps + 1e-6).all() and x_adv.min() >= 0 and x_adv.max() <= 1
        assert (delta[robust] == 0).all()
    assert counts[-1] == 0, "AutoAttack at 4/255 leaves the untrained CNN robust"


def test_autoattack_l2(tiny_clf4):
    clf, x, y = tiny_clf4
    np.random.seed(0)
    x_adv = make_attack("autoattack", clf, eps=2.0, norm="2", n_iter=3, n_target_classes=1, n_queries=5).generate(x, y=y)
    assert (np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1) <= 2.0 + 1e-4).all()
    assert (clf.predict(x_adv).argmax(1) != y).any()


def test_autoattack_refuses_an_unknown_version(classifier):
    from hbbench.errors import HBBenchError

    with pytest.raises(HBBenchError, match="version"):
        make_attack("autoattack", classifier, version="plus")


def test_fab_projections_and_dlr_match_the_authors_code():
    """FAB's projections onto a hyperplane within the box and the (targeted) DLR losses are the authors'
    (pyautoattack, the bench extra; skipped without it)."""
    pytest.importorskip("pyautoattack")
    import torch
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
    from pyautoattack.fab_projections import projection_l2, projection_linf

    from hbbench.attacks import autoattack_torch as aa

    g = torch.Generator().manual_seed(0)
    t, w, b = torch.rand(6, 50, generator=g), torch.randn(6, 50, generator=g), torch.randn(6, generator=g)
    assert torch.allclose(aa._projection_linf(t, w, b), projection_linf(t, w, b))
    assert torch.allclose(aa._projection_l2(t, w, b), projection_l2(t, w, b))
    z, y, target = torch.randn(6, 10, generator=g), torch.arange(6), torch.arange(6) + 2
    reference = APGDAttack(lambda v: v, eps=0.1)
    assert torch.allclose(aa._dlr(z, y), reference.dlr_loss(z, y))
    targeted = APGDAttack_targeted(lambda v: v, eps=0.1)
    targeted.y_target = target
    assert torch.allclose(aa._dlr(z, y, target), targeted.dlr_loss_targeted(z, y))
