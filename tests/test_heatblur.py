"""Heat-and-Blur: ART integration under the three threat models, BPDA gradient, model hygiene,
determinism, bad input. Tiny batches (2-4 images), one shared model."""

import numpy as np
import pytest
import torch
from art.attacks.evasion import ProjectedGradientDescent

from hbbench.classifier import with_defenses
from hbbench.defenses import DEFENSES, StraightThrough, attacker_preprocessors, make_defense
from hbbench.defenses.heatblur import HeatBlur
from hbbench.errors import HBBenchError


def pgd(clf, eps=4 / 255, iters=3):
    return ProjectedGradientDescent(clf, norm=np.inf, eps=eps, eps_step=eps / 4, max_iter=iters,
                                    num_random_init=0, batch_size=4, verbose=False)


def onehot(y):
    return np.eye(1000, dtype=np.float32)[y]


def model_state(module):
    """Everything HeatBlur must leave as it was: hooks, in-place flags, parameters, modes."""
    hooks = {n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
                 len(getattr(m, "_backward_pre_hooks", {})))
             for n, m in module.named_modules()}
    inplace = {n: m.inplace for n, m in module.named_modules() if hasattr(m, "inplace")}
    params = {n: (p.detach().clone(), p.requires_grad) for n, p in module.named_parameters()}
    attrs = {n: sorted(vars(m)) for n, m in module.named_modules()}
    return hooks, inplace, params, module.training, attrs


def assert_same_state(a, b):
    assert a[0] == b[0], "hooks left on the model"
    assert a[1] == b[1], "in-place flags changed"
    assert a[1] and all(a[1].values()), "expected the model's ReLU6 to be in-place to begin with"
    for n in a[2]:
        assert torch.equal(a[2][n][0], b[2][n][0]) and a[2][n][1] == b[2][n][1], f"parameter {n} changed"
    assert a[3] == b[3]
    assert a[4] == b[4], "attributes added to modules"


@pytest.fixture(scope="module")
def hb(classifier):
    return make_defense("heatblur", classifier)


@pytest.fixture(scope="module")
def x2(data4):
    return data4.x[:2], data4.y[:2]


def test_registered_with_documented_defaults():
    entry, _ = DEFENSES.resolve("heatblur")
    p = entry.params
    assert {"method", "top_k", "sigma", "mode", "create_graph"} <= set(p)
    assert p["create_graph"] is False
    # the defaults docs/heatblur.md argues for from the ablation
    assert (p["method"], p["top_k"], p["mode"], p["sigma"], p["keep_sigma"]) == ("saliency", 3, "inverse", 8.0, 1.0)


@pytest.mark.parametrize("method", ["saliency", "guided_backprop"])  # the default, and the hooked method
def test_defended_output_and_model_hygiene(classifier, x2, method):
    x, _ = x2
    hb = make_defense("heatblur", classifier, method=method)
    before = model_state(classifier.model)
    out, _ = hb(x)
    out2, _ = hb(x)
    assert out.shape == x.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.array_equal(out, out2), "HeatBlur must be deterministic"
    assert not np.allclose(out, x)
    assert_same_state(before, model_state(classifier.model))
    assert hb.last_targets.shape == (2, hb.top_k)


@pytest.mark.parametrize("method, mode", [("saliency", "heatmap"), ("input_x_gradient", "inverse"),
                                          ("gradcam", "heatmap"), ("guided_gradcam", "mask")])
def test_other_methods_and_modes(classifier, data4, method, mode):
    x = data4.x[:1]
    before = model_state(classifier.model)
    d = make_defense("heatblur", classifier, method=method, mode=mode, top_k=2, sigma=0.05, relative=True)
    out, _ = d(x)
    assert out.shape == x.shape and np.isfinite(out).all()
    if mode == "heatmap":  # the blurred grey heatmap itself
        assert np.allclose(out[:, 0], out[:, 1])
    assert_same_state(before, model_state(classifier.model))


def test_lrp_unsupported_model_is_a_clear_error_and_leaves_model_clean(classifier, data4):
    before = model_state(classifier.model)
    d = make_defense("heatblur", classifier, method="lrp")
    with pytest.raises(HBBenchError, match="lrp"):
        d(data4.x[:1])
    assert_same_state(before, model_state(classifier.model))


@pytest.mark.parametrize("params, word", [
    (dict(method="deconv"), "method"),
    (dict(top_k=1001), "top_k"),
    (dict(top_k=0), "top_k"),
    (dict(sigma=0), "sigma"),
    (dict(sigma=-2.0), "sigma"),
    (dict(sigma=2.0, relative=True), "sigma"),
    (dict(mode="paint"), "mode"),
    (dict(keep_sigma=-1.0), "keep_sigma"),
    (dict(method="gradcam", create_graph=True), "create_graph"),
])
def test_bad_parameters(classifier, params, word):
    with pytest.raises(HBBenchError, match=word):
        make_defense("heatblur", classifier, **params)


