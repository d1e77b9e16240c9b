"""Statistics for probe runs: pure functions over counts and samples, written with :mod:`math`.

- :func:`wilson` -- the Wilson score interval of a pass rate (95% by default). Unlike the normal
  approximation it stays inside [0, 1] and is honest at 0/n and n/n, which is where reliability
  probes live.
- :func:`fisher_exact` -- Fisher's exact test, two-sided, on a 2x2 table of passes and failures:
  the p-value is the sum of the hypergeometric probabilities of every table with the same margins
  that is no more likely than the observed one (the definition R's ``fisher.test`` and
  ``scipy.stats.fisher_exact`` use, with the same relative tolerance of 1e-7 for ties).
- :func:`compound` -- the seeds' table: the chance that k sequential tool uses all succeed, p**k,
  with the interval carried through as (low**k, high**k).
- :func:`pass_hat_k` -- tau-bench's pass^k: the chance that k trials drawn from n all pass,
  estimated without bias as C(c, k) / C(n, k).
- :func:`percentile` / :func:`percentiles` -- :func:`callproof.quantile.quantile` (linear
  interpolation between order statistics, numpy's default, so p50 of [1, 2] is 1.5) in
  percent.
- :func:`verdict` -- a sentence a person can read about two pass rates and their p-value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from callproof.quantile import quantile

__all__ = [
    "Z95",
    "Comparison",
    "CompoundRow",
    "compare",
    "compound",
    "fisher_exact",
    "format_p",
    "format_pct",
    "pass_hat_k",
    "percentile",
    "percentiles",
    "verdict",
    "wilson",
]

#: The two-sided 95% normal quantile.
Z95 = 1.959963984540054

#: scipy's and R's relative tolerance when deciding which tables are "as extreme" as the observed.
_FISHER_RELATIVE_TOLERANCE = 1e-7


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``successes`` out of ``n`` (95% unless ``z`` says otherwise).

    With no trials nothing is known, so the interval is (0, 1).
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_exact(a_pass: int, a_fail: int, b_pass: int, b_fail: int) -> float:
    """Two-sided p-value of Fisher's exact test on the table [[a_pass, a_fail], [b_pass, b_fail]].

    Works in log space, so tables of 100,000 attempts cost milliseconds, not big integers.
    """
    if min(a_pass, a_fail, b_pass, b_fail) < 0:
        raise ValueError("counts must not be negative")
    row_a = a_pass + a_fail
    row_b = b_pass + b_fail
    col_pass = a_pass + b_pass
    total = row_a + row_b
    if row_a == 0 or row_b == 0 or col_pass == 0 or col_pass == total:
        return 1.0
    low = max(0, col_pass - row_b)
    high = min(row_a, col_pass)
    log_denominator = _log_comb(total, col_pass)

    def log_p(x: int) -> float:
        return _log_comb(row_a, x) + _log_comb(row_b, col_pass - x) - log_denominator

    observed = log_p(a_pass)
    threshold = observed + math.log1p(_FISHER_RELATIVE_TOLERANCE)
    # Sum in ratio to the observed probability: no underflow when every term is tiny.
    total_ratio = 0.0
    for x in range(low, high + 1):
        lp = log_p(x)
        if lp <= threshold:
            total_ratio += math.exp(lp - observed)
    return min(1.0, total_ratio * math.exp(observed))


@dataclass(frozen=True, slots=True)
class CompoundRow:
    """One row of the compound table: k sequential tool uses."""

    steps: int
    success: float
    ci95: tuple[float, float]


def compound(
    pass_rate: float, ci95: tuple[float, float] | None = None, max_steps: int = 5
) -> list[CompoundRow]:
    """The chance that 1..max_steps sequential tool uses all succeed, each with rate ``pass_rate``.

    The interval is carried through monotonically: (low**k, high**k).
    """
    low, high = ci95 if ci95 is not None else (pass_rate, pass_rate)
    return [
        CompoundRow(steps=k, success=pass_rate**k, ci95=(low**k, high**k))
        for k in range(1, max_steps + 1)
    ]


def pass_hat_k(successes: int, n: int, k: int) -> float | None:
    """Unbiased pass^k: C(c, k) / C(n, k), the chance that k of the n trials, drawn without
    replacement, all passed. ``None`` when k > n (not estimable)."""
    if k < 1:
        raise ValueError("k must be at least 1")
    if successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if k > n:
        return None
    return math.comb(successes, k) / math.comb(n, k)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of already sorted values: the ``q / 100`` quantile
    (:func:`callproof.quantile.quantile`)."""
    if not 0.0 <= q <= 100.0:
        raise ValueError("q must be within 0..100")
    return quantile(sorted_values, q / 100.0)


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p90, p99, mean and n of ``values`` (any order)."""
    ordered = sorted(values)
    return {
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "mean": (sum(ordered) / len(ordered)) if ordered else None,
        "n": len(ordered),
    }


def format_pct(rate: float | None) -> str:
    """``0.6`` -> ``"60%"``; one decimal only where rounding would claim 0% or 100% falsely."""
    if rate is None:
        return "n/a"
    pct = rate * 100
    whole = round(pct)
    if whole == 0 and pct > 0:
        # never a float repr (``1.7e-05%``) nor a long tail of digits (``0.00017%``)
        return "<0.1%" if pct < 0.1 else f"{pct:.1f}%"
    if whole == 100 and pct < 100:
        text = f"{pct:.1f}%"
        return ">99.9%" if text == "100.0%" else text
    return f"{whole}%"


def format_p(p: float) -> str:
    """A p-value for text: four decimals, or ``< 0.0001``."""
    if p < 0.0001:
        return "p < 0.0001"
    return f"p = {p:.4f}"


@dataclass(frozen=True, slots=True)
class Comparison:
    """Fisher's test of two targets' pass rates on one scenario."""

    a: str
    b: str
    scenario: str
    a_passed: int
    a_n: int
    b_passed: int
    b_n: int
    p_value: float
    significant: bool
    verdict: str


def verdict(
    a: str,
    b: str,
    scenario: str,
    a_rate: float,
    b_rate: float,
    p_value: float,
    *,
    alpha: float = 0.05,
) -> str:
    """A plain sentence: which is worse, by how much, and how sure we are.

    ``"bedrock-kimi-k2.5 is worse than openrouter-kimi-k2.5 on tool-result: 40% vs 100%,
    p = 0.0108"``, or ``"no significant difference between ...: 60% vs 100%, p = 0.0867"``.
    """
    if p_value < alpha and a_rate != b_rate:
        worse, better = (a, b) if a_rate < b_rate else (b, a)
        lo, hi = (a_rate, b_rate) if a_rate < b_rate else (b_rate, a_rate)
        return (
            f"{worse} is worse than {better} on {scenario}: "
            f"{format_pct(lo)} vs {format_pct(hi)}, {format_p(p_value)}"
        )
    return (
        f"no significant difference between {a} and {b} on {scenario}: "
        f"{format_pct(a_rate)} vs {format_pct(b_rate)}, {format_p(p_value)}"
    )


def compare(
    a: str,
    b: str,
    scenario: str,
    a_passed: int,
    a_n: int,
    b_passed: int,
    b_n: int,
    *,
    alpha: float = 0.05,
) -> Comparison:
    """Compare two targets on one scenario with Fisher's exact test."""
    p_value = fisher_exact(a_passed, a_n - a_passed, b_passed, b_n - b_passed)
    a_rate = a_passed / a_n if a_n else 0.0
    b_rate = b_passed / b_n if b_n else 0.0
    return Comparison(
        a=a,
        b=b,
        scenario=scenario,
        a_passed=a_passed,
        a_n=a_n,
        b_passed=b_passed,
        b_n=b_n,
        p_value=p_value,
        significant=p_value < alpha and a_rate != b_rate,
        verdict=verdict(a, b, scenario, a_rate, b_rate, p_value, alpha=alpha),
    )
