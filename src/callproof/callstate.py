"""The sans-IO state of one call: clocks and accumulation, fed with timestamps.

:class:`CallState` is shared by the live client (:mod:`callproof.client`, which feeds it as
bytes arrive) and the offline capture decoder (:func:`callproof.capture.decode_capture`, which
feeds it a capture's recorded timestamps), so both reach the same conclusions. It knows nothing
of sockets or event loops; lower layers only (errors, events, targets, the dialect seam).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from callproof.dialects.base import StreamDecoder
from callproof.errors import (
    DeadlineExceeded,
    IncompleteStreamError,
    InvalidEventError,
    StallBeforeHeaders,
    StallError,
    StallMidStream,
    StallNoEvents,
)
from callproof.events import (
    Event,
    Response,
    StreamStart,
    StreamStop,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from callproof.targets import Timeouts

__all__ = ["REQUEST_ID_HEADERS", "CallState", "decode_step", "request_id_from"]

#: Response headers that carry a request id, in order of preference.
REQUEST_ID_HEADERS = ("x-amzn-requestid", "x-amz-request-id", "x-request-id", "x-generation-id")


def request_id_from(headers: Mapping[str, str]) -> str | None:
    """The request id a response's headers carry, if any."""
    lower = {k.lower(): v for k, v in headers.items()}
    for name in REQUEST_ID_HEADERS:
        if lower.get(name):
            return lower[name]
    return None


