"""The adaptive first-event watchdog and its latency window."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callproof.quantile import quantile
from callproof.resilience import AdaptiveWatchdog, LatencyWindow, WatchdogPolicy
from callproof.targets import Endpoint, Target, Timeouts

TARGET = Target(
    name="slow-thinker",
    api="bedrock-converse-stream",
    model="m",
    endpoint=Endpoint("http://127.0.0.1:1"),
    timeouts=Timeouts(first_event=60.0, idle=30.0, deadline=300.0),
)


def test_quantile_interpolates() -> None:
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert quantile([1.0, 2.0], 0.5) == 1.5
    assert quantile([4.0], 0.99) == 4.0
    assert quantile([], 0.5) is None


@given(st.lists(st.floats(min_value=0, max_value=1e4), min_size=1, max_size=50), st.floats(0.01, 1))
def test_quantile_within_range(values: list[float], q: float) -> None:
    v = sorted(values)
    assert v[0] <= quantile(v, q) <= v[-1]


def test_window_is_bounded() -> None:
    w = LatencyWindow(size=3)
    for x in (10.0, 20.0, 1.0, 2.0, 3.0):
        w.add(x)
    assert len(w) == 3
    assert w.quantile(1.0) == 3.0
    w.add(float("nan"))
    w.add(-1.0)
    assert len(w) == 3


def test_cold_start_uses_the_configured_timeout() -> None:
    wd = AdaptiveWatchdog(WatchdogPolicy(min_samples=5))
    for _ in range(4):
        wd.observe(TARGET.name, 0.1)
    assert wd.first_event_timeout(TARGET) == 60.0


def test_learned_timeout_is_quantile_times_factor_clamped() -> None:
    wd = AdaptiveWatchdog(
        WatchdogPolicy(quantile=0.99, factor=3.0, floor_s=2.0, ceiling_s=20.0, min_samples=5)
    )
    for _ in range(10):
        wd.observe(TARGET.name, 0.1)  # fast target: the floor applies
    assert wd.first_event_timeout(TARGET) == 2.0
    wd2 = AdaptiveWatchdog(
        WatchdogPolicy(quantile=0.99, factor=3.0, floor_s=2.0, ceiling_s=20.0, min_samples=5)
    )
    for x in (4.0, 4.5, 5.0, 5.5, 6.0):  # a slow but healthy thinking model
        wd2.observe(TARGET.name, x)
    timeout = wd2.first_event_timeout(TARGET)
    assert timeout == pytest.approx(quantile([4.0, 4.5, 5.0, 5.5, 6.0], 0.99) * 3.0)
    assert timeout is not None
    assert timeout > 6.0
    for _ in range(10):
        wd2.observe(TARGET.name, 50.0)
    assert wd2.first_event_timeout(TARGET) == 20.0  # the ceiling
    assert wd2.timeouts_for(TARGET).first_event == 20.0
    assert wd2.timeouts_for(TARGET).idle == 30.0


def test_fixed_mode_keeps_the_configured_timeout() -> None:
    wd = AdaptiveWatchdog(WatchdogPolicy(mode="fixed", min_samples=1))
    wd.observe(TARGET.name, 0.1)
    assert wd.first_event_timeout(TARGET) == 60.0
