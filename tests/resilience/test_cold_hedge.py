"""A call waiting on a cold-start hedge delay is woken when another call teaches the target's
latency, instead of every cold call polling the clock 20 times a second (at 5,000 concurrent
calls that poll was 100,000 timer fires a second before any call had succeeded)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from callproof.conversation import Conversation
from callproof.resilience import HedgePolicy, RoutePolicy, Router
from callproof.scenarios import tool_result

from .fakes import FakeClient, Play, pause, target

CONV: Conversation = tool_result().conversation


async def test_a_cold_call_waits_without_polling_the_clock() -> None:
    # alone and cold: nothing teaches the latency, so the call hedges at the 5 s cold delay,
    # looking at it again only every _COLD_POLL_S (0.5 s), not 20 times a second
    client = FakeClient({"a": [Play("hang")], "b": [Play()]})
    policy = RoutePolicy(hedge=HedgePolicy(mode="quantile", min_samples=3, delay_s=5.0))
    waits: list[float | None] = []
    clock = client.clock

    class Counting:
        def monotonic(self) -> float:
            return clock.monotonic()

        def __call__(self) -> float:
            return clock.monotonic()

        async def sleep(self, seconds: float) -> None:
            await clock.sleep(seconds)

        def timeout_at(self, deadline: float | None) -> Any:
            waits.append(None if deadline is None else deadline - clock.monotonic())
            return clock.timeout_at(deadline)

    router = Router("r", [target("a", 10.0), target("b")], client=client, policy=policy)
    router.clock = Counting()
    resp = await router.complete(CONV)
    assert [(a["target"], a["outcome"]) for a in resp.attempts] == [
        ("a", "abandoned"),
        ("b", "ok"),
    ]
    assert resp.attempts[1]["started_s"] == pytest.approx(5.0, abs=0.01)
    assert 5 <= len(waits) <= 14  # was 100 with a 50 ms poll


async def test_learning_a_latency_wakes_the_cold_calls_at_once() -> None:
    # call 1 hangs cold (delay 5 s); calls 2-4 teach the latency at ~0.02 s; call 1 is woken
    # by the third success and hedges at the learned delay, not at its next 0.5 s look
    client = FakeClient({"a": [Play("hang")] + [Play(delay=0.02)] * 3, "b": [Play()]})
    policy = RoutePolicy(
        hedge=HedgePolicy(mode="quantile", min_samples=3, delay_s=5.0, min_delay_s=0.05)
    )
    router = Router("r", [target("a", 10.0), target("b")], client=client, policy=policy)
    first = asyncio.create_task(router.complete(CONV))
    await pause(client.clock, 0.01)
    await asyncio.gather(*(router.complete(CONV) for _ in range(3)))
    resp = await first
    hedge = resp.attempts[1]
    assert hedge["target"] == "b"
    assert hedge["started_s"] < 0.2  # woken at ~0.03 s, hedged at the 0.05 s floor
    assert not router._cold  # nobody left waiting to be woken