def test_bad_inputs(hb, data4):
    x = data4.x[:1]
    with pytest.raises(HBBenchError, match="clip range"):
        hb(x * 2.0)
    with pytest.raises(HBBenchError, match="clip range"):
        hb(x - 0.5)
    with pytest.raises(HBBenchError, match=r"input x"):
        hb.forward(torch.from_numpy(x[0]))
    with pytest.raises(HBBenchError, match=r"input x"):
        hb.forward(torch.from_numpy(x[:, :1]))


def test_three_threat_models_run_pgd(classifier, hb, x2):
    x, y = x2[0][:1], x2[1][:1]
    defended = with_defenses(classifier, [hb])
    before = model_state(classifier.model)
    results = {}
    for threat in ("oblivious", "bpda", "adaptive"):
        pre, label = attacker_preprocessors(hb, threat)
        attacker = with_defenses(classifier, pre)
        xa = pgd(attacker, iters=2).generate(x, y=y)
        assert np.abs(xa - x).max() <= 4 / 255 + 1e-6
        assert np.abs(xa - x).max() > 0, f"{threat}: the attack made no step"
        results[threat] = defended.predict(xa)
        assert np.isfinite(results[threat]).all()
    assert isinstance(attacker_preprocessors(hb, "bpda")[0][0], StraightThrough)
    assert attacker_preprocessors(hb, "adaptive")[0][0] is hb
    assert_same_state(before, model_state(classifier.model))


def test_bpda_gradient_is_model_gradient_at_defended_input(classifier, hb, x2):
    x, y = x2
    bpda = with_defenses(classifier, [StraightThrough(hb)])
    g = bpda.loss_gradient(x, onehot(y))
    xd, _ = hb(x)
    # the straight-through value x + (d - x) is d up to float32 rounding; use the very same value so
    # that no ReLU6 gate flips on a rounding difference
    xd = x + (xd - x)
    g_ref = classifier.loss_gradient(xd, onehot(y))
    np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-8)
    assert np.abs(g - classifier.loss_gradient(x, onehot(y))).max() > 1e-6, "must differ from the gradient at x"


def test_adaptive_gradient_flows_through_blur(classifier, hb, x2):
    x, y = x2
    g = with_defenses(classifier, [hb]).loss_gradient(x, onehot(y))
    assert np.isfinite(g).all() and np.abs(g).sum() > 0
    g_bpda = with_defenses(classifier, [StraightThrough(hb)]).loss_gradient(x, onehot(y))
    assert not np.allclose(g, g_bpda), "adaptive gradient should see the blur, BPDA the identity"


def test_create_graph_differentiates_through_heatmap(classifier, data4):
    x, y = data4.x[:1], data4.y[:1]
    before = model_state(classifier.model)
    grads = {}
    for cg in (False, True):
        d = make_defense("heatblur", classifier, method="input_x_gradient", create_graph=cg)
        grads[cg] = with_defenses(classifier, [d]).loss_gradient(x, onehot(y))
        assert np.isfinite(grads[cg]).all()
    assert not np.allclose(grads[False], grads[True]), "double backprop should add the heatmap's gradient"
    assert_same_state(before, model_state(classifier.model))


def test_usable_as_art_preprocessing_defence(classifier, data4):
    """Inside a plain ART PyTorchClassifier (not hbbench's), HeatBlur passes a non-zero gradient to
    the input and an ART attack through it changes the defended prediction."""
    from art.attacks.evasion import FastGradientMethod
    from art.estimators.classification import PyTorchClassifier

    pre = classifier.preprocessing
    hb = HeatBlur(classifier.model, pre.mean.reshape(-1), pre.std.reshape(-1), (0.0, 1.0), num_classes=1000)
    clf = PyTorchClassifier(model=classifier.model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 224, 224),
                            nb_classes=1000, clip_values=(0.0, 1.0), preprocessing=(pre.mean, pre.std),
                            preprocessing_defences=[hb])
    x, y = data4.x[:2], data4.y[:2]
    grad = clf.loss_gradient(x, onehot(y))
    assert np.isfinite(grad).all() and np.abs(grad).reshape(2, -1).max(1).min() > 0
    before = clf.predict(x).argmax(1)
    after = clf.predict(FastGradientMethod(clf, eps=8 / 255).generate(x, y=onehot(y))).argmax(1)
    assert (after != before).any()


def test_defense_helps_against_oblivious_pgd(classifier, hb, data4):
    x, y = data4.x, data4.y
    xa = pgd(classifier, eps=2 / 255, iters=5).generate(x, y=y)
    p_und = classifier.predict(xa)
    p_def = with_defenses(classifier, [hb]).predict(xa)
    idx = np.arange(len(y))
    assert (p_def.argmax(1) == y).mean() > (p_und.argmax(1) == y).mean()
    assert p_def[idx, y].mean() > p_und[idx, y].mean()
