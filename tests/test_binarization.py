"""The binarization test (Zimmermann et al. 2022) on real ART attacks: PGD finds the adversarial example
that provably exists on the undefended model and through JPEG under BPDA, and cannot through the
rounding defense under adaptive (its gradient is zero). On the tiny CNN and its own labelled images
(fast tier) and on EfficientNet-Lite0 over the embedded images (slow tier): ``on``, tests/conftest.py."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hbbench.checks import binarization as B
from hbbench.api import sweep
from tests.conftest import tiny_cnn


def test_binarization_passes_honest_attacks_and_fails_masked_gradients(tmp_path, on, planted_defense):
    # an honest defense under BPDA: JPEG on the real model; on the tiny CNN JPEG (as blur) leaves no image where
    # the binary readout separates its points (the check is "not run"), so feature squeezing stands in (the
    # median filter passes too, at 5x the time)
    honest = "squeeze" if on else "jpeg"
    sweep(dict(on, attacks=["pgd[max_iter=5]"], defenses=[honest, planted_defense], threat_models=["bpda", "adaptive"],
               n=2), out=tmp_path, run="r", checks="binarization", check_samples=2)
    t = pd.read_csv(tmp_path / "r" / "checks.csv")
    got = {(r.defense, r.threat_model): (r.status, r.numbers) for r in t[t.check == "binarization"].itertuples()}
    assert got[("none", "bpda")][0] == "pass", got
    assert got[(honest, "bpda")][0] == "pass", got
    assert got[(planted_defense, "bpda")][0] == "pass", got  # the identity gradient passes the rounding
    assert got[(planted_defense, "adaptive")][0] == "fail", got
    assert "conclusive" in got[(planted_defense, "adaptive")][1]


@pytest.mark.parametrize("net", ["tiny", pytest.param("efficientnet", marks=pytest.mark.slow)])
def test_binary_readout_replaces_the_last_layer(net, tiny_classifier, request):
    model = tiny_cnn() if net == "tiny" else request.getfixturevalue("model")
    head = B.last_linear(model.module, model.num_classes)
    assert head is not None and head.out_features == 1000
    x = torch.rand(2, 3, 224, 224)
    w = np.random.default_rng(0).normal(size=head.in_features).astype(np.float32)
    logits = B.Binary(model.module, head, w, 0.5)(x)
    score = B.features(model.module, head, x) @ torch.from_numpy(w) + 0.5
    torch.testing.assert_close(logits, torch.stack([-score / 2, score / 2], 1))
