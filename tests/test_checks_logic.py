"""Each evaluation check fires on a constructed case and stays quiet on its mirror image. The cases
are per-image outcomes written directly (no attack runs), so every threshold is exercised exactly;
tests/test_checks.py runs the checks on real ART attacks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hbbench.checks import auxiliary
from hbbench.checks.run import resolve_checks
from hbbench.checks.evidence import Evidence
from hbbench.checks.run import check_table
from hbbench.checks.table import failed
from hbbench.checks.stats import a_stronger_than_b
from hbbench.checks.worst_case import rows as worst_case_rows
from hbbench.errors import HBBenchError
from hbbench.options import CheckBudgets
from hbbench.grid import expand
from hbbench.spec import SweepSpec

N = 20


def evidence(attacks, threats=("oblivious", "bpda"), eps="4/255", outcomes=None, checks=(), probes=None):
    """A run over N images in which ``outcomes[(attack label, defense, threat, eps*255)]`` lists the
    images the attack fools on the defended model (default: none); probes default to clean ones."""
    spec = SweepSpec.from_dict(dict(attacks=list(attacks), defenses=["jpeg"], threat_models=list(threats), eps=eps,
                                    n=N))
    cells = expand(spec)
    added = auxiliary.plan(cells, checks)
    outcomes = outcomes or {}
    summaries, records = {}, {}
    for c in cells + auxiliary.added_cells(added):
        key = (c.attack, c.defense, c.threat_model, None if c.eps is None else round(c.eps * 255))
        fooled = np.zeros(N, bool)
        fooled[list(outcomes.get(key, ()))] = True
        n = N if c in cells else min(N, 10)
        records[c.id] = pd.DataFrame({"sample": np.arange(n), "label": np.zeros(n, int),
                                      "adv_pred": fooled[:n].astype(int), "def_adv_pred": fooled[:n].astype(int)})
        summaries[c.id] = {"cell_id": c.id, "model": c.model, "dataset": c.dataset, "seed": 0, "clean_top1": 1.0,
                           "defended_clean_top1": 1.0, **(probes or {}).get(c.defense, {
                               "defense_randomized": False, "gradient_zero_share": 0.0})}
    return Evidence(cells, added, summaries, records.get, 10)


def status(ev, check, defense="jpeg", threat="bpda"):
    t = check_table(ev, [check])
    hit = t[(t.defense == defense) & (t.threat_model == threat)]
    return sorted(set(hit.status))


def test_sign_test_needs_five_of_five_on_twenty_images():
    assert not a_stronger_than_b([True] * 4 + [False] * 16, [False] * 20).significant
    assert a_stronger_than_b([True] * 5 + [False] * 15, [False] * 20).significant
    assert not a_stronger_than_b([True] * 6 + [False] * 14, [False] * 6 + [True] + [False] * 13).significant  # 6 vs 1


@pytest.mark.parametrize("fgsm_fools,pgd_fools,expected", [(range(8), (), "fail"), ((), range(8), "pass"),
                                                           (range(2), (), "warn")])
def test_single_step_beats_iterative(fgsm_fools, pgd_fools, expected):
    ev = evidence(["fgsm", "pgd"], outcomes={("fgsm", "jpeg", "bpda", 4): fgsm_fools,
                                              ("pgd", "jpeg", "bpda", 4): pgd_fools})
    assert status(ev, "single_step_beats_iterative") == [expected]


@pytest.mark.parametrize("oblivious,bpda,expected", [(range(10), range(2), "fail"), (range(2), range(10), "pass")])
def test_transfer_beats_whitebox(oblivious, bpda, expected):
    ev = evidence(["pgd"], outcomes={("pgd", "jpeg", "oblivious", 4): oblivious, ("pgd", "jpeg", "bpda", 4): bpda})
    assert status(ev, "transfer_beats_whitebox") == [expected]


@pytest.mark.parametrize("small,big,expected", [(range(12), range(3), "fail"), (range(3), range(12), "pass")])
def test_not_monotone(small, big, expected):
    ev = evidence(["pgd"], eps="2/255,4/255", outcomes={("pgd", "jpeg", "bpda", 2): small,
                                                        ("pgd", "jpeg", "bpda", 4): big})
    assert status(ev, "not_monotone") == [expected]


@pytest.mark.parametrize("doubled,expected", [(range(9), "fail"), (range(1), "pass")])
def test_not_converged(doubled, expected):
    ev = evidence(["pgd"], checks=["not_converged"],
                  outcomes={("pgd[early_stop=True,max_iter=20]", "jpeg", "bpda", 4): doubled, ("pgd", "jpeg", "bpda", 4): range(1)})
    assert status(ev, "not_converged") == [expected]


@pytest.mark.parametrize("square,expected", [(range(10), "fail"), ((), "pass")])
def test_blackbox_beats_whitebox(square, expected):
    ev = evidence(["fgsm", "pgd"], checks=["blackbox_beats_whitebox"],
                  outcomes={("square[max_iter=100,norm=inf]", "jpeg", "bpda", 4): square,
                            ("fgsm", "jpeg", "bpda", 4): [1], ("pgd", "jpeg", "bpda", 4): [2]})
    assert status(ev, "blackbox_beats_whitebox") == [expected]
    assert status(ev, "blackbox_beats_whitebox", threat="oblivious") == ["not run"]


@pytest.mark.parametrize("survivors,expected", [(range(3), "fail"), ((), "pass")])
def test_unbounded(survivors, expected):
    fooled = [i for i in range(N) if i not in survivors]
    label = auxiliary.label("pgd", auxiliary.unbounded_pgd(CheckBudgets()))
    ev = evidence(["pgd"], checks=["unbounded"], outcomes={(label, "jpeg", "bpda", 255): fooled})
    assert status(ev, "unbounded") == [expected]
    assert status(ev, "unbounded", threat="oblivious") == []  # nothing through the defense to check


@pytest.mark.parametrize("share,expected", [(1.0, "fail"), (0.05, "warn"), (0.0, "pass")])
def test_zero_gradient(share, expected):
    ev = evidence(["pgd"], probes={"jpeg": {"defense_randomized": False, "gradient_zero_share": share}})
    assert status(ev, "zero_gradient") == [expected]
    assert status(ev, "zero_gradient", threat="oblivious") == ["not run"]


@pytest.mark.parametrize("threat,randomized,expected", [("bpda", True, "fail"), ("bpda[eot=4]", True, "pass"),
                                                        ("bpda", False, "pass")])
def test_randomized_without_eot(threat, randomized, expected):
    ev = evidence(["pgd"], threats=[threat], probes={"jpeg": {"defense_randomized": randomized,
                                                              "gradient_zero_share": 0.0}})
    assert status(ev, "randomized_without_eot", threat=threat) == [expected]


def test_under_oblivious_an_attack_is_judged_on_the_model_it_attacked():
    """Oblivious PGD that breaks the undefended model but transfers worse than FGSM did not fail to
    optimise: like is compared with like (issue: PGD-40 transfers worse than PGD-10 obliviously)."""
    ev = evidence(["fgsm", "pgd"], threats=["oblivious"], outcomes={("fgsm", "jpeg", "oblivious", 4): range(8)})
    for c in ev.cells:  # on the undefended model PGD fools every image, FGSM only the first 8
        r = ev.records(c)
        r["adv_pred"] = 1 if c.attack == "pgd" else (r["sample"] < 8).astype(int)
    assert status(ev, "single_step_beats_iterative", threat="oblivious") == ["pass"]


def test_a_failed_check_marks_its_defense_and_threat_model_unverified():
    ev = evidence(["fgsm", "pgd"], outcomes={("fgsm", "jpeg", "bpda", 4): range(8)})
    assert failed(check_table(ev, resolve_checks("default"))) == {("jpeg", "bpda"): ["single_step_beats_iterative"]}


def test_worst_case_counts_an_image_as_robust_only_if_every_attack_missed_it():
    ev = evidence(["fgsm", "pgd"], outcomes={("fgsm", "jpeg", "oblivious", 4): [0, 1],
                                              ("pgd", "jpeg", "oblivious", 4): [1, 2],
                                              ("pgd", "jpeg", "bpda", 4): [5]})
    got = {(r["defense"], r["threat_model"]): r["defended_adv_top1"] for r in worst_case_rows(ev)}
    assert got[("jpeg", "oblivious")] == (N - 3) / N
    assert got[("jpeg", "bpda")] == (N - 4) / N  # the bpda attacker may also ignore the defense


def test_check_names_are_resolved_or_refused():
    assert resolve_checks("none") == ()
    assert set(resolve_checks("default")) < set(resolve_checks("full"))
    assert "unbounded" not in resolve_checks("default") and "unbounded" in resolve_checks("full")
    assert resolve_checks("unbounded,zero_gradient") == ("unbounded", "zero_gradient")
    with pytest.raises(HBBenchError, match="unknown check 'masking'"):
        resolve_checks("masking")


def test_checks_table_records_each_checks_cost_from_the_registry():
    from hbbench.checks import CHECKS
    from hbbench.checks.table import costly_ran

    cheap = check_table(evidence(["fgsm", "pgd"]), resolve_checks("default"))
    assert set(cheap.cost) == {"cheap"} and costly_ran(cheap) is False
    ev = evidence(["fgsm", "pgd"], checks=("not_converged",))
    costly = check_table(ev, resolve_checks("default") + ("not_converged",))
    assert costly_ran(costly) is True
    assert all(CHECKS.resolve(r.check)[0].meta["cost"] == r.cost for r in costly.itertuples())
    assert costly_ran(cheap.drop(columns="cost")) is None  # a run written before the column


def test_remedies_follow_where_the_masking_is():
    from hbbench.checks import remedies
    from hbbench.options import DEFAULT_BUDGETS

    cells = expand(SweepSpec.from_dict(dict(attacks=["fgsm", "pgd", "bim"], defenses=["jpeg"],
                                     threat_models=["adaptive", "bpda"], n=N)))

    def planned(kinds, defense, threat, round_=1, previous=()):
        setting = remedies._attacks([c for c in cells if c.defense == defense and c.threat_model == threat])
        return remedies._round(kinds, setting, list(previous), round_, {c.id for c in cells}, DEFAULT_BUDGETS)

    # in the defense (adaptive): BPDA, which the grid already holds here, so nothing new
    assert planned(["gradient"], "jpeg", "adaptive") == []
    adaptive_only = [c for c in cells if c.threat_model == "adaptive"]
    assert {(c.attack, c.threat_model) for c in remedies._round(["gradient"], remedies._attacks(
        [c for c in adaptive_only if c.defense == "jpeg"]), [], 1, {c.id for c in adaptive_only}, DEFAULT_BUDGETS)} == \
        {("fgsm", "bpda"), ("pgd", "bpda"), ("bim", "bpda")}
    logit = planned(["gradient"], "none", "bpda")  # in the model: losses that skip the softmax
    assert {(c.attack, c.threat_model) for c in logit} == {("apgd_dlr", "bpda"), ("pgd_margin", "bpda")}
    assert {c.threat_model for c in planned(["eot"], "jpeg", "bpda")} == {"bpda[eot=8]"}
    assert {c.threat_model for c in planned(["eot"], "jpeg", "bpda", 2)} == {"bpda[eot=16]"}
    assert {c.attack for c in planned(["restarts"], "jpeg", "bpda")} == {"pgd[max_iter=40,num_random_init=5]"}
    assert {c.attack for c in planned(["square"], "jpeg", "bpda")} == {"square[max_iter=1000,norm=inf]"}
    second = planned(["gradient"], "none", "bpda", 2, logit)  # round 2: restarts on round 1's remedies...
    assert {c.attack for c in second} == {"apgd_dlr[max_iter=80,nb_random_init=5]",
                                          "pgd_margin[max_iter=40,num_random_init=5]",
                                          "hsj_eps[max_eval=1000,max_iter=20]"}  # ...and one using no gradient
    possible = {c.id for c in remedies.possible(cells)}
    assert {c.id for c in logit + second} <= possible and not possible & {c.id for c in cells}


def test_decisive_attack_and_verdict_forms():
    from hbbench.checks.remedies import Outcome, verdict
    from hbbench.checks.worst_case import decisive

    t, f = True, False
    assert decisive({"a": np.array([t, t, f]), "b": np.array([t, f, f])}) == "a"
    assert decisive({"a": np.array([t, f]), "b": np.array([t, f])}) == "—"
    assert verdict(None, 0.5, 0.5, "a", True) == "verified"
    cells = expand(SweepSpec.from_dict(dict(attacks=["pgd"], defenses=["jpeg"], threat_models=["bpda"], n=N)))
    assert verdict(Outcome(["zero_gradient"], cells, True, []), 0.81, 0.06, "apgd_dlr (bpda)", True) == \
        "repaired after zero_gradient failed: 0.81 → 0.06 by apgd_dlr (bpda)"
    assert verdict(Outcome(["unbounded"], cells[:1], False, []), 0.8, 0.8, "—", True) == \
        "unverified (tried: pgd (bpda); unbounded failed)"
    assert verdict(Outcome(["unbounded"], [], False, []), 0.8, 0.8, "—", False).startswith(
        "unverified (tried: nothing; --checks full runs the remedies")


def _remedied(fooled_by, zero_share_of, budgets=None):
    """The outcome of a setting (no defense, bpda) whose zero_gradient check failed, after every remedy
    round ran with the per-image outcomes ``fooled_by(cell)`` and gradient probes ``zero_share_of(cell)``
    (written into the evidence as the runner would store them)."""
    from hbbench.checks import remedies
    from hbbench.options import CheckBudgets

    budgets = budgets or CheckBudgets(surrogate="efficientnet_lite0")
    ev = evidence(["fgsm", "pgd"], threats=("bpda",))
    table = pd.DataFrame([{"check": "zero_gradient", "model": ev.cells[0].model, "defense": "none",
                           "threat_model": "bpda", "status": "fail"}])
    store = {}
    ev.load_records = lambda cid, base=ev.load_records: store.get(cid, (None, None))[0] if cid in store else base(cid)
    for _ in range(remedies.ROUNDS + 1):
        (outcome,) = remedies.outcomes(ev, table, budgets=budgets).values()
        for c in outcome.todo:
            fooled = np.zeros(N, bool)
            fooled[list(fooled_by(c))] = True
            store[c.id] = (pd.DataFrame({"sample": np.arange(N), "label": np.zeros(N, int),
                                         "adv_pred": fooled.astype(int), "def_adv_pred": fooled.astype(int)}), None)
            ev.summaries[c.id] = {"cell_id": c.id, "gradient_zero_share": zero_share_of(c), "defense_randomized": False}
    return outcome


def test_a_remedy_is_evidence_only_when_measured_to_work():
    """Issue 28: "repaired" rests on measurements. A logit-loss remedy whose own gradient is masked
    (a one-hot model) answers nothing, whatever it is; one whose gradient works and whose unbounded twin
    breaks every image does; a gradient-free remedy counts only where it breaks the setting."""
    masked = _remedied(lambda c: range(2) if c.attack_name in ("apgd_dlr", "pgd_margin") else (),
                       lambda c: 1.0)  # moves the number a little, on a zero gradient
    assert not masked.repaired
    names = {c.attack_name for c in masked.tried}
    assert {"apgd_dlr", "pgd_margin", "hsj_eps", "transfer_pgd"} <= names  # the second round went gradient-free
    assert all(c.eps != 1.0 for c in masked.tried)  # the unbounded twins are evidence, never tried attacks

    working = _remedied(lambda c: range(N) if c.eps == 1.0 else range(10) if c.attack_name == "pgd_margin" else (),
                        lambda c: 0.0)  # a gradient that works: the twins break everything
    assert working.repaired and {c.attack_name for c in working.tried} == {"apgd_dlr", "pgd_margin"}

    broken = _remedied(lambda c: range(N - 1) if c.attack_name == "transfer_pgd" else (), lambda c: 1.0)
    assert broken.repaired  # 1 of 20 left: the transfer verifies a break
    half = _remedied(lambda c: range(N // 2) if c.attack_name == "hsj_eps" else (), lambda c: 1.0)
    assert not half.repaired  # a gradient-free attack bounds robustness from above only
