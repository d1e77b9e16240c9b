"""Whose lag a tick was (the machine's, the loop's own, or a blocked thread's), and the
garbage collector's pauses, as the loop-lag monitor reports them."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref

import pytest

from callproof.looplag import (
    AdmissionGate,
    GcPauses,
    LoopLagMonitor,
    runqueue_wait_s,
    tune_gc,
    tuned_gc,
    whose_lag,
)


def test_waiting_for_a_cpu_for_half_the_lag_is_the_machines_lag() -> None:
    # 50 ms interval + 100 ms late: 60 ms of the lateness spent runnable without a CPU
    assert whose_lag(0.1, 0.15, cpu=0.09, waited=0.06) == "machine"
    assert whose_lag(0.1, 0.15, cpu=0.09, waited=0.04) == "own"


def test_the_loops_own_cpu_for_half_the_span_is_its_own_lag() -> None:
    assert whose_lag(0.2, 0.25, cpu=0.2, waited=0.0) == "own"
    assert whose_lag(0.2, 0.25, cpu=0.2, waited=None) == "own"  # no schedstat: CPU decides


def test_neither_running_nor_waiting_is_a_blocked_thread() -> None:
    # time.sleep on the loop, or another thread holding the GIL
    assert whose_lag(0.3, 0.35, cpu=0.001, waited=0.002) == "blocked"
    assert whose_lag(0.3, 0.35, cpu=0.001, waited=None) == "blocked"


def test_a_tick_on_time_is_not_blamed_on_the_machine() -> None:
    assert whose_lag(0.0, 0.05, cpu=0.0, waited=0.01) == "blocked"
    assert whose_lag(0.0, 0.0, cpu=0.0, waited=0.0) == "own"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="schedstat is Linux's")
def test_runqueue_wait_is_read_from_the_threads_schedstat() -> None:
    first = runqueue_wait_s()
    if first is None:
        pytest.skip("this kernel has no schedstat")
    second = runqueue_wait_s()
    assert second is not None
    assert second >= first >= 0.0


def test_collector_pauses_are_counted_while_started_only() -> None:
    pauses = GcPauses()
    gc.collect()  # not started: not counted
    assert pauses.count == 0
    with pauses:
        gc.collect()
        gc.collect(0)
    assert pauses.count >= 2
    assert pauses.by_generation.get(2, 0) >= 1
    assert pauses.by_generation.get(0, 0) >= 1
    assert pauses.total_s >= pauses.max_s > 0.0
    counted = pauses.count
    gc.collect()
    assert pauses.count == counted
    assert pauses._callback not in gc.callbacks


async def test_the_monitor_reports_whose_lag_and_the_collectors_pauses() -> None:
    async with LoopLagMonitor(interval_s=0.01) as lag:
        await asyncio.sleep(0.05)
        gc.collect()
        await asyncio.sleep(0.03)
    stats = lag.stats()
    assert sum(stats["whose"].values()) == stats["samples"] >= 1
    assert stats["gc_pauses"] >= 1
    assert stats["gc_max_s"] > 0.0
    if runqueue_wait_s() is not None:
        assert stats["runqueue_share"] is not None
        assert 0.0 <= stats["runqueue_share"] <= 1.0
    assert lag.gc._callback not in gc.callbacks  # stopped with the monitor


async def test_the_admission_gate_does_not_hook_the_collector() -> None:
    gate = AdmissionGate(interval_s=0.01)
    await gate.admit()
    assert gate.gc._callback not in gc.callbacks  # a gate is never stopped by some clients
    gate.release()
    gate.stop()


def test_the_gate_lets_a_burst_in_sixteen_per_tick_by_default() -> None:
    assert AdmissionGate().max_batch == 16


def test_tune_gc_freezes_start_up_objects_and_thins_out_full_collections() -> None:
    before = gc.get_threshold()
    try:
        previous = tune_gc(factor=10)
        assert previous == before
        assert gc.get_threshold() == (before[0], before[1], before[2] * 10)
        assert gc.get_freeze_count() > 0  # what was alive at start-up is out of reach
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    with pytest.raises(ValueError, match="at least 1"):
        tune_gc(factor=0)


def test_tuned_gc_gives_the_collector_back_as_it_was() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()

    class Cycle:
        other: object = None

    with tuned_gc(factor=5):
        assert gc.get_threshold() == (before[0], before[1], before[2] * 5)
        assert gc.get_freeze_count() > frozen
        a, b = Cycle(), Cycle()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        del a, b  # garbage created inside the block is collected as usual
        gc.collect()
        assert ref() is None
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen
    with pytest.raises(RuntimeError), tuned_gc():
        raise RuntimeError("the block fails")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen
