"""The PyTorch Carlini-Wagner L2 against ART's CarliniL2Method on the same images."""
import numpy as np
import pytest

from hbbench.attacks import make_attack
from hbbench.attacks.cw_torch import CarliniWagnerL2Torch


def _success_and_l2(classifier, x, y, x_adv):
    fooled = classifier.predict(x_adv).argmax(1) != y
    l2 = np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1)
    return fooled.mean(), l2[fooled]


def test_matches_art_reference(classifier, data4):
    x, y = data4.x[:2], data4.y[:2]
    ours = make_attack("cw", classifier).generate(x, y=y)
    art = make_attack("cw_art", classifier, max_iter=3).generate(x, y=y)
    s_ours, l2_ours = _success_and_l2(classifier, x, y, ours)
    s_art, l2_art = _success_and_l2(classifier, x, y, art)
    assert s_ours >= s_art and s_ours == 1.0
    # Measured on these 2 images: ours 0.19 mean L2, ART's 0.18 (0.16 and 0.16 on 8 and 3 images). A
    # factor of 2 catches a broken optimiser (lr 0.01 gave 4x) without flaking on optimiser noise.
    assert l2_ours.mean() <= 2 * l2_art.mean()
    assert ours.min() >= 0 and ours.max() <= 1


def test_works_through_a_pytorch_defense_and_rejects_bad_rank(classifier, data4):
    from hbbench.classifier import with_defenses
    from hbbench.defenses.blur import GaussianBlur
    from hbbench.defenses.threat import StraightThrough

    defended = with_defenses(classifier, [StraightThrough(GaussianBlur(1.0))])
    x_adv = CarliniWagnerL2Torch(defended, binary_search_steps=1, max_iter=5).generate(data4.x[:2], y=data4.y[:2])
    assert x_adv.shape == data4.x[:2].shape and np.abs(x_adv - data4.x[:2]).max() > 0
    with pytest.raises(ValueError):
        CarliniWagnerL2Torch(classifier).generate(data4.x[0])
