"""Early stop and best iterate (hbbench.attacks.early_stop): a fooled image keeps the iterate that
fooled and leaves the batch; never weaker on deterministic targets; off for random defenses and
oblivious runs; fewer passes, counted with hbbench.passes."""
import numpy as np
import pytest
import torch
from torch import nn

from hbbench.attacks import make_attack
from hbbench.classifier import make_classifier, with_defenses
from hbbench.datasets import load_dataset
from hbbench.defenses import attacker_preprocessors, make_defense
from hbbench.passes import count_passes
from hbbench.attacks.early_stop import stops_early
from hbbench.runner import apply_defense
from hbbench.spec import SweepSpec


class Bump(nn.Module):
    """Two classes on one pixel: class 1 wins only on a narrow bump at 0.6, and a gentle slope pulls
    PGD on past it. From 0.5 with steps of 0.1: 0.6 (fooled), 0.7, 0.8 (the last: not fooled)."""
    num_classes = 2

    def forward(self, x):
        v = x.flatten(1)[:, :1]
        margin = 2 * torch.exp(-((v - 0.6) / 0.03) ** 2) - 1 + 0.1 * (v - 0.6)
        return torch.cat([torch.zeros_like(margin), margin], 1)


def test_an_intermediate_fooling_iterate_counts_as_fooled():
    clf = make_classifier(Bump(), mean=(0.0,), std=(1.0,), input_shape=(1, 1, 1), device="cpu")
    x, y = np.full((1, 1, 1, 1), 0.5, np.float32), np.array([0])
    params = dict(eps=0.3, eps_step=0.1, max_iter=3, num_random_init=0)
    last = make_attack("pgd", clf, early_stop=False, **params).generate(x, y=y)
    assert clf.predict(last).argmax(1)[0] == 0 and last.item() == pytest.approx(0.8)  # the case is as built
    attack = make_attack("pgd", clf, **params)  # auto: on for an undefended classifier
    best = attack.generate(x, y=y)
    assert clf.predict(best).argmax(1)[0] == 1 and best.item() == pytest.approx(0.6)
    assert attack.fooled_at.tolist() == [1]


@pytest.fixture(scope="module")
def data8():
    return load_dataset("imagenet-samples", n=8)


@pytest.mark.slow
@pytest.mark.parametrize("defense,threat", [("none", None), ("jpeg", "bpda"), ("median", "adaptive")])
def test_early_stop_never_makes_an_outcome_better_for_the_defense(classifier, data8, defense, threat):
    target = make_defense(defense, classifier)
    attacked = with_defenses(classifier, attacker_preprocessors(target, threat)[0]) if target is not None else classifier
    fooled = {}
    for early in (False, True):
        np.random.seed(0)
        adv = make_attack("pgd", attacked, eps=1 / 255, max_iter=5, early_stop=early).generate(data8.x, y=data8.y)
        scored = apply_defense(target, adv, 8)
        fooled[early] = classifier.predict(scored).argmax(1) != data8.y
    assert not (fooled[False] & ~fooled[True]).any()


def test_early_stop_saves_passes(classifier, data4):
    counts = {}
    for early in (False, True):
        np.random.seed(0)
        attack = make_attack("pgd", classifier, eps=4 / 255, max_iter=10, early_stop=early)
        with count_passes(classifier.model) as count:
            attack.generate(data4.x, y=data4.y)
        counts[early] = count
    assert (counts[False].forward, counts[False].backward) == (40, 40)  # ART: 10 steps x 4 images
    assert counts[True].forward == counts[True].backward < 40 / 2


def _cells(**spec):
    return SweepSpec(attacks=["pgd"], **spec).cells()


def _group(cells, cell):
    return [c for c in cells if c.attack_run == cell.attack_run]


def test_early_stop_is_planned_off_for_oblivious_runs():
    cells = _cells(defenses=["none", "jpeg"], threat_models=["oblivious", "bpda"])
    by = {(c.defense_name, c.threat_model): c for c in cells}
    assert not stops_early(_group(cells, by["none", "oblivious"]))  # shared with the transfer cells
    assert not stops_early(_group(cells, by["jpeg", "oblivious"]))
    assert stops_early(_group(cells, by["jpeg", "bpda"]))
    only_none = _cells(defenses=["none"], threat_models=["bpda"])
    assert stops_early(only_none)


def test_early_stop_is_off_for_a_random_defense(monkeypatch):
    from hbbench import runner

    given = {}

    class Recorder:
        def __init__(self, name, clf, **params):
            given[name] = params

        def generate(self, x, y=None):
            return x

    monkeypatch.setattr(runner, "make_attack", Recorder)
    ds = load_dataset("imagenet-samples", n=2)
    for defense in ("noise", "jpeg"):
        (cell,) = [c for c in _cells(defenses=[defense], threat_models=["bpda"], n=2) if c.defense_name == defense]
        ctx = runner.get_context(cell, 2, "cpu")
        runner.craft(cell, ctx, ds.x, ds.y, 0, early_stop=True)
        assert given["pgd"]["early_stop"] is (defense == "jpeg")


def test_silent_success_check_counts_what_the_returned_example_lost():
    from hbbench.checks.run import check_table
    from tests.test_checks_logic import evidence

    def statuses(probes):
        ev = evidence(["pgd"], threats=("bpda",), probes={"jpeg": probes, "none": probes})
        table = check_table(ev, ("silent_success",))
        return sorted(set(table.status))

    clean = {"defense_randomized": False, "gradient_zero_share": 0.0}
    assert statuses(clean) == ["not run"]  # no early stop: iterates not tracked
    assert statuses({**clean, "silent_found": 5, "silent_lost": 0}) == ["pass"]
    assert statuses({**clean, "silent_found": 5, "silent_lost": 1}) == ["fail"]
