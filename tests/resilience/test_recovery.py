"""Breaker recovery through the router: a primary back from an outage gets traffic again
within seconds (virtual clock; the outage is a scripted window of virtual time)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from callproof.conversation import Conversation
from callproof.errors import HTTPStatusError
from callproof.resilience import BreakerPolicy, HedgePolicy, RoutePolicy, Router, VirtualClock
from callproof.scenarios import tool_result
from callproof.targets import Target, Timeouts

from .fakes import FakeClient, Play, target

CONV = tool_result().conversation


class Outage:
    """A client whose ``down`` target answers 503 while the virtual time is in [start, end)."""

    def __init__(self, vc: VirtualClock, down: str, start: float, end: float) -> None:
        self.inner = FakeClient({"a": [Play()], "b": [Play()]}, clock=vc)
        self.vc, self.down, self.start, self.end = vc, down, start, end
        self.sent: list[tuple[float, str]] = []

    @asynccontextmanager
    async def stream(
        self, target: Target, conversation: Conversation, *, timeouts: Timeouts | None = None
    ) -> AsyncIterator[Any]:
        now = self.vc.clock()
        self.sent.append((now, target.name))
        if target.name == self.down and self.start <= now < self.end:
            raise HTTPStatusError(
                "503 ServiceUnavailableException",
                status=503,
                error_type="ServiceUnavailableException",
            )
        async with self.inner.stream(target, conversation, timeouts=timeouts) as s:
            yield s


async def test_a_primary_back_from_an_outage_gets_traffic_within_seconds() -> None:
    vc = VirtualClock()
    client = Outage(vc, "a", start=0.0, end=12.0)
    policy = RoutePolicy(
        hedge=HedgePolicy(mode="off"),
        breaker=BreakerPolicy(failures=2, open_s=30.0, reopen_initial_s=2.0, window=20),
    )
    router = Router(
        "r",
        [target("a"), target("b")],
        client=client,
        policy=policy,
        clock=vc.clock,
        sleep=vc.sleep,
    )
    served: list[tuple[float, str]] = []
    while vc.now < 30.0:
        resp = await router.complete(CONV)
        winner = next(a for a in resp.attempts if a["outcome"] == "ok")
        served.append((vc.now, winner["target"]))
        vc.now = float(int(vc.now) + 1)  # one call a second
    # during the outage b serves; a is only probed, never hammered
    probes = [t for t, name in client.sent if name == "a" and 2.0 <= t < 12.0]
    assert probes == [3.0, 7.0]  # opened at 1 s for 2 s, then 4 s after a failed probe
    # back within seconds of the outage's end (the next probe: 7 + 8 = 15), not after open_s
    first_back = min(t for t, name in served if name == "a" and t >= 12.0)
    assert first_back == 15.0
    assert all(name == "a" for t, name in served if t >= first_back)
    assert router.breaker_states() == {"a": "closed", "b": "closed"}
    moves = [(t["to"], t["delay_s"]) for t in router.breaker_transitions() if t["target"] == "a"]
    assert moves == [
        ("open", 2.0),
        ("half_open", None),
        ("open", 4.0),
        ("half_open", None),
        ("open", 8.0),
        ("half_open", None),
        ("closed", None),
    ]
