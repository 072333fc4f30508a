"""Best iterate and early stop (hbbench.attacks.early_stop): a fooled image keeps an iterate that
fooled, and with early stop leaves the batch; never weaker on deterministic targets; top-1 the same
with and without early stop, the ranking measures not; off for random defenses and oblivious runs;
fewer passes, counted with hbbench.passes."""
import numpy as np
import pytest
import torch
from torch import nn

from hbbench.attacks import TRANSFER, make_attack
from hbbench.classifier import make_classifier, with_defenses
from hbbench.datasets import load_dataset
from hbbench.metrics import true_rank
from hbbench.defenses import attacker_preprocessors, make_defense
from hbbench.passes import count_passes
from hbbench.attacks.early_stop import keeps_best_iterate
from hbbench.execution import apply_defense
from hbbench.grid import expand
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
    last = make_attack("pgd", clf, early_stop=False, best_iterate=False, **params).generate(x, y=y)
    assert clf.predict(last).argmax(1)[0] == 0 and last.item() == pytest.approx(0.8)  # the case is as built
    for flags in ({}, {"early_stop": False}):  # auto: both on for an undefended classifier; every step
        attack = make_attack("pgd", clf, **flags, **params)
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
    fooled, rank = {}, {}
    for mode, flags in {"ART": (False, False), "best iterate": (False, True), "early stop": (True, True)}.items():
        np.random.seed(0)
        attack = make_attack("pgd", attacked, eps=1 / 255, max_iter=5, early_stop=flags[0], best_iterate=flags[1])
        probs = classifier.predict(apply_defense(target, attack.generate(data8.x, y=data8.y), 8))  # ranks as logits
        fooled[mode], rank[mode] = probs.argmax(1) != data8.y, true_rank(probs, data8.y)
    assert not (fooled["ART"] & ~fooled["best iterate"]).any()
    # the trajectories agree until an image's first fooling step: early stop keeps top-1 exactly ...
    assert np.array_equal(fooled["best iterate"], fooled["early stop"])
    # ... but its example sits just past the boundary, where the true class still ranks high
    assert (rank["early stop"] < rank["best iterate"]).sum() > (rank["early stop"] > rank["best iterate"]).sum()


def test_early_stop_saves_passes(classifier, data4):
    counts, fooled = {}, {}
    x, y = data4.x[:2], data4.y[:2]
    for mode, flags in {"ART": TRANSFER, "best iterate": dict(early_stop=False, best_iterate=True),
                        "early stop": dict(early_stop=True, best_iterate=True)}.items():
        np.random.seed(0)
        attack = make_attack("pgd", classifier, eps=4 / 255, max_iter=6, **flags)
        with count_passes(classifier.model) as count:
            attack.generate(x, y=y)
        counts[mode], fooled[mode] = count, attack.fooled_at
    assert (counts["ART"].forward, counts["ART"].backward) == (12, 12)  # TRANSFER is ART: 6 steps x 2 images
    # every step, then one forward pass over the last iterates of the images an earlier one fooled
    earlier = int((fooled["best iterate"] >= 0).sum())
    assert earlier > 0 and (counts["best iterate"].forward, counts["best iterate"].backward) == (12 + earlier, 12)
    assert counts["early stop"].forward == counts["early stop"].backward < 12 / 2


def _cells(**spec):
    return expand(SweepSpec(attacks=["pgd"], **spec))


def _group(cells, cell):
    return [c for c in cells if c.attack_run == cell.attack_run]


def test_early_stop_is_planned_off_for_oblivious_runs():
    cells = _cells(defenses=["none", "jpeg"], threat_models=["oblivious", "bpda"])
    by = {(c.defense_name, c.threat_model): c for c in cells}
    assert not keeps_best_iterate(_group(cells, by["none", "oblivious"]))  # shared with the transfer cells
    assert not keeps_best_iterate(_group(cells, by["jpeg", "oblivious"]))
    assert keeps_best_iterate(_group(cells, by["jpeg", "bpda"]))
    only_none = _cells(defenses=["none"], threat_models=["bpda"])
    assert keeps_best_iterate(only_none)


def test_the_sweep_keeps_the_best_iterate_and_stops_early_only_when_asked(monkeypatch):
    from hbbench import execution

    given = {}

    class Recorder:
        def __init__(self, name, clf, **params):
            given[name] = params

        def generate(self, x, y=None):
            return x

    monkeypatch.setattr(execution, "make_attack", Recorder)
    ds = load_dataset("imagenet-samples", n=2)
    for attack in ("pgd", "pgd[early_stop=true]"):
        for defense in ("noise", "jpeg"):  # a random defense: neither
            (cell,) = [c for c in expand(SweepSpec(attacks=[attack], defenses=[defense], threat_models=["bpda"], n=2))
                       if c.defense_name == defense]
            execution.craft(cell, execution.get_context(cell, 2, "cpu"), ds.x, ds.y, 0, best_iterate=True)
            assert given["pgd"]["best_iterate"] is (defense == "jpeg")
            assert given["pgd"]["early_stop"] is (defense == "jpeg" and attack != "pgd")


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


def test_the_checks_that_read_top1_alone_plan_their_pgd_to_stop_early():
    from hbbench.checks import auxiliary

    cells = expand(SweepSpec(attacks=["pgd", "fgsm"], defenses=["jpeg"], threat_models=["bpda"]))
    planned = auxiliary.plan(cells, ("unbounded", "not_converged", "blackbox_beats_whitebox"))
    for check in ("unbounded", "not_converged"):
        assert planned[check] and all(dict(c.attack_params)["early_stop"] is True for c, _ in planned[check])
    assert all("early_stop" not in dict(c.attack_params) for c, _ in planned["blackbox_beats_whitebox"])  # Square
