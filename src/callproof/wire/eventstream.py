"""AWS eventstream (``application/vnd.amazon.eventstream``): a sans-IO encoder and decoder.

A frame is::

    [total_length u32][headers_length u32][prelude_crc u32]   12-byte prelude
    [headers: headers_length bytes]
    [payload: total_length - headers_length - 16 bytes]
    [message_crc u32]          crc32 of everything before it

A header is ``[name_len u8][name][type u8][value]`` with ten value types. Limits follow botocore
(``botocore/eventstream.py``): headers at most 128 KiB, payload at most 24 MiB.

The decoder is fed bytes split anywhere and returns complete messages. It keeps one growing
``bytearray`` and an offset, trimming consumed bytes once per ``feed``, so decoding is linear in
the input (no ``bytes +=`` re-slicing). The prelude is checked as soon as its 12 bytes are in, so
a corrupted length is caught at once instead of waiting for gigabytes that will never come.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import TypeAlias

from callproof.errors import ChecksumMismatch, DuplicateHeader, IncompleteFrame, InvalidLength

__all__ = [
    "MAX_HEADERS_LENGTH",
    "MAX_PAYLOAD_LENGTH",
    "EventStreamDecoder",
    "EventStreamMessage",
    "HeaderType",
    "HeaderValue",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "Timestamp",
    "encode_headers",
    "encode_message",
]

PRELUDE_LENGTH = 12
MIN_MESSAGE_LENGTH = PRELUDE_LENGTH + 4
MAX_HEADERS_LENGTH = 128 * 1024
MAX_PAYLOAD_LENGTH = 24 * 1024 * 1024

_PRELUDE = struct.Struct("!III")
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
_I8 = struct.Struct("!b")
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_I64 = struct.Struct("!q")


class HeaderType(IntEnum):
    BOOL_TRUE = 0
    BOOL_FALSE = 1
    BYTE = 2
    SHORT = 3
    INTEGER = 4
    LONG = 5
    BYTE_ARRAY = 6
    STRING = 7
    TIMESTAMP = 8
    UUID = 9


class Int8(int):
    """An int header value sent as one byte."""


class Int16(int):
    """An int header value sent as two bytes."""


class Int32(int):
    """An int header value sent as four bytes (also the width of a plain ``int`` that fits)."""


class Int64(int):
    """An int header value sent as eight bytes."""


class Timestamp(int):
    """A timestamp header value (milliseconds since the epoch) outside the years 1-9999 that
    :class:`~datetime.datetime` can hold. Any int64 is a legal timestamp on the wire, so one
    out of that range still decodes (as this type) instead of rejecting the frame; timestamps
    inside the range decode to an aware UTC ``datetime``, exactly."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def _timestamp(millis: int) -> datetime | Timestamp:
    # Integer arithmetic: ``fromtimestamp(millis / 1000)`` is off by microseconds outside
    # about 1697-2242, where a float no longer holds the milliseconds exactly.
    try:
        return _EPOCH + timedelta(milliseconds=millis)
    except OverflowError:
        return Timestamp(millis)


def _millis(value: datetime) -> int:
    when = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return (when - _EPOCH) // _MILLISECOND


HeaderValue: TypeAlias = bool | int | bytes | str | datetime | uuid.UUID
"""``Timestamp`` is an ``int``: an out-of-range timestamp header."""

_INT_TYPES: tuple[tuple[type[int], HeaderType, struct.Struct], ...] = (
    (Int8, HeaderType.BYTE, _I8),
    (Int16, HeaderType.SHORT, _I16),
    (Int32, HeaderType.INTEGER, _I32),
    (Int64, HeaderType.LONG, _I64),
)


@dataclass(frozen=True, slots=True)
class EventStreamMessage:
    """One decoded frame."""

    headers: dict[str, HeaderValue]
    payload: bytes

    def header(self, name: str) -> str | None:
        """A string header, or None."""
        value = self.headers.get(name)
        return value if isinstance(value, str) else None

    @property
    def message_type(self) -> str | None:
        """``event``, ``exception`` or ``error``."""
        return self.header(":message-type")

    @property
    def event_type(self) -> str | None:
        return self.header(":event-type")

    @property
    def exception_type(self) -> str | None:
        return self.header(":exception-type")


# -- encoding -------------------------------------------------------------------------------


