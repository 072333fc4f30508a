"""TotalVarMin in PyTorch (`tvm`) against ART's (`tvm_art`): the same mask from the same seed, the
same images and defended predictions; a finite gradient that tracks finite differences and is not
BPDA's; an ART attack through it under the adaptive threat model; one-line parameter errors.
ART takes seconds per 224-px image, so the option checks run on 64-px crops."""
import numpy as np
import pytest
import torch
from art.attacks.evasion import FastGradientMethod
from art.defences.preprocessor import TotalVarMin

from hbbench.classifier import with_defenses
from hbbench.defenses import DEFENSES, StraightThrough, attacker_preprocessors, make_defense
from hbbench.defenses.tvm import TotalVarMinART, TotalVarMinPyTorch, draw_mask
from hbbench.errors import HBBenchError
from hbbench.execution import seed_everything


def onehot(y):
    return np.eye(1000, dtype=np.float32)[y]


def run(defense, x, seed=0):
    seed_everything(seed, "tvm-test")
    return defense(x)[0]


@pytest.fixture(scope="module")
def outputs(classifier, data4):
    """Both implementations on two embedded images, each from the same seed."""
    return {name: run(make_defense(name, classifier), data4.x[:2]) for name in ("tvm_art", "tvm")}


def test_registered_with_arts_defaults():
    art = TotalVarMin()
    for name in ("tvm", "tvm_art"):
        assert DEFENSES.resolve(name)[0].params == dict(prob=art.prob, lamb=art.lamb, max_iter=art.max_iter,
                                                        norm=art.norm)


def test_mask_is_the_one_art_draws(monkeypatch, data4):
    masks = []
    monkeypatch.setattr(TotalVarMin, "_minimize", lambda self, x, mask: masks.append(mask) or x)
    np.random.seed(5)
    TotalVarMinART(prob=0.3)(data4.x[:2])
    np.random.seed(5)
    ours = draw_mask(data4.x[:2].shape, 0.3)
    np.testing.assert_array_equal(np.stack(masks).transpose(0, 3, 1, 2), ours)
    assert 0.29 < ours.mean() < 0.31


def test_art_wrapper_solves_per_channel(data4):
    """TotalVarMinART gives ART channels-last images: each output channel depends on its own
    input channel only (ART fed NCHW would mix colours)."""
    x = data4.x[:1, :, :32, :32].copy()
    base = run(TotalVarMinART(), x)
    x[:, 0] = 1 - x[:, 0]
    flipped = run(TotalVarMinART(), x)
    np.testing.assert_array_equal(base[:, 1:], flipped[:, 1:])
    assert np.abs(base[:, 0] - flipped[:, 0]).mean() > 0.1


def test_same_images_and_predictions_as_art(classifier, data4, outputs):
    x, art, ours = data4.x[:2], outputs["tvm_art"], outputs["tvm"]
    assert np.abs(art - x).mean() > 0.02, "the defense should change the images"
    diff = np.abs(ours - art)
    assert diff.mean() < 1e-5 and diff.max() < 1e-3, (diff.mean(), diff.max())
    np.testing.assert_array_equal(classifier.predict(ours).argmax(1), classifier.predict(art).argmax(1))


@pytest.mark.parametrize("params", [dict(norm=1), dict(max_iter=15, lamb=1.0), dict(prob=1.0, max_iter=3)],
                         ids=["norm1", "more-iterations-than-memory", "prob1"])
def test_options_match_art_on_crops(data4, params):
    x = data4.x[:2, :, :64, :64]
    art = run(TotalVarMinART(clip_values=(0.0, 1.0), **params), x)
    ours = run(TotalVarMinPyTorch(clip_values=(0.0, 1.0), **params), x)
    assert np.abs(art - x).mean() > 0.005
    assert np.abs(ours - art).mean() < 1e-4


def test_seeded_like_art(data4):
    x, d = data4.x[:1, :, :64, :64], TotalVarMinPyTorch()
    np.testing.assert_array_equal(run(d, x, seed=1), run(d, x, seed=1))
    assert np.abs(run(d, x, seed=1) - run(d, x, seed=2)).mean() > 1e-3


def test_gradient_tracks_finite_differences(data4):
    """Autograd holds the line search's step lengths constant (defenses/tvm.py); central differences
    also see the step lengths move, so directional derivatives agree only to a few percent."""
    x = torch.from_numpy(data4.x[:1, :, :64, :64]).double()
    d = TotalVarMinPyTorch(clip_values=(0.0, 1.0))
    np.random.seed(0)
    mask = torch.from_numpy(draw_mask(x.shape, d.prob))
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    (d.minimize(xr, mask) * w).sum().backward()
    assert torch.isfinite(xr.grad).all() and xr.grad.abs().sum() > 0
    ad, fd = [], []
    for _ in range(5):
        u = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            fd.append(float(((d.minimize(x + 1e-6 * u, mask) - d.minimize(x - 1e-6 * u, mask)) * w).sum() / 2e-6))
        ad.append(float((xr.grad * u).sum()))
    ad, fd = np.array(ad), np.array(fd)
    assert np.abs(ad - fd).sum() < 0.1 * np.abs(fd).sum(), (ad, fd)


def test_adaptive_gradient_is_not_bpda(classifier, data4):
    x, y = data4.x[:1], data4.y[:1]
    tvm = make_defense("tvm", classifier)
    seed_everything(0)
    g = with_defenses(classifier, [tvm]).loss_gradient(x, onehot(y))
    seed_everything(0)
    g_bpda = with_defenses(classifier, [StraightThrough(tvm)]).loss_gradient(x, onehot(y))
    assert np.isfinite(g).all() and np.abs(g).mean() > 0
    assert np.abs(g - g_bpda).mean() > 0.1 * np.abs(g_bpda).mean()


def test_adaptive_fgsm_through_tvm(classifier, data4):
    """ART's FGSM differentiates through tvm (label 'true') and moves the defended predictions."""
    x, y = data4.x[:1], data4.y[:1]
    tvm = make_defense("tvm", classifier)
    pre, label = attacker_preprocessors(tvm, "adaptive")
    assert label == "true" and pre == [tvm]
    seed_everything(1)
    xa = FastGradientMethod(with_defenses(classifier, pre), eps=4 / 255, batch_size=1).generate(x, y=y)
    defended, idx = with_defenses(classifier, [tvm]), np.arange(len(y))
    seed_everything(0)
    clean = defended.predict(x)
    seed_everything(0)
    adv = defended.predict(xa)
    assert clean.argmax(1)[0] == y[0] and adv.argmax(1)[0] != y[0]
    assert adv[idx, y].mean() < clean[idx, y].mean() - 1.0, "the true class's logit should drop"


def test_bad_input_shape():
    with pytest.raises(HBBenchError, match=r"tvm input x must be \(N, C, H, W\)"):
        TotalVarMinPyTorch().forward(torch.zeros(3, 8, 8))


@pytest.mark.parametrize("name", ["tvm", "tvm_art"])
@pytest.mark.parametrize("params, message", [
    (dict(prob=0.0), r"prob must be in \(0, 1\], got 0.0"),
    (dict(prob=1.5), r"prob must be in \(0, 1\], got 1.5"),
    (dict(max_iter=0), "max_iter must be an integer >= 1, got 0"),
    (dict(lamb=-0.5), "lamb must be a finite number >= 0, got -0.5"),
    (dict(norm=3), "norm must be 1 or 2, got 3"),
])
def test_bad_parameters(classifier, name, params, message):
    with pytest.raises(HBBenchError, match=f"^{name} {message}$"):
        make_defense(name, classifier, **params)
