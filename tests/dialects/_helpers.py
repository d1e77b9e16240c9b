"""Feeding helpers for the dialect tests: awkward chunkings and a summary of decoded events."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from callproof.dialects.base import StreamDecoder
from callproof.events import Event, ToolCall, Usage


def split_sizes(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """``data`` in chunks of the given sizes, cycled."""
    pos = 0
    for size in itertools.cycle(sizes):
        if pos >= len(data):
            return
        yield data[pos : pos + size]
        pos += size


#: The chunkings every recording is fed in: one byte, a 7/3/11 cycle, and whole.
CHUNKINGS: dict[str, list[int]] = {"1-byte": [1], "7-3-11": [7, 3, 11], "whole": [1 << 30]}


def decode(decoder: StreamDecoder, data: bytes, sizes: list[int] | None = None) -> list[Event]:
    """Every event of ``data`` fed in chunks of ``sizes`` (whole when None), then closed."""
    events: list[Event] = []
    for chunk in split_sizes(data, sizes or [1 << 30]):
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events


@dataclass
class Summary:
    """What a stream amounts to, accumulated like the client's Response."""

    text: str = ""
    thinking: str = ""
    signature: str | None = None
    redacted: list[bytes] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop_reason: str | None = None
    raw_stop_reason: str | None = None
    usage: Usage | None = None
    starts: int = 0
    stops: int = 0
    model: str | None = None
    kinds: list[str] = field(default_factory=list)

    @property
    def calls(self) -> list[dict[str, Any]]:
        return [tc.to_dict() for tc in self.tool_calls]


def summarise(events: list[Event]) -> Summary:
    s = Summary()
    args: dict[int, str] = {}
    for ev in events:
        s.kinds.append(ev.kind)
        match ev.kind:
            case "start":
                s.starts += 1
                s.model = ev.model
            case "text_delta":
                s.text += ev.text
            case "thinking_delta":
                s.thinking += ev.text
                if ev.signature:
                    s.signature = ev.signature
                if ev.redacted is not None:
                    s.redacted.append(ev.redacted)
            case "tool_call_start":
                args[ev.index] = ""
            case "tool_call_delta":
                args[ev.index] += ev.arguments
            case "tool_call_end":
                assert args.pop(ev.index) == ev.arguments, "deltas must add up to the end"
                s.tool_calls.append(ToolCall.from_raw(ev.id, ev.name, ev.arguments))
            case "stop":
                s.stops += 1
                s.stop_reason = ev.stop_reason
                s.raw_stop_reason = ev.raw_stop_reason
                s.usage = ev.usage
    assert not args, f"tool calls never ended: {args}"
    return s
