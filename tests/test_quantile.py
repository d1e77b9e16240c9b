"""One quantile formula (callproof.quantile) behind the reports, the watchdog and the loop lag."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callproof.looplag import LoopLagMonitor
from callproof.probe import stats
from callproof.quantile import quantile
from callproof.resilience import LatencyWindow

VALUES = st.lists(st.floats(min_value=0, max_value=1e4), min_size=2, max_size=60)


def test_linear_interpolation_between_order_statistics() -> None:
    assert quantile([1.0, 2.0], 0.5) == 1.5
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.9) == pytest.approx(3.7)  # numpy's value
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.0) == 1.0
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0], 1.0) == 5.0
    assert quantile([4.0], 0.99) == 4.0
    assert quantile([], 0.5) is None
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        quantile([1.0], 1.5)


@given(VALUES, st.integers(1, 999))
def test_it_is_statistics_inclusive_method(values: list[float], k: int) -> None:
    cuts = statistics.quantiles(values, n=1000, method="inclusive")
    assert quantile(sorted(values), k / 1000) == pytest.approx(cuts[k - 1], rel=1e-9, abs=1e-9)


@given(VALUES, st.sampled_from([0.5, 0.9, 0.99]))
def test_every_caller_uses_it(values: list[float], q: float) -> None:
    ordered = sorted(values)
    expected = quantile(ordered, q)
    assert stats.percentile(ordered, q * 100) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    window = LatencyWindow(size=len(values))
    for v in values:
        window.add(v)
    assert window.quantile(q) == expected
    lag = LoopLagMonitor()
    lag.samples.extend(values)
    assert lag.quantile(q) == expected