class CallState:
    """The sans-IO heart of one call: clocks and accumulation, fed with timestamps.

    The client feeds it as bytes arrive; :func:`callproof.capture.decode_capture` feeds it from
    a capture's recorded timestamps, so both reach the same conclusions. Times are seconds on
    one monotonic clock; ``t0`` is when the request was sent.
    """

    def __init__(
        self,
        decoder: StreamDecoder,
        timeouts: Timeouts,
        t0: float,
        *,
        keep_events: bool = False,
        model: str | None = None,
    ) -> None:
        self.decoder = decoder
        self.timeouts = timeouts
        self.t0 = t0
        self.keep_events = keep_events
        self._response = Response(model=model)
        # Text and reasoning arrive in thousands of small deltas. ``resp.text += piece`` on an
        # attribute copies the whole string each time (quadratic), and a list of pieces costs
        # ~60 bytes a piece; a UTF-8 bytearray grows in amortised O(1) at one byte a character,
        # decoded when the response is read.
        self._text = bytearray()
        self._thinking = bytearray()
        self._dirty = False
        self.headers_at: float | None = None
        self.first_event_at: float | None = None
        self.last_event_at: float | None = None
        self.stopped = False
        self._max_gap = 0.0

    @property
    def response(self) -> Response:
        """The response accumulated so far."""
        if self._dirty:
            self._response.text = self._text.decode("utf-8", "surrogatepass")
            self._response.thinking = self._thinking.decode("utf-8", "surrogatepass")
            self._dirty = False
        return self._response

    # -- clocks -----------------------------------------------------------------------------

    def next_limit(self, resumed_at: float | None = None) -> tuple[float | None, type[StallError]]:
        """When the next watchdog fires, and which error it raises.

        ``resumed_at`` is when the reader came back for more bytes: time the consumer spent on
        the previous events is not a gap on the wire.
        """
        t = self.timeouts
        candidates: list[tuple[float, int, type[StallError]]] = []
        if t.deadline is not None:
            candidates.append((self.t0 + t.deadline, 0, DeadlineExceeded))
        if self.headers_at is None:
            if t.first_event is not None:
                candidates.append((self.t0 + t.first_event, 1, StallBeforeHeaders))
        elif self.first_event_at is None:
            if t.first_event is not None:
                candidates.append((self.t0 + t.first_event, 1, StallNoEvents))
        elif t.idle is not None and self.last_event_at is not None:
            since = max(self.last_event_at, resumed_at or self.last_event_at)
            candidates.append((since + t.idle, 1, StallMidStream))
        if not candidates:
            return None, StallMidStream
        at, _, cls = min(candidates, key=lambda c: (c[0], c[1]))
        return at, cls

    def stall(self, cls: type[StallError], now: float) -> StallError:
        """The error a fired watchdog raises, with a message that says what was waited for."""
        elapsed = now - self.t0
        t = self.timeouts
        if cls is DeadlineExceeded:
            limit = t.deadline or 0.0
            msg = f"deadline of {limit:g} s passed"
        elif cls is StallBeforeHeaders:
            limit = t.first_event or 0.0
            msg = f"no response headers within the first-event timeout of {limit:g} s"
        elif cls is StallNoEvents:
            limit = t.first_event or 0.0
            after = (self.headers_at or self.t0) - self.t0
            msg = (
                f"response headers after {after:.3f} s, then no decoded event within the "
                f"first-event timeout of {limit:g} s"
            )
        else:
            limit = t.idle or 0.0
            last = (self.last_event_at or self.t0) - self.t0
            msg = f"events until {last:.3f} s, then none within the idle timeout of {limit:g} s"
        if self.response.keepalives:
            msg += f"; {self.response.keepalives} keep-alive comments seen (they do not count)"
        return cls(msg, elapsed_s=elapsed, limit_s=limit)

    # -- input ------------------------------------------------------------------------------

    def on_headers(self, now: float, headers: Mapping[str, str]) -> None:
        self.headers_at = now
        self.response.timings.headers_s = now - self.t0
        self.response.request_id = request_id_from(headers)

    def on_bytes(self, now: float, data: bytes) -> list[Event]:
        """Feed body bytes; returns the events decoded (raises the decoder's CallErrors)."""
        events = self.decoder.feed(data)
        self._response.keepalives = self.decoder.keepalives
        self._accept(now, events)
        return events

    def on_eof(self, now: float) -> list[Event]:
        """The body ended; returns the final events or raises when the stream is incomplete."""
        events = self.decoder.close()
        self._response.keepalives = self.decoder.keepalives
        self._accept(now, events)
        if not self.stopped:  # a safety net under the dialect's own check
            raise IncompleteStreamError("the stream ended without its terminal event")
        self.finish(now)
        return events

    def finish(self, now: float) -> Response:
        """Close the clocks (success or failure); the open gap counts if events had begun."""
        timings = self.response.timings
        timings.total_s = now - self.t0
        if self.last_event_at is not None and not self.stopped:
            self._max_gap = max(self._max_gap, now - self.last_event_at)
        if self.first_event_at is not None:
            timings.max_gap_s = self._max_gap
        return self.response

    def _accept(self, now: float, events: list[Event]) -> None:
        if not events:
            return
        resp = self._response
        timings = resp.timings
        if self.first_event_at is None:
            self.first_event_at = now
            timings.first_event_s = now - self.t0
        elif self.last_event_at is not None:
            self._max_gap = max(self._max_gap, now - self.last_event_at)
        self.last_event_at = now
        for event in events:
            if self.keep_events:
                resp.events.append(event)
            match event:
                case StreamStart(model=model):
                    if model:
                        resp.model = model
                case TextDelta(text=text):
                    if text and timings.first_content_s is None:
                        timings.first_content_s = now - self.t0
                    self._text += text.encode("utf-8", "surrogatepass")
                    self._dirty = True
                case ThinkingDelta(text=text, signature=signature, redacted=redacted):
                    if timings.first_content_s is None and (text or redacted):
                        timings.first_content_s = now - self.t0
                    if text:
                        self._thinking += text.encode("utf-8", "surrogatepass")
                        self._dirty = True
                    if signature:
                        resp.thinking_signature = (resp.thinking_signature or "") + signature
                    if redacted:
                        resp.thinking_redacted = (resp.thinking_redacted or b"") + redacted
                case ToolCallStart() | ToolCallDelta():
                    if timings.first_content_s is None:
                        timings.first_content_s = now - self.t0
                case ToolCallEnd(id=call_id, name=name, arguments=arguments):
                    if timings.first_content_s is None:
                        timings.first_content_s = now - self.t0
                    resp.tool_calls.append(ToolCall.from_raw(call_id, name, arguments))
                case StreamStop(stop_reason=stop, raw_stop_reason=raw, usage=usage):
                    self.stopped = True
                    resp.stop_reason = stop
                    resp.raw_stop_reason = raw
                    if usage is not None:
                        resp.usage = usage


def decode_step(step: Callable[..., list[Event]], *args: Any) -> list[Event]:
    """Run a decoder step; a decoder that trips over input it did not expect (a bug, or a
    shape nobody foresaw) still ends the call with a typed error, never a bare exception."""
    try:
        return step(*args)
    except (
        ArithmeticError,
        AttributeError,
        LookupError,
        RecursionError,
        TypeError,
        ValueError,
    ) as exc:
        raise InvalidEventError(f"undecodable event ({type(exc).__name__}: {exc})"[:300]) from exc
