"""The one injectable clock: a virtual clock that moves only when every task waits, the
resolution of the older clock/sleep arguments, and the client and router sharing one clock."""

from __future__ import annotations

import asyncio
import time

import pytest

from callproof.client import Client
from callproof.clock import REAL_CLOCK, Clock, RealClock, VirtualClock, as_clock, timeout_after
from callproof.errors import StallBeforeHeaders
from callproof.resilience import Router
from callproof.resilience import VirtualClock as ReExported
from callproof.scenarios import tool_result
from callproof.targets import Endpoint, Target, Timeouts

from .fakes import FakeClient


async def test_concurrent_sleeps_wake_in_virtual_time_order() -> None:
    vc = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await vc.sleep(seconds)
        woke.append((name, vc.monotonic()))

    await asyncio.gather(sleeper("late", 5.0), sleeper("early", 1.0), sleeper("mid", 2.5))
    assert woke == [("early", 1.0), ("mid", 2.5), ("late", 5.0)]
    assert vc.sleeps == [5.0, 1.0, 2.5]
    assert vc.pending() == 0


async def test_a_virtual_deadline_raises_timeout_error_at_its_time() -> None:
    vc = VirtualClock()
    never = asyncio.Event()
    with pytest.raises(TimeoutError):
        async with vc.timeout_at(7.5):
            await never.wait()
    assert vc.monotonic() == 7.5
    # a deadline that is not reached does not fire, and leaves no timer behind
    async with timeout_after(vc, 100.0):
        await vc.sleep(1.0)
    assert vc.monotonic() == 8.5
    assert vc.pending() == 0
    async with vc.timeout_at(None):
        await vc.sleep(0.5)
    assert vc.monotonic() == 9.0


async def test_work_that_can_run_runs_before_time_moves() -> None:
    vc = VirtualClock()
    steps = 0

    async def busy() -> None:
        nonlocal steps
        for _ in range(50):
            steps += 1
            await asyncio.sleep(0)  # ready again at once: time must wait for it

    async def timed() -> float:
        await vc.sleep(1.0)
        return float(steps)

    _, seen = await asyncio.gather(busy(), timed())
    assert seen == 50


async def test_follow_real_time_advances_an_offset_without_waiting() -> None:
    vc = VirtualClock(follow_real_time=True)
    t0 = time.monotonic()
    before = vc.monotonic()
    await vc.sleep(30.0)
    assert vc.monotonic() - before >= 30.0
    assert time.monotonic() - t0 < 30.0
    assert vc.sleeps == [30.0]


def test_as_clock_resolves_the_older_arguments() -> None:
    vc = VirtualClock()
    assert as_clock() is REAL_CLOCK
    assert as_clock(vc) is vc
    assert as_clock(vc.clock, sleep=vc.sleep) is vc  # Router(clock=vc.clock, sleep=vc.sleep)
    assert as_clock(vc.monotonic) is vc
    assert as_clock(None, sleep=vc.sleep) is vc
    composed = as_clock(lambda: 42.0)
    assert composed.monotonic() == 42.0
    assert composed() == 42.0
    real_sleep_virtual = VirtualClock(follow_real_time=True)
    mixed = as_clock(None, sleep=real_sleep_virtual.sleep)
    assert mixed is not real_sleep_virtual
    assert abs(mixed.monotonic() - time.monotonic()) < 1.0
    assert isinstance(RealClock(), Clock)
    assert isinstance(vc, Clock)
    assert not isinstance(time.monotonic, Clock)
    assert ReExported is VirtualClock


async def test_the_router_takes_the_clients_clock() -> None:
    client = FakeClient({"a": []})
    router = Router(
        "r", [Target("a", "bedrock-converse-stream", "m", Endpoint("http://x"))], client=client
    )
    assert router.clock is client.clock
    vc = VirtualClock()
    assert Router("r", router.targets, client=client, clock=vc).clock is vc
    async with Client(clock=vc) as real:
        assert real.clock is vc
        assert Router("r", router.targets, client=real).clock is vc
    async with Client() as default:
        assert default.clock is REAL_CLOCK


async def test_the_clients_watchdog_runs_on_the_injected_clock() -> None:
    """A server that accepts and never answers: on a virtual clock the 60 s first-event
    timeout fires after exactly 60 virtual seconds, at once in real time."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; returns when the client disconnects
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    target = Target(
        "silent",
        "openai-completions",
        "m",
        Endpoint(f"http://127.0.0.1:{port}/v1"),
        timeouts=Timeouts(connect=5.0, first_event=60.0, idle=30.0, deadline=300.0),
    )
    vc = VirtualClock()
    t0 = time.monotonic()
    try:
        async with Client(clock=vc) as client:
            with pytest.raises(StallBeforeHeaders) as info:
                await client.complete(target, tool_result().conversation)
    finally:
        server.close()
        await server.wait_closed()
    assert info.value.elapsed_s == 60.0
    assert vc.monotonic() == 60.0
    assert time.monotonic() - t0 < 30.0  # no real minute was spent
