"""The event-loop lag monitor: a blocked loop is measured and warned about, once per period."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from callproof.looplag import AdmissionGate, LoopLagMonitor, admitted, is_admitted


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
    # time.sleep blocks without CPU: the loop thread did not run, so the lag is not its work
    assert "the process was not running" in lines[0].getMessage()
    assert len(lag.own_samples) <= stats["samples"] - 2
    assert stats["own_max_s"] is None or stats["own_max_s"] < 0.25


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


async def test_the_gate_lets_calls_through_at_once_on_a_loop_that_keeps_time() -> None:
    gate = AdmissionGate(interval_s=0.01)
    try:
        await gate.admit()
        assert gate.waited == 0
        assert gate.inflight == 1
        gate.release()
        assert gate.inflight == 0
    finally:
        gate.stop()


async def test_a_late_loop_makes_new_calls_wait_in_order_and_halves_the_window() -> None:
    # max_batch 64: the 40 waiters pass at the first on-time tick, before the window grows
    gate = AdmissionGate(interval_s=0.01, target_lag_s=0.02, initial_window=64, max_batch=64)
    gate.start()
    try:
        order: list[int] = []
        time.sleep(0.1)  # noqa: ASYNC251 - the loop falls behind its timers

        async def call(i: int) -> None:
            await gate.admit()
            order.append(i)
            gate.release()

        await asyncio.gather(*(call(i) for i in range(40)))
        assert gate.waited >= 1  # the loop was behind: the first call waited for a tick
        assert order == list(range(40))  # FIFO
        assert gate.max_s >= 0.05
        assert gate.window <= 32  # the late tick halved it
        assert gate.inflight == 0
    finally:
        gate.stop()


async def test_the_window_bounds_calls_in_flight() -> None:
    gate = AdmissionGate(interval_s=10.0, min_window=2, initial_window=2)
    try:
        await gate.admit()
        await gate.admit()
        third = asyncio.create_task(gate.admit())
        await asyncio.sleep(0.01)
        assert not third.done()  # two in flight, a window of two
        gate.release()  # a call ended: its slot goes to the waiter at once
        await asyncio.wait_for(third, 1.0)
        assert gate.inflight == 2
        assert gate.max_inflight == 2
    finally:
        gate.stop()


async def test_stop_releases_every_waiter() -> None:
    gate = AdmissionGate(interval_s=10.0)  # no tick would come in time
    gate.start()
    gate._tokens = 0
    waiting = asyncio.create_task(gate.admit())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    gate.stop()
    await asyncio.wait_for(waiting, 1.0)


async def test_tasks_started_inside_admitted_skip_the_gate() -> None:
    async def probe() -> bool:
        return is_admitted()

    assert not is_admitted()
    with admitted():
        inside = asyncio.create_task(probe())
    outside = asyncio.create_task(probe())
    assert await inside is True
    assert await outside is False
    assert not is_admitted()


def test_the_client_gates_real_network_calls_only() -> None:
    import httpx

    from callproof.client import Client

    assert isinstance(Client().admission, AdmissionGate)
    mock = httpx.MockTransport(lambda request: httpx.Response(200))
    assert Client(transport=mock).admission is None


async def test_an_idle_gate_runs_no_timer() -> None:
    gate = AdmissionGate(interval_s=0.01)
    await gate.admit()
    gate.release()
    await asyncio.sleep(0.2)  # nothing in flight or waiting: the gate's ticks stop
    ticks = len(gate.samples)
    assert ticks <= 3
    await asyncio.sleep(0.1)
    assert len(gate.samples) == ticks
    await gate.admit()  # the next call re-arms it
    await asyncio.sleep(0.05)
    assert len(gate.samples) > ticks
    gate.release()
    gate.stop()


async def test_a_call_gives_its_slot_back_whether_it_ends_well_or_not() -> None:
    import httpx

    from callproof.client import Client
    from callproof.errors import CallError
    from callproof.scenarios import tool_result
    from callproof.targets import Endpoint, Target

    chunk = (
        '{"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,'
        '"delta":{"role":"assistant","content":"22 C"},"finish_reason":"stop"}]}'
    )
    body = f"data: {chunk}\n\ndata: [DONE]\n\n".encode()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/fail/chat/completions"):
            return httpx.Response(503, json={"error": {"message": "busy"}})
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    gate = AdmissionGate()
    conv = tool_result().conversation
    ok = Target("ok", "openai-completions", "m", Endpoint("http://127.0.0.1:9/v1"))
    bad = Target("bad", "openai-completions", "m", Endpoint("http://127.0.0.1:9/fail"))
    async with Client(transport=httpx.MockTransport(handler), admission=gate) as client:
        response = await client.complete(ok, conv)
        assert "22" in response.text
        assert gate.inflight == 0
        with pytest.raises(CallError):
            await client.complete(bad, conv)
        assert gate.inflight == 0
        assert gate.max_inflight == 1


async def test_a_quiet_gate_ticks_slowly_and_a_waiting_call_brings_the_tick_back() -> None:
    # one call in flight, none waiting, none let in since the last tick: quiet_interval_s apart
    gate = AdmissionGate(
        interval_s=0.01, quiet_interval_s=60.0, min_window=1, max_window=1, initial_window=1
    )
    await gate.admit()
    await asyncio.sleep(0.3)
    quiet = len(gate.samples)
    assert quiet <= 1  # one quiet tick at most: every 60 s
    waiter = asyncio.create_task(gate.admit())  # the window is full: it must wait
    for _ in range(2000):  # ~20 s of budget on a starved loop; a quiet tick would take 60 s
        await asyncio.sleep(0.01)
        if len(gate.samples) > quiet:
            break
    assert len(gate.samples) > quiet
    assert not waiter.done()
    gate.release()
    await asyncio.wait_for(waiter, 30)
    gate.release()
    gate.stop()


async def test_the_last_release_stops_the_timer_at_once() -> None:
    gate = AdmissionGate(interval_s=0.01)
    await gate.admit()
    gate.release()
    ticks = len(gate.samples)
    await asyncio.sleep(0.2)  # a loop stopped here would have fired a pending tick late
    assert len(gate.samples) == ticks
    gate.stop()
