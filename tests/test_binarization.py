"""The binarization test (Zimmermann et al. 2022) on real ART attacks over the embedded images: PGD finds
the adversarial example that provably exists on the undefended model and through JPEG under BPDA, and
cannot through the rounding defense under adaptive (its gradient is zero)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hbbench.checks import binarization as B
from hbbench.api import sweep
from tests.test_checks import planted_defense  # noqa: F401  (the rounding defense fixture)

pytestmark = pytest.mark.slow


def test_binarization_passes_honest_attacks_and_fails_masked_gradients(tmp_path, planted_defense):  # noqa: F811
    sweep(dict(attacks=["pgd[max_iter=5]"], defenses=["jpeg", planted_defense], threat_models=["bpda", "adaptive"],
               n=2), out=tmp_path, run="r", checks="binarization", check_samples=2)
    t = pd.read_csv(tmp_path / "r" / "checks.csv")
    got = {(r.defense, r.threat_model): (r.status, r.numbers) for r in t[t.check == "binarization"].itertuples()}
    assert got[("none", "bpda")][0] == "pass", got
    assert got[("jpeg", "bpda")][0] == "pass", got
    assert got[(planted_defense, "bpda")][0] == "pass", got  # the identity gradient passes the rounding
    assert got[(planted_defense, "adaptive")][0] == "fail", got
    assert "conclusive" in got[(planted_defense, "adaptive")][1]


def test_binary_readout_replaces_the_last_layer(model):
    head = B.last_linear(model.module, model.num_classes)
    assert head is not None and head.out_features == 1000
    x = torch.rand(2, 3, 224, 224)
    w = np.random.default_rng(0).normal(size=head.in_features).astype(np.float32)
    logits = B.Binary(model.module, head, w, 0.5)(x)
    score = B.features(model.module, head, x) @ torch.from_numpy(w) + 0.5
    torch.testing.assert_close(logits, torch.stack([-score / 2, score / 2], 1))
