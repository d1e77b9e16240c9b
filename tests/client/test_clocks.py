"""The client's clocks run on decoded events: stalls before headers, before the first event,
mid-stream and the total deadline, each interrupted promptly, with timings on the error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from callproof.client import Client
from callproof.conversation import Conversation, UserMessage
from callproof.errors import (
    DeadlineExceeded,
    StallBeforeHeaders,
    StallMidStream,
    StallNoEvents,
)
from callproof.events import Event
from callproof.targets import Timeouts
from tests.client.conftest import Paced, make_target
from tests.client.streams import KEEPALIVE, bedrock_frames, chat_frames

CONV = Conversation(messages=(UserMessage.text("hi"),))
ES = {"content-type": "application/vnd.amazon.eventstream", "x-amzn-requestid": "rid-9"}
SSE = {"content-type": "text/event-stream", "x-request-id": "rid-8"}


def transport(
    steps: list[tuple[float, bytes]],
    *,
    headers: dict[str, str],
    hang: bool = False,
    header_delay: float = 0.0,
) -> httpx.AsyncBaseTransport:
    async def handler(request: httpx.Request) -> httpx.Response:
        if header_delay:
            await asyncio.sleep(header_delay)
        return httpx.Response(200, headers=headers, stream=Paced(steps, hang=hang))

    return httpx.MockTransport(handler)


async def call(tr: httpx.AsyncBaseTransport, api: str, timeouts: Timeouts) -> tuple[object, float]:
    start = time.monotonic()
    async with Client(transport=tr) as client:
        try:
            result: object = await client.complete(make_target(api), CONV, timeouts=timeouts)
        except Exception as exc:
            result = exc
    return result, time.monotonic() - start


T = Timeouts(first_event=0.3, idle=0.3, deadline=5.0)


async def aenumerate(it: AsyncIterator[Event]) -> AsyncIterator[tuple[int, Event]]:
    i = 0
    async for item in it:
        yield i, item
        i += 1


async def test_stall_before_headers() -> None:
    tr = transport([], headers=ES, header_delay=5)
    err, elapsed = await call(tr, "bedrock-converse-stream", T)
    assert isinstance(err, StallBeforeHeaders)
    assert 0.25 < elapsed < 1.5
    assert err.response is not None
    assert err.response.timings.headers_s is None
    assert err.response.timings.total_s == pytest.approx(0.3, abs=0.2)
    assert err.outcome == "stall_before_headers"
    assert err.target == "t-bedrock-converse-stream"


async def test_stall_no_events_after_headers() -> None:
    tr = transport([], headers=ES, hang=True)
    err, elapsed = await call(tr, "bedrock-converse-stream", T)
    assert isinstance(err, StallNoEvents)
    assert elapsed < 1.5
    assert err.response is not None
    assert err.response.timings.headers_s is not None
    assert err.response.timings.first_event_s is None
    assert err.request_id == "rid-9"
    assert err.limit_s == 0.3


async def test_keepalives_do_not_count_as_events() -> None:
    # Keep-alive comments every 0.05 s for ever: bytes flow, but no event ever comes.
    steps = [(0.05, KEEPALIVE)] * 100
    err, elapsed = await call(transport(steps, headers=SSE), "openai-completions", T)
    assert isinstance(err, StallNoEvents)
    assert elapsed < 1.5
    assert err.response is not None
    assert err.response.keepalives >= 3
    assert "keep-alive" in err.message


async def test_keepalives_do_not_reset_the_idle_clock() -> None:
    frames = chat_frames()
    steps = [(0, f) for f in frames[:3]] + [(0.05, KEEPALIVE)] * 100
    err, elapsed = await call(transport(steps, headers=SSE), "openai-completions", T)
    assert isinstance(err, StallMidStream)
    assert elapsed < 1.5
    assert err.response is not None
    assert err.response.text  # the partial text is kept
    assert err.response.timings.max_gap_s is not None
    assert err.response.timings.max_gap_s >= 0.3


async def test_stall_mid_stream_bedrock() -> None:
    frames = bedrock_frames()
    err, _elapsed = await call(
        transport([(0, f) for f in frames[:4]], headers=ES, hang=True),
        "bedrock-converse-stream",
        T,
    )
    assert isinstance(err, StallMidStream)
    assert err.outcome == "stall_mid_stream"
    assert err.response is not None
    assert err.response.text.startswith("The temperature")
    assert err.response.timings.first_event_s is not None


async def test_deadline_exceeded_on_a_slow_trickle() -> None:
    # Every gap is under the idle timeout, but the whole exceeds the deadline.
    frames = bedrock_frames(" ".join(["word"] * 100))
    steps = [(0.05, f) for f in frames]
    err, elapsed = await call(
        transport(steps, headers=ES),
        "bedrock-converse-stream",
        Timeouts(first_event=0.3, idle=0.3, deadline=0.5),
    )
    assert isinstance(err, DeadlineExceeded)
    assert 0.4 < elapsed < 1.5
    assert err.response is not None
    assert err.response.timings.total_s == pytest.approx(0.5, abs=0.2)


async def test_paced_stream_within_clocks_is_ok_and_timed() -> None:
    frames = bedrock_frames()
    steps = [(0.1, frames[0])] + [(0.02, f) for f in frames[1:]]
    resp, _ = await call(transport(steps, headers=ES), "bedrock-converse-stream", T)
    assert not isinstance(resp, Exception), resp
    t = resp.timings  # type: ignore[attr-defined]
    assert t.headers_s < t.first_event_s <= t.first_content_s <= t.total_s
    assert t.first_event_s >= 0.09
    assert 0.015 <= t.max_gap_s < 0.3
    assert resp.text.strip() == "The temperature in Tokyo is 22°C."  # type: ignore[attr-defined]


async def test_slow_consumer_is_not_a_stall() -> None:
    frames = chat_frames("a b c d")
    # each chunk is sent 0.05 s after the client asks for it (the server waits for its reader)
    tr = transport([(0.05, f) for f in frames], headers=SSE)
    async with (
        Client(transport=tr) as client,
        client.stream(make_target("openai-completions"), CONV, timeouts=T) as s,
    ):
        async for i, _ in aenumerate(s):
            # the consumer dwells longer than the idle timeout between two events
            await asyncio.sleep(0.4 if i == 1 else 0)
    assert s.response.stop_reason == "end_turn"


async def test_no_timeouts_means_no_clock() -> None:
    frames = chat_frames("a b")
    resp, _ = await call(
        transport([(0.01, f) for f in frames], headers=SSE),
        "openai-completions",
        Timeouts(connect=None, first_event=None, idle=None, deadline=None),
    )
    assert not isinstance(resp, Exception), resp
