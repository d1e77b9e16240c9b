"""Sans-IO pieces of the Bedrock side: frames, event layout, fault step lists."""

from __future__ import annotations

import random

import pytest

import callproof.emulator
from callproof.emulator.bedrock_wire import (
    Event,
    exception_frame,
    frame,
    planned_delays,
    stream_events,
    stream_steps,
)
from callproof.emulator.faults import Fault
from callproof.emulator.models import INSTANT, Latency, ModelProfile, script_turn
from callproof.emulator.streaming import Hang, Headers, Send, Sleep
from callproof.scenarios import tool_call
from callproof.wire.eventstream import EventStreamDecoder, encode_message


@pytest.mark.parametrize("text", ["", "héllo 22°C", "x" * 5000])
def test_fast_frames_are_exactly_what_the_codec_encodes(text: str) -> None:
    event = Event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}})
    data = frame(event, random.Random(1))
    (message,) = EventStreamDecoder().feed(data)
    assert encode_message(message.headers, message.payload) == data
    assert list(message.headers) == [":event-type", ":content-type", ":message-type"]


def test_exception_frame_headers() -> None:
    (message,) = EventStreamDecoder().feed(exception_frame("modelStreamErrorException"))
    assert message.headers == {
        ":exception-type": "modelStreamErrorException",
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    assert b'"originalStatusCode":500' in message.payload


def _events() -> list[Event]:
    profile = ModelProfile("m", latency=INSTANT)
    turn = script_turn(profile, tool_call().conversation, random.Random(0))
    return stream_events(profile, turn, 5)


def test_fault_step_lists() -> None:
    events = _events()
    delays = [0.0] * len(events)
    rng = random.Random(0)
    assert stream_steps(events, delays, Fault.parse("hang_before_headers"), rng) == [Hang()]
    assert stream_steps(events, delays, Fault.parse("hang_no_events"), rng) == [Headers(), Hang()]
    stalled = stream_steps(events, delays, Fault.parse("stall_after:2"), rng)
    assert [type(s) for s in stalled] == [Headers, Send, Send, Hang]
    slow = stream_steps(events, delays, Fault.parse("latency:1.5"), rng)
    assert slow[1] == Sleep(1.5)
    whole = stream_steps(events, delays, None, rng)
    assert len(whole) == len(events) + 1
    cut = stream_steps(events, delays, Fault.parse("close_without_stop"), rng)
    assert len(cut) == len(events) - 1


def test_latency_paces_the_events() -> None:
    events = _events()
    delays = planned_delays(
        events, Latency(first_event_s=0.3, tokens_per_s=100, jitter=0.1), random.Random(0)
    )
    assert 0.2 <= delays[0] <= 0.4
    assert all(d >= 0 for d in delays)
    assert sum(delays[1:]) > 0


def test_public_surface() -> None:
    assert callproof.emulator.__all__ == ["EmulatorServer", "create_app"]
    assert callable(callproof.emulator.create_app)
    assert callable(callproof.emulator.EmulatorServer)
    with pytest.raises(AttributeError):
        _ = callproof.emulator.nothing_here
