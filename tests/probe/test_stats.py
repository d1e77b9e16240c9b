"""Statistics against known values (R / scipy) and brute force."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callproof.probe import stats


def brute_fisher(a: int, b: int, c: int, d: int) -> float:
    """Two-sided Fisher p by exact rational arithmetic over every table with the same margins."""
    r1, r2, c1 = a + b, c + d, a + c
    n = r1 + r2

    def prob(x: int) -> Fraction:
        return Fraction(math.comb(r1, x) * math.comb(r2, c1 - x), math.comb(n, c1))

    observed = prob(a)
    lo, hi = max(0, c1 - r2), min(r1, c1)
    total = sum(
        (prob(x) for x in range(lo, hi + 1) if prob(x) <= observed * Fraction(10000001, 10000000)),
        Fraction(0),
    )
    return float(total)


def test_wilson_known_values() -> None:
    low, high = stats.wilson(6, 10)
    assert round(low, 4) == 0.3127
    assert round(high, 4) == 0.8318
    assert stats.wilson(10, 10)[1] == 1.0
    assert round(stats.wilson(10, 10)[0], 4) == 0.7225
    assert stats.wilson(0, 10)[0] == 0.0
    assert round(stats.wilson(0, 10)[1], 4) == 0.2775
    assert stats.wilson(0, 0) == (0.0, 1.0)
    # by hand: centre 0.45185, half-width 0.09571
    assert [round(v, 4) for v in stats.wilson(45, 100)] == [0.3561, 0.5476]


@given(n=st.integers(1, 500), data=st.data())
@settings(max_examples=60, deadline=None)
def test_wilson_bounds_solve_the_score_equation(n: int, data: st.DataObject) -> None:
    successes = data.draw(st.integers(0, n))
    low, high = stats.wilson(successes, n)
    p_hat = successes / n
    assert 0.0 <= low <= p_hat <= high <= 1.0
    for bound in (low, high):
        if bound in (0.0, 1.0):
            continue
        # Wilson's bounds are the p with |p_hat - p| = z * sqrt(p (1 - p) / n)
        lhs = abs(p_hat - bound)
        rhs = stats.Z95 * math.sqrt(bound * (1 - bound) / n)
        assert lhs == pytest.approx(rhs, rel=1e-9, abs=1e-12)


def test_wilson_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="successes"):
        stats.wilson(11, 10)


def test_fisher_known_values() -> None:
    # The seed: 6/10 vs 10/10
    assert round(stats.fisher_exact(6, 4, 10, 0), 4) == 0.0867
    assert stats.fisher_exact(6, 4, 10, 0) == pytest.approx(0.08668730650154763, rel=1e-9)
    # scipy.stats.fisher_exact([[8, 2], [1, 5]]) -> 0.03496503496503495
    assert stats.fisher_exact(8, 2, 1, 5) == pytest.approx(0.03496503496503495, rel=1e-9)
    # Fisher's tea tasting: [[3, 1], [1, 3]] -> 0.4857142857142857
    assert stats.fisher_exact(3, 1, 1, 3) == pytest.approx(0.4857142857142857, rel=1e-9)
    # 12/20 vs 20/20
    assert stats.fisher_exact(12, 8, 20, 0) == pytest.approx(brute_fisher(12, 8, 20, 0), rel=1e-9)
    assert stats.fisher_exact(10, 0, 10, 0) == 1.0
    assert stats.fisher_exact(0, 0, 3, 4) == 1.0


@given(a=st.integers(0, 25), b=st.integers(0, 25), c=st.integers(0, 25), d=st.integers(0, 25))
@settings(max_examples=150, deadline=None)
def test_fisher_matches_brute_force(a: int, b: int, c: int, d: int) -> None:
    expected = brute_fisher(a, b, c, d) if min(a + b, c + d, a + c, b + d) > 0 else 1.0
    assert stats.fisher_exact(a, b, c, d) == pytest.approx(expected, rel=1e-7, abs=1e-15)


def test_fisher_is_fast_and_sane_on_huge_tables() -> None:
    p = stats.fisher_exact(60_000, 40_000, 100_000, 0)
    assert 0.0 <= p < 1e-100
    assert stats.fisher_exact(50_000, 50_000, 50_000, 50_000) == pytest.approx(1.0)


def test_compound_reproduces_the_seed_table() -> None:
    rows = stats.compound(0.6, stats.wilson(6, 10))
    assert [round(r.success * 100) for r in rows] == [60, 36, 22, 13, 8]
    assert [stats.format_pct(r.success) for r in rows] == ["60%", "36%", "22%", "13%", "8%"]
    low, high = stats.wilson(6, 10)
    assert rows[2].ci95 == pytest.approx((low**3, high**3))
    assert [r.steps for r in rows] == [1, 2, 3, 4, 5]
    assert stats.compound(1.0)[4].success == 1.0


def test_pass_hat_k_known_values() -> None:
    assert stats.pass_hat_k(6, 10, 1) == pytest.approx(0.6)
    assert stats.pass_hat_k(6, 10, 2) == pytest.approx(15 / 45)
    assert stats.pass_hat_k(6, 10, 5) == pytest.approx(6 / 252)
    assert stats.pass_hat_k(6, 10, 7) == 0.0
    assert stats.pass_hat_k(10, 10, 5) == 1.0
    assert stats.pass_hat_k(3, 4, 5) is None
    with pytest.raises(ValueError, match="k must"):
        stats.pass_hat_k(1, 2, 0)


def test_pass_hat_k_is_the_mean_over_all_k_subsets() -> None:
    trials = [True, False, True, True, False, True, True, False]
    for k in range(1, len(trials) + 1):
        subsets = list(itertools.combinations(trials, k))
        expected = sum(all(s) for s in subsets) / len(subsets)
        assert stats.pass_hat_k(sum(trials), len(trials), k) == pytest.approx(expected)


def test_percentiles_interpolate_linearly() -> None:
    assert stats.percentile([1.0, 2.0], 50) == 1.5
    assert stats.percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)  # numpy's value
    assert stats.percentile([5.0], 99) == 5.0
    assert stats.percentile([], 50) is None
    described = stats.percentiles([4.0, 1.0, 3.0, 2.0])
    assert described == {"p50": 2.5, "p90": pytest.approx(3.7), "p99": pytest.approx(3.97),
                         "mean": 2.5, "n": 4}  # fmt: skip
    with pytest.raises(ValueError, match="q must"):
        stats.percentile([1.0], 101)


def test_verdicts_read_plainly() -> None:
    worse = stats.compare(
        "bedrock-kimi-k2.5", "openrouter-kimi-k2.5", "tool-result", 12, 20, 20, 20
    )
    assert worse.significant
    assert worse.verdict == (
        "bedrock-kimi-k2.5 is worse than openrouter-kimi-k2.5 on tool-result: 60% vs 100%, "
        f"p = {worse.p_value:.4f}"
    )
    # Order of arguments does not change who is named worse.
    flipped = stats.compare(
        "openrouter-kimi-k2.5", "bedrock-kimi-k2.5", "tool-result", 20, 20, 12, 20
    )
    assert flipped.verdict.startswith("bedrock-kimi-k2.5 is worse than openrouter-kimi-k2.5")
    same = stats.compare("a", "b", "tool-result", 6, 10, 10, 10)
    assert not same.significant
    assert same.verdict == (
        "no significant difference between a and b on tool-result: 60% vs 100%, p = 0.0867"
    )
    tiny = stats.compare("a", "b", "s", 0, 1000, 1000, 1000)
    assert tiny.verdict.endswith("p < 0.0001")


def test_format_pct_never_rounds_to_a_false_extreme() -> None:
    assert stats.format_pct(0.6) == "60%"
    assert stats.format_pct(1.0) == "100%"
    assert stats.format_pct(0.0) == "0%"
    assert stats.format_pct(0.999) == "99.9%"
    assert stats.format_pct(0.99999) == ">99.9%"
    assert stats.format_pct(0.003) == "0.3%"
    assert stats.format_pct(None) == "n/a"
