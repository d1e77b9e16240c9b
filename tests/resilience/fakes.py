"""A scripted stand-in for the client's ``stream()`` protocol, for the router's logic.

The router only needs ``client.stream(target, conversation, timeouts=)`` yielding an async
iterator of events with ``.response``; these fakes play scripted behaviours with delays and
watchdog errors on a :class:`~callproof.clock.VirtualClock` (the client's ``clock``, which the
router takes as its own), so the timing logic runs the same on an idle and a loaded machine,
and count opened and closed streams. The emulator tests (``test_router_emulator.py``) run the
same mechanisms over the real client and wire.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from callproof.clock import Clock, VirtualClock, timeout_after
from callproof.conversation import Conversation
from callproof.errors import CallError, StallMidStream, StallNoEvents
from callproof.events import Event, Response, StreamStart, StreamStop, TextDelta, Usage
from callproof.targets import Endpoint, Target, Timeouts


def target(name: str, first_event: float = 1.0) -> Target:
    return Target(
        name=name,
        api="bedrock-converse-stream",
        model=f"model-{name}",
        endpoint=Endpoint("http://127.0.0.1:9"),
        timeouts=Timeouts(connect=1.0, first_event=first_event, idle=0.1, deadline=5.0),
    )


async def pause(clock: Clock, seconds: float) -> None:
    """Wait ``seconds`` on ``clock`` without it counting as a ``sleep`` (``vc.sleeps`` records
    the router's own waits only)."""
    try:
        async with timeout_after(clock, seconds):
            await asyncio.Event().wait()
    except TimeoutError:
        pass


@dataclass
class Play:
    """One scripted answer: ``kind`` is ok | hang | stall_after | empty | raise."""

    kind: str = "ok"
    delay: float = 0.0
    error: CallError | None = None
    text: str = "It is 22 degrees."
    usage: Usage | None = None


class FakeStream:
    def __init__(self, play: Play, timeouts: Timeouts, clock: Clock) -> None:
        self.play = play
        self.timeouts = timeouts
        self.response = Response()
        self._clock = clock
        self._t0 = clock.monotonic()

    def _accept(self, event: Event) -> Event:
        t = self._clock.monotonic() - self._t0
        timings = self.response.timings
        if timings.first_event_s is None:
            timings.first_event_s = t
        match event:
            case TextDelta(text=text):
                self.response.text += text
                if timings.first_content_s is None:
                    timings.first_content_s = t
            case StreamStop(stop_reason=stop, raw_stop_reason=raw, usage=usage):
                self.response.stop_reason = stop
                self.response.raw_stop_reason = raw
                self.response.usage = usage
                timings.total_s = t
            case _:
                pass
        return event

    async def __aiter__(self) -> AsyncIterator[Event]:
        p = self.play
        first = self.timeouts.first_event or 60.0
        if p.kind == "hang":
            await pause(self._clock, first)
            raise StallNoEvents("no event", elapsed_s=first, limit_s=first)
        await pause(self._clock, min(p.delay, first))
        if p.delay > first:
            raise StallNoEvents("no event", elapsed_s=first, limit_s=first)
        yield self._accept(StreamStart())
        if p.kind == "stall_after":
            if p.text:
                yield self._accept(TextDelta(0, p.text))
            await pause(self._clock, self.timeouts.idle or 1.0)
            err = StallMidStream("idle", elapsed_s=1.0, limit_s=1.0)
            err.response = self.response
            raise err
        if p.kind == "ok":
            yield self._accept(TextDelta(0, p.text))
        yield self._accept(StreamStop("end_turn", "end_turn", p.usage))


@dataclass
class FakeClient:
    """``scripts[target_name]`` is a list of plays used in order (the last one repeats)."""

    scripts: dict[str, list[Play]]
    #: The clock every delay runs on; a router over this client takes it as its own.
    clock: Clock = field(default_factory=VirtualClock)
    opened: Counter[str] = field(default_factory=Counter)
    closed: Counter[str] = field(default_factory=Counter)
    timeouts_seen: list[tuple[str, float | None]] = field(default_factory=list)

    @asynccontextmanager
    async def stream(
        self, target: Target, conversation: Conversation, *, timeouts: Timeouts | None = None
    ) -> AsyncIterator[Any]:
        plays = self.scripts[target.name]
        n = self.opened[target.name]
        play = plays[min(n, len(plays) - 1)]
        self.opened[target.name] += 1
        t = timeouts or target.timeouts
        self.timeouts_seen.append((target.name, t.first_event))
        try:
            if play.kind == "raise":
                assert play.error is not None
                await pause(self.clock, play.delay)
                raise play.error
            yield FakeStream(play, t, self.clock)
        finally:
            self.closed[target.name] += 1

    @property
    def in_flight(self) -> int:
        return sum(self.opened.values()) - sum(self.closed.values())
