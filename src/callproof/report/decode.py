"""A capture file decoded into readable, timed events for the reports.

A capture keeps the body as base64 chunks with their arrival times (see
:mod:`callproof.capture`). For a person that is noise: this module feeds the chunks through the
project's sans-IO decoders (:class:`~callproof.wire.eventstream.EventStreamDecoder` for Bedrock's
``application/vnd.amazon.eventstream``, :class:`~callproof.wire.sse.SSEDecoder` for
``text/event-stream``) and gives one :class:`TimedEvent` per frame or SSE event, stamped with the
time its last byte arrived (seconds since the request was sent), headers and JSON payload shown
as compact text. A body that is neither (a JSON error answer) is shown as one ``body`` event.
The request, the response headers (status, request id) and the end of the stream (EOF, or the
client giving up, and why) are events too, so a hang reads as a gap before ``end``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from callproof.capture import Capture, read_capture
from callproof.errors import CallproofError
from callproof.wire.eventstream import EventStreamDecoder
from callproof.wire.sse import SSEComment, SSEDecoder

__all__ = ["REQUEST_ID_HEADERS", "TimedEvent", "decode_capture_events", "format_events"]

#: Response headers that carry the provider's request id, in order of preference.
REQUEST_ID_HEADERS = ("x-amzn-requestid", "x-request-id", "request-id", "x-amz-request-id")
#: Events shown per capture (a long stream is cut with a count of the rest).
_MAX_EVENTS = 200


@dataclass(frozen=True, slots=True)
class TimedEvent:
    """One readable line of a capture: when (seconds since the request), what, and the text."""

    t: float
    kind: str
    text: str


def _compact(payload: bytes | str) -> str:
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _header(headers: list[list[str]], names: tuple[str, ...]) -> str | None:
    lowered = {str(k).lower(): str(v) for k, v in headers}
    for name in names:
        if name in lowered:
            return lowered[name]
    return None


def _body_events(capture: Capture, content_type: str) -> list[TimedEvent]:
    events: list[TimedEvent] = []
    if "eventstream" in content_type:
        frames = EventStreamDecoder()
        for t, data in capture.chunks:
            for message in frames.feed(data):
                kind = (
                    message.event_type
                    or message.exception_type
                    or message.header(":error-code")
                    or message.message_type
                    or "frame"
                )
                shown = {
                    k: v
                    for k, v in message.headers.items()
                    if k not in (":event-type", ":content-type", ":message-type")
                }
                head = f"{json.dumps(shown, default=str)} " if shown else ""
                label = "exception" if message.message_type in ("exception", "error") else "event"
                events.append(TimedEvent(t, f"{label} {kind}", head + _compact(message.payload)))
        if frames.pending:
            events.append(
                TimedEvent(capture.chunks[-1][0], "partial", f"{frames.pending} bytes undecoded")
            )
        return events
    if "event-stream" in content_type:
        sse = SSEDecoder()
        for t, data in capture.chunks:
            for item in sse.feed(data):
                if isinstance(item, SSEComment):
                    events.append(TimedEvent(t, "comment", item.text))
                else:
                    events.append(TimedEvent(t, f"sse {item.event}", _compact(item.data)))
        return events
    if capture.chunks:
        body = b"".join(data for _, data in capture.chunks)
        events.append(TimedEvent(capture.chunks[-1][0], "body", _compact(body)))
    return events


def decode_capture_events(path: Path) -> list[TimedEvent]:
    """Every readable event of the capture at ``path`` (a :class:`ConfigError` if it is not
    one); undecodable bytes end the list with an ``undecodable`` event naming the error."""
    capture = read_capture(path)
    events: list[TimedEvent] = []
    if capture.request is not None:
        url = str(capture.request.get("url") or "")
        events.append(TimedEvent(0.0, "request", f"{capture.request.get('method')} {url}"))
    content_type = ""
    if capture.response is not None:
        headers = capture.response["headers"]
        content_type = _header(headers, ("content-type",)) or ""
        request_id = _header(headers, REQUEST_ID_HEADERS)
        text = f"HTTP {capture.response['status']}"
        if content_type:
            text += f" {content_type}"
        if request_id:
            text += f", request id {request_id}"
        events.append(TimedEvent(float(capture.response["t"]), "headers", text))
    try:
        events += _body_events(capture, content_type)
    except CallproofError as exc:
        at = capture.chunks[-1][0] if capture.chunks else 0.0
        events.append(TimedEvent(at, "undecodable", str(exc)))
    end = capture.end
    if end is not None:
        error = end.get("error")
        if isinstance(error, dict) and error:
            what = error.get("outcome") or error.get("kind") or "error"
            text = f"{what}: {error.get('message') or ''}".strip().rstrip(":")
        else:
            text = "end of stream (EOF)" if end.get("eof") else "connection left open"
        if end.get("note"):
            text += f" ({end['note']})"
        events.append(TimedEvent(float(end.get("t") or 0.0), "end", text))
    return events


def format_events(events: list[TimedEvent], limit: int = _MAX_EVENTS) -> str:
    """The events as aligned text lines: ``+0.193s  event messageStart  {...}``; a gap of more
    than a second between two events gets its own line, so a hang is visible."""
    lines: list[str] = []
    previous: float | None = None
    for i, event in enumerate(events):
        if i >= limit:
            lines.append(f"... {len(events) - limit} more events in the capture file")
            break
        if previous is not None and event.t - previous >= 1.0:
            lines.append(f"          ... {event.t - previous:.3f} s with nothing received ...")
        lines.append(f"+{event.t:7.3f}s  {event.kind:<28} {event.text}".rstrip())
        previous = event.t
    return "\n".join(lines)