def _encode_header_value(value: HeaderValue) -> bytes:
    if isinstance(value, bool):
        return bytes([HeaderType.BOOL_TRUE if value else HeaderType.BOOL_FALSE])
    if isinstance(value, Timestamp):
        return bytes([HeaderType.TIMESTAMP]) + _I64.pack(value)
    if isinstance(value, int):
        for cls, htype, packer in _INT_TYPES:
            if isinstance(value, cls):
                return bytes([htype]) + packer.pack(value)
        if -(2**31) <= value < 2**31:
            return bytes([HeaderType.INTEGER]) + _I32.pack(value)
        return bytes([HeaderType.LONG]) + _I64.pack(value)
    if isinstance(value, bytes):
        return bytes([HeaderType.BYTE_ARRAY]) + _U16.pack(len(value)) + value
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return bytes([HeaderType.STRING]) + _U16.pack(len(raw)) + raw
    if isinstance(value, datetime):
        return bytes([HeaderType.TIMESTAMP]) + _I64.pack(_millis(value))
    if isinstance(value, uuid.UUID):
        return bytes([HeaderType.UUID]) + value.bytes
    raise TypeError(f"unsupported header value type: {type(value).__name__}")


def encode_headers(headers: Mapping[str, HeaderValue]) -> bytes:
    """Encode a header block. Names are UTF-8, at most 255 bytes."""
    out = bytearray()
    for name, value in headers.items():
        raw_name = name.encode("utf-8")
        if not 0 < len(raw_name) < 256:
            raise ValueError(f"header name must be 1..255 bytes: {name!r}")
        out.append(len(raw_name))
        out += raw_name
        out += _encode_header_value(value)
    return bytes(out)


def encode_message(headers: Mapping[str, HeaderValue], payload: bytes = b"") -> bytes:
    """Encode one frame with both CRCs."""
    header_bytes = encode_headers(headers)
    if len(header_bytes) > MAX_HEADERS_LENGTH:
        raise ValueError(f"headers of {len(header_bytes)} bytes exceed {MAX_HEADERS_LENGTH}")
    if len(payload) > MAX_PAYLOAD_LENGTH:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_LENGTH}")
    total = MIN_MESSAGE_LENGTH + len(header_bytes) + len(payload)
    prelude = struct.pack("!II", total, len(header_bytes))
    prelude_crc = zlib.crc32(prelude)
    head = prelude + _U32.pack(prelude_crc)
    crc = zlib.crc32(payload, zlib.crc32(header_bytes, zlib.crc32(head)))
    return b"".join((head, header_bytes, payload, _U32.pack(crc)))


# -- decoding -------------------------------------------------------------------------------


def _decode_headers(data: memoryview) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    pos = 0
    end = len(data)
    try:
        while pos < end:
            name_len = data[pos]
            pos += 1
            name = bytes(data[pos : pos + name_len]).decode("utf-8")
            pos += name_len
            htype = data[pos]
            pos += 1
            value: HeaderValue
            if htype == HeaderType.STRING or htype == HeaderType.BYTE_ARRAY:
                (length,) = _U16.unpack_from(data, pos)
                pos += 2
                raw = bytes(data[pos : pos + length])
                if len(raw) != length:
                    raise InvalidLength("header value runs past the header block")
                pos += length
                value = raw.decode("utf-8") if htype == HeaderType.STRING else raw
            elif htype == HeaderType.BOOL_TRUE:
                value = True
            elif htype == HeaderType.BOOL_FALSE:
                value = False
            elif htype == HeaderType.BYTE:
                value = Int8(_I8.unpack_from(data, pos)[0])
                pos += 1
            elif htype == HeaderType.SHORT:
                value = Int16(_I16.unpack_from(data, pos)[0])
                pos += 2
            elif htype == HeaderType.INTEGER:
                value = Int32(_I32.unpack_from(data, pos)[0])
                pos += 4
            elif htype == HeaderType.LONG:
                value = Int64(_I64.unpack_from(data, pos)[0])
                pos += 8
            elif htype == HeaderType.TIMESTAMP:
                value = _timestamp(_I64.unpack_from(data, pos)[0])
                pos += 8
            elif htype == HeaderType.UUID:
                raw = bytes(data[pos : pos + 16])
                if len(raw) != 16:
                    raise InvalidLength("uuid header runs past the header block")
                value = uuid.UUID(bytes=raw)
                pos += 16
            else:
                raise InvalidLength(f"unknown header value type {htype}")
            if name in headers:
                raise DuplicateHeader(f"duplicate header {name!r}")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError, OverflowError, ValueError) as exc:
        raise InvalidLength(f"malformed header block: {exc}") from exc
    # No "pos != end" check is needed: every read above is bounds-checked (an index or
    # unpack past the block raises, a value's length is compared), so the loop ends at ``end``.
    return headers


#: Parsed header blocks by their bytes. A stream repeats a handful of blocks (one per event
#: type) thousands of times; parsing each once saves about half the decoding time per frame.
_HEADER_CACHE: dict[bytes, dict[str, HeaderValue]] = {}
_HEADER_CACHE_SIZE = 512
#: Only small blocks are cached (Bedrock's are ~80 bytes), so the cache stays under ~128 KiB.
_HEADER_CACHE_MAX_BLOCK = 256


