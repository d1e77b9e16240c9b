"""Server-sent events: a sans-IO decoder and encoder per the HTML standard.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

Lines end in CR, LF or CRLF, and a CRLF may be split across two ``feed`` calls. A leading BOM is
dropped. Comments (lines starting with ``:``, such as OpenRouter's ``: OPENROUTER PROCESSING``)
are returned as :class:`SSEComment` so callers can record keep-alives; they are not events. An
event is dispatched at a blank line; per the spec, a block with no ``data`` dispatches nothing,
and a block still open at the end of the stream is discarded (``close`` reports it).

Hostile input is bounded: decoding is linear in the input (a line arriving in many small feeds
is scanned once, not once per feed), a line longer than ``max_line`` bytes or an event whose
data exceeds ``max_event`` bytes raises :class:`~callproof.errors.InvalidEventError` (defaults
:data:`MAX_LINE_BYTES` and :data:`MAX_EVENT_BYTES`, 16 MiB each, far above any real event),
and a ``retry`` value too long to be a time is ignored instead of raising.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

from callproof.errors import InvalidEventError

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_LINE_BYTES",
    "SSEComment",
    "SSEDecoder",
    "SSEEvent",
    "SSEItem",
    "encode_comment",
    "encode_event",
]

#: The longest line the decoder accepts, in bytes (a larger one is a protocol error).
MAX_LINE_BYTES = 16 << 20
#: The most data one event may carry, in bytes (summed over its ``data`` lines).
MAX_EVENT_BYTES = 16 << 20
#: ``retry`` values with more digits than this are ignored (no real reconnection time is
#: 10^18 ms, and ``int()`` of a 4,300-digit string raises).
_MAX_RETRY_DIGITS = 18

_LINE_END = re.compile(rb"[\r\n]")
_NEWLINES = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """A dispatched event. ``id`` is the stream's last event id when it was dispatched."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


@dataclass(frozen=True, slots=True)
class SSEComment:
    """A comment line (one leading space after the colon removed)."""

    text: str


SSEItem: TypeAlias = SSEEvent | SSEComment


class SSEDecoder:
    """Incremental SSE decoder: ``feed`` bytes, get events and comments in order.

    ``last_event_id`` is the stream's last event id string: set when an event is dispatched
    (at its blank line), from the ``id`` fields seen so far, as the spec's "last event ID
    buffer" works (WPT ``format-data-before-final-empty-line``: an ``id`` in a block that never
    ends does not count).
    """

    __slots__ = (
        "_buf",
        "_data",
        "_data_size",
        "_event",
        "_has_data",
        "_id_buffer",
        "_retry",
        "_scan",
        "_skip_lf",
        "_started",
        "last_event_id",
        "max_event",
        "max_line",
        "retry",
    )

    def __init__(self, *, max_line: int = MAX_LINE_BYTES, max_event: int = MAX_EVENT_BYTES) -> None:
        self._buf = bytearray()
        # Where the search for the next line end resumes: bytes before it hold none.
        self._scan = 0
        self._skip_lf = False
        self._started = False
        self._data: list[str] = []
        self._data_size = 0
        self._has_data = False
        self._event = ""
        self._retry: int | None = None
        self._id_buffer: str | None = None
        self.last_event_id: str | None = None
        #: The reconnection time most recently set by the stream, in milliseconds.
        self.retry: int | None = None
        self.max_line = max_line
        self.max_event = max_event

    def feed(self, data: bytes | bytearray | memoryview) -> list[SSEItem]:
        """Add bytes; return the events and comments completed by them."""
        buf = self._buf
        buf += data
        out: list[SSEItem] = []
        pos = 0
        size = len(buf)
        search = _LINE_END.search
        while pos < size:
            if self._skip_lf:
                self._skip_lf = False
                if buf[pos] == 0x0A:
                    pos += 1
                    continue
            m = search(buf, max(pos, self._scan))
            if m is None:
                break
            end = m.start()
            self._scan = 0
            if end - pos > self.max_line:
                self._too_long(end - pos)
            line = buf[pos:end].decode("utf-8", "replace")
            if buf[end] == 0x0D:
                self._skip_lf = True
            pos = end + 1
            self._line(line, out)
        if pos:
            del buf[:pos]
        self._scan = len(buf)
        if len(buf) > self.max_line:
            self._too_long(len(buf))
        return out

    def _too_long(self, size: int) -> None:
        raise InvalidEventError(
            f"an SSE line of {size} bytes or more exceeds the limit of {self.max_line} bytes"
        )

    def _line(self, line: str, out: list[SSEItem]) -> None:
        if not self._started:
            self._started = True
            if line.startswith("\ufeff"):
                line = line[1:]
        if not line:
            self._dispatch(out)
            return
        if line[0] == ":":
            text = line[1:]
            out.append(SSEComment(text[1:] if text.startswith(" ") else text))
            return
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_size += len(value) + 1
            if self._data_size > self.max_event:
                raise InvalidEventError(
                    f"an SSE event of over {self.max_event} bytes of data exceeds the limit"
                )
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._id_buffer = value
        elif (
            name == "retry"
            and value.isascii()
            and value.isdigit()
            and len(value) <= _MAX_RETRY_DIGITS
        ):
            self._retry = self.retry = int(value)
        # any other field is ignored, per the spec

    def _dispatch(self, out: list[SSEItem]) -> None:
        self.last_event_id = self._id_buffer
        if self._has_data:
            out.append(
                SSEEvent(
                    data="\n".join(self._data),
                    event=self._event or "message",
                    id=self.last_event_id,
                    retry=self._retry,
                )
            )
        self._data = []
        self._data_size = 0
        self._has_data = False
        self._event = ""
        self._retry = None

    @property
    def incomplete(self) -> bool:
        """True when bytes or fields of an undispatched event are pending."""
        return bool(self._buf) or self._has_data or bool(self._event)

    def close(self) -> bool:
        """End of stream. Returns True when an incomplete event was discarded."""
        incomplete = self.incomplete
        self._buf.clear()
        self._scan = 0
        self._data = []
        self._data_size = 0
        self._has_data = False
        self._event = ""
        return incomplete


def encode_event(
    data: str, *, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    """Encode one event. Line breaks in ``data`` become several ``data:`` lines."""
    parts: list[str] = []
    if event is not None:
        parts.append(f"event: {event}\n")
    if id is not None:
        parts.append(f"id: {id}\n")
    if retry is not None:
        parts.append(f"retry: {retry}\n")
    parts.extend(f"data: {line}\n" for line in _NEWLINES.split(data))
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def encode_comment(text: str = "") -> bytes:
    """Encode a comment line (a keep-alive): ``: text``."""
    return "".join(f": {line}\n" for line in _NEWLINES.split(text)).encode("utf-8")
