"""Properties (hypothesis) of the measures and of budget parsing, over generated inputs.
Hand-computed cases live in test_metrics.py; cross-process cell-id stability in test_spec.py."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hbbench.errors import HBBenchError
from hbbench.metrics import ranking_ndcg, reciprocal_rank, topk_correct, true_rank
from hbbench.grid import expand
from hbbench.parsing import parse_budget

settings.register_profile("hbbench", max_examples=150, deadline=None)
settings.load_profile("hbbench")


@st.composite
def prob_rows(draw, n=None, c=None, distinct=False):
    """(N, C) rows of probabilities: non-negative, each summing to 1, some very peaked, some flat,
    some with zeros and ties."""
    n = n or draw(st.integers(1, 6))
    c = c or draw(st.integers(2, 12))
    if distinct:  # no ties: distinct integers, normalised
        rows = [draw(st.lists(st.integers(1, 10**6), min_size=c, max_size=c, unique=True)) for _ in range(n)]
        raw = np.array(rows, np.float64)
    else:
        raw = draw(arrays(np.float64, (n, c), elements=st.one_of(
            st.floats(0, 1), st.sampled_from([0.0, 1e-12, 0.5, 1.0]), st.floats(0, 50))))
        raw[raw.sum(axis=1) == 0, 0] = 1.0  # a row needs some mass
    return raw / raw.sum(axis=1, keepdims=True)


taus = st.floats(0.01, 1.0)


@given(st.data(), taus)
def test_ndcg_lies_in_unit_interval(data, tau):
    clean = data.draw(prob_rows())
    other = data.draw(prob_rows(n=clean.shape[0], c=clean.shape[1]))
    scores = ranking_ndcg(clean, other, tau=tau)
    assert scores.shape == (clean.shape[0],)
    assert np.all(np.isfinite(scores)) and np.all((0.0 <= scores) & (scores <= 1.0))


@given(prob_rows(), taus)
def test_ndcg_of_an_unchanged_output_is_one(p, tau):
    np.testing.assert_allclose(ranking_ndcg(p, p.copy(), tau=tau), 1.0, rtol=0, atol=1e-12)


@given(prob_rows(), taus, st.floats(0.1, 10.0))
def test_ndcg_depends_on_the_ranking_not_the_scale(p, tau, power):
    """A monotone transform of the evaluated output that keeps its order and, with tau = 1, the
    whole list: the score does not move."""
    sharpened = p ** power
    sharpened /= sharpened.sum(axis=1, keepdims=True)
    assume(np.array_equal(np.argsort(-p, axis=1, kind="stable"), np.argsort(-sharpened, axis=1, kind="stable")))
    assume(np.array_equal(p > 0, sharpened > 0) and sharpened[p > 0].min() > 1e-9)  # clear of the cut's 1e-12 slack
    np.testing.assert_allclose(ranking_ndcg(p, sharpened, tau=1.0), ranking_ndcg(p, p, tau=1.0), atol=1e-12)


@given(st.data())
def test_ndcg_does_not_depend_on_class_numbering(data):
    clean = data.draw(prob_rows(distinct=True))
    other = data.draw(prob_rows(n=clean.shape[0], c=clean.shape[1], distinct=True))
    perm = np.array(data.draw(st.permutations(range(clean.shape[1]))))
    np.testing.assert_allclose(ranking_ndcg(clean[:, perm], other[:, perm]), ranking_ndcg(clean, other), atol=1e-12)


@given(st.data())
def test_reciprocal_rank_of_a_correct_top1_is_one(data):
    p = data.draw(prob_rows())
    labels = p.argmax(axis=1)
    assert np.all(reciprocal_rank(p, labels) == 1.0)
    assert np.all(true_rank(p, labels) == 1)


@given(st.data())
def test_reciprocal_rank_is_one_over_a_rank_within_the_classes(data):
    p = data.draw(prob_rows())
    n, c = p.shape
    labels = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    rank = true_rank(p, labels)
    rr = reciprocal_rank(p, labels)
    assert np.all((1 <= rank) & (rank <= c))
    np.testing.assert_array_equal(rr, 1.0 / rank)
    assert np.all((0 < rr) & (rr <= 1))
    # a correct top-1 means RR 1, so the mean RR (MRR) is never below top-1 accuracy
    assert rr.mean() >= topk_correct(p, labels, 1).mean()
    # RR is 1 exactly when no class has strictly more probability than the true one
    np.testing.assert_array_equal(rr == 1.0, p[np.arange(n), labels] >= p.max(axis=1))


positive = st.integers(1, 10**6)


@given(positive, positive)
def test_budget_fractions_round_trip(a, b):
    assert parse_budget(f"{a}/{b}") == a / b
    assert parse_budget(f" {a}/{b} ") == a / b


@given(st.floats(min_value=5e-324, allow_infinity=False, allow_nan=False))
def test_positive_decimal_budgets_round_trip(x):
    assert parse_budget(repr(x)) == x


@given(st.integers(-10**6, 0), positive)
def test_non_positive_fractions_are_refused(a, b):
    with pytest.raises(HBBenchError, match="budget"):
        parse_budget(f"{a}/{b}")


@given(st.integers(-10**6, 10**6))
def test_zero_or_negative_denominators_are_refused(a):
    for text in (f"{a}/0", f"{a}/-3", str(-abs(a))):
        with pytest.raises(HBBenchError, match="budget"):
            parse_budget(text)


@given(st.one_of(st.text(max_size=30), st.from_regex(r"\A-?\d{1,500}(/\d{1,500})?\Z"),
                 st.sampled_from(["nan", "inf", "-inf", "1e400", "1e-400", "4/255/2", "0x10", "1" * 400 + "/1"])))
def test_any_text_is_a_positive_finite_budget_or_a_budget_error(text):
    """Never a crash of another kind (no OverflowError, no traceback at the CLI)."""
    try:
        value = parse_budget(text)
    except HBBenchError as exc:
        assert "budget" in str(exc)
        return
    assert isinstance(value, float) and 0 < value < math.inf
    if "/" in text:
        assert value == float(Fraction(text.strip()))


@given(st.permutations([("max_iter", "3"), ("eps_step", "1/255"), ("num_random_init", "2"), ("norm", "inf")]))
def test_cell_ids_ignore_the_order_parameters_are_written_in(pairs):
    from hbbench.spec import SweepSpec

    label = "pgd[" + ",".join(f"{k}={v}" for k, v in pairs) + "]"
    written, canonical = SweepSpec(attacks=[label], defenses=["jpeg"]), SweepSpec(
        attacks=["pgd[eps_step=1/255,max_iter=3,norm=inf,num_random_init=2]"], defenses=["jpeg"])
    written.validate(), canonical.validate()
    assert [c.id for c in expand(written)] == [c.id for c in expand(canonical)]