def _cached_headers(data: memoryview) -> dict[str, HeaderValue]:
    key = bytes(data)
    headers = _HEADER_CACHE.get(key)
    if headers is None:
        headers = _decode_headers(data)  # errors are raised here and never cached
        if len(_HEADER_CACHE) < _HEADER_CACHE_SIZE and len(key) <= _HEADER_CACHE_MAX_BLOCK:
            _HEADER_CACHE[key] = headers
    return dict(headers)  # a copy: callers own their message's headers


class EventStreamDecoder:
    """Incremental decoder: ``feed`` bytes split anywhere, ``close`` at the end of the body.

    Raises :class:`~callproof.errors.ChecksumMismatch`, :class:`~callproof.errors.InvalidLength`,
    :class:`~callproof.errors.DuplicateHeader`, and from ``close``
    :class:`~callproof.errors.IncompleteFrame`. After an error the decoder is unusable.
    """

    __slots__ = ("_buf", "_failed", "_need", "bytes_fed", "frames_decoded")

    def __init__(self) -> None:
        self._buf = bytearray()
        # Bytes needed for the next frame, once its prelude has been validated (0: unknown).
        self._need = 0
        self._failed: Exception | None = None
        self.bytes_fed = 0
        self.frames_decoded = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[EventStreamMessage]:
        """Add bytes; return every message completed by them."""
        if self._failed is not None:
            raise self._failed
        self._buf += data
        self.bytes_fed += len(data)
        try:
            return self._drain()
        except Exception as exc:
            self._failed = exc
            raise

    def _drain(self) -> list[EventStreamMessage]:
        buf = self._buf
        size = len(buf)
        pos = 0
        out: list[EventStreamMessage] = []
        while True:
            if self._need == 0:
                if size - pos < PRELUDE_LENGTH:
                    break
                self._need = self._check_prelude(buf, pos)
            need = self._need
            if size - pos < need:
                break
            view = memoryview(buf)[pos : pos + need]
            try:
                out.append(self._decode_frame(view))
            finally:
                view.release()
            pos += need
            self._need = 0
            self.frames_decoded += 1
        if pos:
            del buf[:pos]
        return out

    @staticmethod
    def _check_prelude(buf: bytearray, pos: int) -> int:
        total, headers_len, prelude_crc = _PRELUDE.unpack_from(buf, pos)
        calculated = zlib.crc32(memoryview(buf)[pos : pos + 8])
        if calculated != prelude_crc:
            raise ChecksumMismatch(
                f"prelude checksum mismatch: expected 0x{prelude_crc:08x}, "
                f"calculated 0x{calculated:08x}",
                expected=prelude_crc,
                calculated=calculated,
            )
        if headers_len > MAX_HEADERS_LENGTH:
            raise InvalidLength(
                f"header length of {headers_len} exceeded the maximum of {MAX_HEADERS_LENGTH}"
            )
        payload_len = total - headers_len - MIN_MESSAGE_LENGTH
        if payload_len < 0:
            raise InvalidLength(
                f"total length {total} is too small for {headers_len} bytes of headers"
            )
        if payload_len > MAX_PAYLOAD_LENGTH:
            raise InvalidLength(
                f"payload length of {payload_len} exceeded the maximum of {MAX_PAYLOAD_LENGTH}"
            )
        return int(total)

    @staticmethod
    def _decode_frame(frame: memoryview) -> EventStreamMessage:
        total = len(frame)
        (expected,) = _U32.unpack_from(frame, total - 4)
        calculated = zlib.crc32(frame[: total - 4])
        if calculated != expected:
            raise ChecksumMismatch(
                f"message checksum mismatch: expected 0x{expected:08x}, "
                f"calculated 0x{calculated:08x}",
                expected=expected,
                calculated=calculated,
            )
        (headers_len,) = _U32.unpack_from(frame, 4)
        headers_end = PRELUDE_LENGTH + headers_len
        headers = _cached_headers(frame[PRELUDE_LENGTH:headers_end]) if headers_len else {}
        return EventStreamMessage(headers=headers, payload=bytes(frame[headers_end : total - 4]))

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a complete frame."""
        return len(self._buf)

    def close(self) -> None:
        """Declare the end of the body; raise if a frame is still open."""
        if self._failed is not None:
            raise self._failed
        if self._buf:
            raise IncompleteFrame(
                f"stream ended with {len(self._buf)} bytes of an unfinished frame"
                + (f" (frame of {self._need} bytes)" if self._need else "")
            )
