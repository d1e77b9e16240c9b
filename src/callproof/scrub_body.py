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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from callproof.errors import CallError
from callproof.redact import REDACTED, scrub, scrub_bytes, secret_forms
from callproof.wire.eventstream import EventStreamDecoder, HeaderValue, encode_message

__all__ = ["BodyScrubber"]

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


class BodyScrubber:
    """Collects a body's reads (``feed``), then returns them scrubbed (``finish``)."""

    def __init__(self, *, eventstream: bool) -> None:
        self.eventstream = eventstream
        self._buf = bytearray()
        self._pieces: list[tuple[float, int]] = []  # (time, size) of each read

    def feed(self, t: float, data: bytes) -> None:
        """Add the bytes of one read at ``t``."""
        if data:
            self._buf += data
            self._pieces.append((t, len(data)))

    def finish(self) -> list[tuple[float, bytes]]:
        """The reads, scrubbed: ``(time, bytes)`` pieces in order."""
        if not self._buf:
            return []
        units = list(self._frames() if self.eventstream else self._lines())
        # First the secrets split across units, on the decoded strings (a form that spans two
        # deltas is removed whole, before a shorter form inside one piece could be).
        _scrub_across(units)
        # Then each unit on its own, unless one scan of the joined body finds no secret at
        # all (the common case).
        if _contains_secret(bytes(self._buf)) or any(u.changed for u in units):
            for unit in units:
                unit.data = _scrub_unit(unit)
        out: list[tuple[float, bytes]] = []
        pieces = list(self._pieces)
        for unit in units:
            _emit(pieces, unit.size, unit.data, out)
        self._buf.clear()
        self._pieces.clear()
        return out

    def _frames(self) -> Iterator[_Unit]:
        buf, pos = self._buf, 0
        while len(buf) - pos >= 12:
            total, headers_len, crc = _PRELUDE.unpack_from(buf, pos)
            if zlib.crc32(buf[pos : pos + 8]) != crc or total < 16 or headers_len > total:
                break
            if len(buf) - pos < total:
                break
            yield _frame_unit(bytes(buf[pos : pos + total]))
            pos += total
        if pos < len(buf):
            rest = bytes(buf[pos:])
            yield _Unit(len(rest), rest)

    def _lines(self) -> Iterator[_Unit]:
        buf, pos = bytes(self._buf), 0
        while pos < len(buf):
            end = buf.find(b"\n", pos)
            end = len(buf) if end < 0 else end + 1
            yield _line_unit(buf[pos:end])
            pos = end


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


def _json(data: bytes) -> Any:
    stripped = data.strip()
    if not stripped or stripped[:1] not in (b"{", b"["):
        return None
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
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


def _scrub_across(units: list[_Unit]) -> None:
    forms = list(secret_forms())
    if not forms:
        return
    # Per JSON path (prefixed by the event type for frames), the strings in order.
    streams: dict[tuple[Any, ...], list[tuple[_Unit, Any, Any]]] = {}
    for unit in units:
        if unit.doc is None:
            continue
        head = (unit.headers or {}).get(":event-type") if unit.kind == "frame" else None
        found: list[tuple[tuple[Any, ...], Any, Any]] = []
        _leaves(unit.doc, (head,), found)
        for path, container, key in found:
            streams.setdefault(path, []).append((unit, container, key))
    for pieces in streams.values():
        if len(pieces) > 1:
            _cut(pieces, forms)
    for unit in units:
        if unit.changed:
            _reencode(unit)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _cut(pieces: list[tuple[_Unit, Any, Any]], forms: list[str]) -> None:
    texts = [container[key] for _, container, key in pieces]
    joined = "".join(texts)
    spans: list[tuple[int, int]] = []
    for form in forms:
        start = joined.find(form)
        while start >= 0:
            spans.append((start, start + len(form)))
            start = joined.find(form, start + len(form))
    if not spans:
        return
    merged = _merged(spans)
    lo = 0
    for (unit, container, key), text in zip(pieces, texts, strict=True):
        hi = lo + len(text)
        parts, cursor = [], lo
        for a, b in merged:
            if b <= lo or a >= hi:
                continue
            parts.append(text[cursor - lo : max(a, lo) - lo])
            if a >= lo:  # the piece where the secret starts carries the marker
                parts.append(REDACTED)
            cursor = min(b, hi)
        parts.append(text[cursor - lo :])
        replaced = "".join(parts)
        if replaced != text:
            container[key] = replaced
            unit.changed = True
        lo = hi


def _reencode(unit: _Unit) -> None:
    body = json.dumps(unit.doc, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )
    if unit.kind == "frame":
        unit.data = encode_message(unit.headers or {}, body)
    else:
        unit.data = unit.prefix + body + unit.suffix


def _emit(
    pieces: list[tuple[float, int]], size: int, data: bytes, out: list[tuple[float, bytes]]
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
            pieces.pop(0)
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
