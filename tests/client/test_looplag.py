"""The event-loop lag monitor: a blocked loop is measured and warned about, once per period."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from callproof.looplag import LoopLagMonitor


async def test_a_blocked_loop_is_measured_and_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="callproof.looplag")
    async with LoopLagMonitor(interval_s=0.01, warn_above_s=0.1, warn_every_s=3600) as lag:
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # noqa: ASYNC251 - the point: starve the loop
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # noqa: ASYNC251
        await asyncio.sleep(0.05)
    stats = lag.stats()
    assert stats["max_s"] >= 0.25  # a timer due during the block ran at least that late
    assert stats["warnings"] >= 2
    assert stats["samples"] >= 3
    assert stats["p99_s"] is not None
    assert stats["p50_s"] <= stats["max_s"]
    # rate-limited: two starved ticks, one warning line
    lines = [r for r in caplog.records if "event loop lagged" in r.getMessage()]
    assert len(lines) == 1
    assert "lower the concurrency" in lines[0].getMessage()


async def test_stop_ends_sampling() -> None:
    lag = LoopLagMonitor(interval_s=0.01)
    lag.start()
    lag.start()  # idempotent
    await asyncio.sleep(0.1)
    lag.stop()
    taken = len(lag.samples)
    assert taken >= 1
    await asyncio.sleep(0.1)
    assert len(lag.samples) == taken


def test_no_samples_no_quantile() -> None:
    assert LoopLagMonitor().quantile(0.99) is None
    with pytest.raises(ValueError, match="positive"):
        LoopLagMonitor(interval_s=0)
