"""Server-sent events: a sans-IO decoder and encoder per the HTML standard.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

Lines end in CR, LF or CRLF, and a CRLF may be split across two ``feed`` calls. A leading BOM is
dropped. Comments (lines starting with ``:``, such as OpenRouter's ``: OPENROUTER PROCESSING``)
are returned as :class:`SSEComment` so callers can record keep-alives; they are not events. An
event is dispatched at a blank line; per the spec, a block with no ``data`` dispatches nothing,
and a block still open at the end of the stream is discarded (``close`` reports it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

__all__ = ["SSEComment", "SSEDecoder", "SSEEvent", "SSEItem", "encode_comment", "encode_event"]

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
    """Incremental SSE decoder: ``feed`` bytes, get events and comments in order."""

    __slots__ = (
        "_buf",
        "_data",
        "_event",
        "_has_data",
        "_retry",
        "_skip_lf",
        "_started",
        "last_event_id",
        "retry",
    )

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skip_lf = False
        self._started = False
        self._data: list[str] = []
        self._has_data = False
        self._event = ""
        self._retry: int | None = None
        self.last_event_id: str | None = None
        #: The reconnection time most recently set by the stream, in milliseconds.
        self.retry: int | None = None

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
            m = search(buf, pos)
            if m is None:
                break
            end = m.start()
            line = buf[pos:end].decode("utf-8", "replace")
            if buf[end] == 0x0D:
                self._skip_lf = True
            pos = end + 1
            self._line(line, out)
        if pos:
            del buf[:pos]
        return out

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
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = self.retry = int(value)
        # any other field is ignored, per the spec

    def _dispatch(self, out: list[SSEItem]) -> None:
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
        self._data = []
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
