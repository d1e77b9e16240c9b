"""Scrubbing a captured response body so that it still decodes to the same outcome.

A capture keeps the body bytes exactly as they were read, with their times. Scrubbing them
naively (a byte-wise replace) would break what it scrubs: an eventstream frame's lengths and
CRCs no longer match, so a live ``ok`` replays as ``protocol_error``. So :class:`BodyScrubber`
works on whole units of the *joined* body, after the last read:

1. The body is cut into units: eventstream frames (by their prelude), else lines (SSE, NDJSON);
   what is left (a JSON document, a cut frame) is one last unit.
2. A secret split across units (half in one text delta, half in the next) is found by joining,
   per JSON path, the strings of every unit's JSON (``choices.0.delta.content`` across SSE
   events, ``delta.text`` across frames), and removed from each piece it spans; the units it
   touched are re-encoded. This runs first, so a form spanning two pieces goes whole.
3. Each unit is scrubbed of every secret the process knows (:mod:`callproof.redact`). A frame
   that held one is decoded, its string headers and payload scrubbed, and re-encoded with
   :func:`~callproof.wire.eventstream.encode_message` (lengths and CRCs recomputed). A frame
   that does not decode (a ``corrupt_crc`` fault) is scrubbed as bytes and stays undecodable.
   One scan of the joined body skips this step when it holds no secret at all.
4. The scrubbed bytes go back into the reads they came from: a unit that did not change keeps
   its exact pieces, one that changed length gives or takes the difference in its last piece.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any

from callproof.errors import CallError
from callproof.redact import scrub, scrub_bytes, scrub_pieces, secret_forms
from callproof.wire.eventstream import EventStreamDecoder, HeaderValue, encode_message

__all__ = ["CARRY_UNITS", "SEGMENT_BYTES", "BodyScrubber"]

_PRELUDE = struct.Struct("!III")


@dataclass(slots=True)
class _Unit:
    size: int  # bytes of the original body
    data: bytes  # scrubbed bytes
    # The JSON document inside, and how to re-encode the unit around a changed one.
    doc: Any = None
    kind: str = ""  # "frame" | "sse" | "line" | ""
    headers: dict[str, HeaderValue] | None = None
    prefix: bytes = b""
    suffix: bytes = b""
    changed: bool = False
    index: int = 0  # position in its segment


#: Bodies are scrubbed in segments of at least this many bytes, so that memory stays bounded
#: for a long or flooded body. The last :data:`CARRY_UNITS` units of a segment move on to the
#: next one, so a secret split across up to ``CARRY_UNITS + 1`` units is always caught.
SEGMENT_BYTES = 1 << 20
CARRY_UNITS = 32


class BodyScrubber:
    """Collects a body's reads (``feed``) and returns them scrubbed, a segment at a time
    (``feed`` once a segment is full, then ``finish`` at the end of the body)."""

    def __init__(self, *, eventstream: bool) -> None:
        self.eventstream = eventstream
        self._buf = bytearray()
        self._pieces: deque[tuple[float, int]] = deque()  # (time, size) of the reads in _buf
        self._raw = False  # eventstream framing lost (a bad prelude): the rest is bytes
        self._next_at = SEGMENT_BYTES  # buffer size at which to try the next segment

    def feed(self, t: float, data: bytes) -> list[tuple[float, bytes]]:
        """Add the bytes of one read at ``t``; returns scrubbed ``(time, bytes)`` pieces of
        earlier reads once a segment is full (else nothing yet)."""
        if data:
            self._buf += data
            self._pieces.append((t, len(data)))
        if len(self._buf) >= self._next_at:
            out = self._process(final=False)
            self._next_at = len(self._buf) + SEGMENT_BYTES
            return out
        return []

    def finish(self) -> list[tuple[float, bytes]]:
        """The rest of the body, scrubbed: ``(time, bytes)`` pieces in order."""
        return self._process(final=True) if self._buf else []

    def _process(self, *, final: bool) -> list[tuple[float, bytes]]:
        units, consumed = self._units(final)
        if not units:
            return []
        keep = 0 if final else self._carry(units)
        if keep is None:
            return []  # wait for more units: the carried ones must follow emitted ones
        emit = len(units) - keep
        # First the secrets split across units, on the decoded strings (a form that spans two
        # deltas is removed whole, before a shorter form inside one piece could be); a span
        # that starts in a carried unit waits for the next segment, which sees all of it.
        _scrub_across(units, emit)
        # Then each emitted unit on its own (carried ones are scrubbed with the next segment),
        # unless one scan finds no secret at all (the common case).
        emitted = sum(u.size for u in units[:emit])
        dirty = any(u.changed for u in units)
        if dirty or _contains_secret(bytes(self._buf[:emitted])):
            dirty = True
            for unit in units[:emit]:
                unit.data = _scrub_unit(unit)
        if not dirty:  # nothing changed: the reads go out as they came
            return self._take(emitted)
        out: list[tuple[float, bytes]] = []
        mark = 0
        for index, unit in enumerate(units):
            if index == len(units) - keep:
                mark = len(out)
            _emit(self._pieces, unit.size, unit.data, out)
        if not keep:
            mark = len(out)
        carried = out[mark:]
        del out[mark:]
        # The carried units (already scrubbed) go back in front of the unfinished rest.
        rest = bytes(self._buf[consumed:])
        self._buf = bytearray(b"".join(d for _, d in carried) + rest)
        self._pieces.extendleft(reversed([(t, len(d)) for t, d in carried]))
        return out

    def _take(self, size: int) -> list[tuple[float, bytes]]:
        """The first ``size`` buffered bytes, unchanged, in the reads they came in."""
        out: list[tuple[float, bytes]] = []
        view, pos = bytes(self._buf[:size]), 0
        while pos < size:
            t, n = self._pieces[0]
            take = min(n, size - pos)
            out.append((t, view[pos : pos + take]))
            pos += take
            if take == n:
                self._pieces.popleft()
            else:
                self._pieces[0] = (t, n - take)
        del self._buf[:size]
        return out

    @staticmethod
    def _carry(units: list[_Unit]) -> int | None:
        """How many units at the end move on to the next segment: from the last
        :data:`CARRY_UNITS` units that hold JSON (plain runs of comments need no company), or
        None to wait for more. (What waits is bounded by the client's body cap.)"""
        holding = [i for i, unit in enumerate(units) if unit.doc is not None]
        if not holding:
            return 0
        if len(holding) <= CARRY_UNITS:
            return None
        return len(units) - holding[-CARRY_UNITS]

    def _units(self, final: bool) -> tuple[list[_Unit], int]:
        """The complete units at the front of the buffer (all of it when ``final``) and how
        many bytes they cover."""
        buf, pos = self._buf, 0
        units: list[_Unit] = []
        if self.eventstream:
            while not self._raw and len(buf) - pos >= 12:
                total, headers_len, crc = _PRELUDE.unpack_from(buf, pos)
                if zlib.crc32(buf[pos : pos + 8]) != crc or total < 16 or headers_len > total:
                    self._raw = True
                    break
                if len(buf) - pos < total:
                    break
                units.append(_frame_unit(bytes(buf[pos : pos + total])))
                pos += total
            if pos < len(buf) and (final or self._raw):
                units.append(_Unit(len(buf) - pos, bytes(buf[pos:])))
                pos = len(buf)
            return units, pos
        data = bytes(buf)
        end = len(data) if final else data.rfind(b"\n") + 1
        plain = -1  # start of a run of lines that carry no JSON (comments, event:, blank)
        while pos < end:
            stop = data.find(b"\n", pos, end)
            stop = end if stop < 0 else stop + 1
            if data.startswith(b"data:", pos) or data.startswith(b"{", pos):
                if plain >= 0:
                    units.append(_Unit(pos - plain, data[plain:pos]))
                    plain = -1
                units.append(_line_unit(data[pos:stop]))
            elif plain < 0:
                plain = pos
            pos = stop
        if plain >= 0:
            units.append(_Unit(pos - plain, data[plain:pos]))
        return units, pos


def _contains_secret(data: bytes) -> bool:
    return scrub_bytes(data) != data


def _frame_unit(frame: bytes) -> _Unit:
    try:
        (message,) = EventStreamDecoder().feed(frame)
    except (CallError, ValueError):
        return _Unit(len(frame), frame)  # undecodable (corrupt_crc): bytes only
    unit = _Unit(len(frame), frame, kind="frame", headers=dict(message.headers))
    unit.doc = _json(message.payload)
    return unit


def _line_unit(line: bytes) -> _Unit:
    body = line.rstrip(b"\r\n")
    suffix = line[len(body) :]
    if body.startswith(b"data:"):
        prefix = b"data: " if body.startswith(b"data: ") else b"data:"
        return _Unit(
            len(line),
            line,
            doc=_json(body[len(prefix) :]),
            kind="sse",
            prefix=prefix,
            suffix=suffix,
        )
    return _Unit(len(line), line, doc=_json(body), kind="line", suffix=suffix)


def _scrub_unit(unit: _Unit) -> bytes:
    """One unit's bytes scrubbed; a frame re-encoded around its scrubbed headers and payload
    (a frame that does not decode, as after a ``corrupt_crc`` fault, is scrubbed as bytes and
    stays undecodable)."""
    if unit.kind != "frame":
        return scrub_bytes(unit.data)
    scrubbed = scrub_bytes(unit.data)
    if scrubbed == unit.data:
        return unit.data
    (message,) = EventStreamDecoder().feed(unit.data)
    headers: dict[str, HeaderValue] = {
        name: scrub(value) if isinstance(value, str) else value
        for name, value in message.headers.items()
    }
    return encode_message(headers, scrub_bytes(message.payload))


_decode = json.JSONDecoder().decode


def _json(data: bytes) -> Any:
    stripped = data.strip()
    if not stripped or stripped[:1] not in (b"{", b"["):
        return None
    try:
        return _decode(stripped.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


# -- a secret split across units ------------------------------------------------------------


def _leaves(value: Any, path: tuple[Any, ...], out: list[tuple[tuple[Any, ...], Any, Any]]) -> None:
    """(path, container, key) of every string in ``value``, in document order."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                out.append(((*path, key), value, key))
            else:
                _leaves(item, (*path, key), out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(((*path, i), value, i))
            else:
                _leaves(item, (*path, i), out)


def _scrub_across(units: list[_Unit], emit: int) -> None:
    """Remove secrets split across units; only spans starting in ``units[:emit]``."""
    if not secret_forms():
        return
    # Per JSON path (prefixed by the event type for frames), the strings in order.
    streams: dict[tuple[Any, ...], list[tuple[_Unit, Any, Any]]] = {}
    for index, unit in enumerate(units):
        if unit.doc is None:
            continue
        unit.index = index
        head = (unit.headers or {}).get(":event-type") if unit.kind == "frame" else None
        found: list[tuple[tuple[Any, ...], Any, Any]] = []
        _leaves(unit.doc, (head,), found)
        for path, container, key in found:
            streams.setdefault(path, []).append((unit, container, key))
    for pieces in streams.values():
        if len(pieces) > 1:
            _cut(pieces, emit)
    for unit in units:
        if unit.changed:
            _reencode(unit)


def _cut(pieces: list[tuple[_Unit, Any, Any]], emit: int) -> None:
    texts = [container[key] for _, container, key in pieces]
    # Spans starting in a carried unit (index >= emit) wait for the next segment.
    limit, pos = None, 0
    for (unit, _, _), text in zip(pieces, texts, strict=True):
        if unit.index >= emit:
            limit = pos
            break
        pos += len(text)
    for (unit, container, key), text, new in zip(
        pieces, texts, scrub_pieces(texts, limit), strict=True
    ):
        if new != text:
            container[key] = new
            unit.changed = True


def _reencode(unit: _Unit) -> None:
    body = json.dumps(unit.doc, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )
    if unit.kind == "frame":
        unit.data = encode_message(unit.headers or {}, body)
    else:
        unit.data = unit.prefix + body + unit.suffix


def _emit(
    pieces: deque[tuple[float, int]], size: int, data: bytes, out: list[tuple[float, bytes]]
) -> None:
    """Put ``data`` (the scrubbed form of the next ``size`` body bytes) into the reads they
    came in, consuming ``pieces``; a length change goes to the unit's last piece."""
    sizes: list[tuple[float, int]] = []
    left = size
    while left:
        t, n = pieces[0]
        take = min(n, left)
        sizes.append((t, take))
        left -= take
        if take == n:
            pieces.popleft()
        else:
            pieces[0] = (t, n - take)
    extra = len(data) - size
    if extra > 0:
        t, n = sizes[-1]
        sizes[-1] = (t, n + extra)
    i = len(sizes) - 1
    while extra < 0 and i >= 0:
        t, n = sizes[i]
        cut = min(n, -extra)
        sizes[i] = (t, n - cut)
        extra += cut
        i -= 1
    pos = 0
    for t, n in sizes:
        if n:
            out.append((t, data[pos : pos + n]))
            pos += n
