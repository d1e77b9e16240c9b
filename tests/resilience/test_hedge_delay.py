"""The hedge delay: off, fixed, or a quantile of observed healthy first-event latency."""

from __future__ import annotations

import pytest

from callproof.resilience import HedgePolicy, LatencyWindow
from callproof.resilience.hedge import hedge_delay


def window(*values: float) -> LatencyWindow:
    w = LatencyWindow(50)
    for v in values:
        w.add(v)
    return w


def test_off_and_no_budget_mean_no_hedge() -> None:
    assert hedge_delay(HedgePolicy(mode="off"), window(0.1, 0.2, 0.3)) is None
    assert hedge_delay(HedgePolicy(mode="fixed", max_extra=0), None) is None


def test_fixed_delay_ignores_latency() -> None:
    assert hedge_delay(HedgePolicy(mode="fixed", delay_s=0.7), window(5.0, 6.0, 7.0)) == 0.7


def test_quantile_after_min_samples_and_cold_start_before() -> None:
    policy = HedgePolicy(mode="quantile", quantile=0.5, factor=2.0, min_samples=3, delay_s=9.0)
    assert hedge_delay(policy, window(0.1, 0.2)) == 9.0
    assert hedge_delay(policy, None) == 9.0
    assert hedge_delay(policy, window(0.1, 0.2, 0.3)) == pytest.approx(0.4)


def test_learned_delay_never_goes_below_the_floor() -> None:
    # Sub-millisecond healthy answers (a local model, the emulator) must not make scheduling
    # noise start backups.
    policy = HedgePolicy(mode="quantile", min_samples=3, min_delay_s=0.25)
    assert hedge_delay(policy, window(0.001, 0.002, 0.001)) == 0.25
    assert (
        hedge_delay(HedgePolicy(mode="quantile", min_delay_s=0.0), window(0.001, 0.002, 0.001))
        < 0.01
    )
