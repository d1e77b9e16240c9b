"""Small pieces shared by the dialect modules: JSON parsing that raises our errors, header and
Retry-After parsing, request-field merging, and a decoder base that never loses events.

Nothing here knows a vendor's vocabulary; that stays in each dialect module.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from callproof.dialects.base import RawItem
from callproof.errors import CallError, IncompleteStreamError, InvalidEventError
from callproof.events import Event

__all__ = [
    "RAW_ITEMS_KEPT",
    "DecoderBase",
    "JSONBodyDecoder",
    "b64",
    "body_text",
    "dumps",
    "header",
    "int_or_none",
    "json_truncated",
    "json_value",
    "loads_object",
    "merge_extra",
    "retry_after_s",
]


def dumps(body: Any) -> bytes:
    """The wire form of a JSON request body: compact, UTF-8."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_decode = json.JSONDecoder().decode
#: A JSON escape of a UTF-16 surrogate: only documents with one can decode to a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_B = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_surrogates(value: Any) -> Any:
    """``value`` with lone surrogates (``"\\ud800"`` alone is legal JSON but not Unicode text,
    and cannot be written as UTF-8) replaced by U+FFFD."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_no_surrogates(k): _no_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_surrogates(v) for v in value]
    return value


def json_value(text: str | bytes | bytearray) -> Any:
    """Parse JSON from the wire: a nesting too deep to parse (``RecursionError``) is a
    ``ValueError`` like any other malformed document, and lone surrogates become U+FFFD."""
    try:
        value = _decode(text) if type(text) is str else json.loads(text)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
    pattern = _SURROGATE_ESCAPE if isinstance(text, str) else _SURROGATE_ESCAPE_B
    if pattern.search(text):  # type: ignore[arg-type]
        value = _no_surrogates(value)
    return value


def loads_object(text: str | bytes, what: str) -> dict[str, Any]:
    """Parse a JSON object or raise :class:`InvalidEventError` naming ``what`` it was."""
    try:
        value = json_value(text)
    except ValueError as exc:
        snippet = text[:200] if isinstance(text, str) else text[:200].decode("utf-8", "replace")
        raise InvalidEventError(f"invalid JSON in {what}: {exc}: {snippet!r}") from exc
    if not isinstance(value, dict):
        raise InvalidEventError(f"{what} is not a JSON object: {type(value).__name__}")
    return value


def merge_extra(body: dict[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge per-target extra request fields into ``body``; nested objects merge key by key,
    anything else in ``extra`` replaces what the dialect wrote, and ``None`` removes it (e.g.
    ``{"max_tokens": None, "max_completion_tokens": 100}``, or ``{"stream_options": None}`` for
    a server that rejects it)."""
    if not extra:
        return body
    for key, value in extra.items():
        current = body.get(key)
        if value is None:
            body.pop(key, None)
        elif isinstance(current, dict) and isinstance(value, Mapping):
            body[key] = merge_extra(dict(current), value)
        else:
            body[key] = value
    return body


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A response header by case-insensitive name (works for plain dicts and httpx.Headers)."""
    value = headers.get(name)
    if value is not None:
        return value
    lower = name.lower()
    for key, val in headers.items():
        if key.lower() == lower:
            return val
    return None


def retry_after_s(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait according to response headers, or ``None``: the one Retry-After parser
    (the dialects' errors and the router both use it).

    Reads, in this order, ``retry-after-ms`` (milliseconds; OpenAI's), ``x-amz-retry-after``
    (milliseconds; AWS's) and ``Retry-After`` (delay-seconds, or an HTTP date relative to
    ``now``, Unix seconds, default the current time; a date in the past is 0). A value that is
    not a finite, non-negative number is ignored and the next header is read. Header names are
    matched case-insensitively.
    """
    for name, scale in (("retry-after-ms", 0.001), ("x-amz-retry-after", 0.001)):
        value = header(headers, name)
        if value is not None and (seconds := _seconds(value)) is not None:
            return seconds * scale
    value = header(headers, "retry-after")
    if value is None:
        return None
    if (seconds := _seconds(value)) is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    base = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)
    return max(0.0, (when - base).total_seconds())


def _seconds(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def json_truncated(exc: json.JSONDecodeError) -> bool:
    """Whether a JSON document failed because it was cut short, not because it is malformed."""
    return exc.msg.startswith("Unterminated string") or exc.pos >= len(exc.doc.rstrip())


def int_or_none(value: Any) -> int | None:
    """An int from a usage field (bools, non-numbers, and ``1e999`` or NaN are None)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value)


def body_text(body: bytes, limit: int = 500) -> str:
    """A response body as text for an error message, shortened."""
    text = body.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


#: What a decoder may trip over on input nobody foresaw (an index that is a list, a number
#: too large for ``int``, JSON nested a thousand deep): translated to InvalidEventError so a
#: hostile body ends one call with ``protocol_error``, never a bare exception.
_UNEXPECTED = (
    ArithmeticError,
    AttributeError,
    LookupError,
    RecursionError,
    TypeError,
    ValueError,
)


def _undecodable(exc: BaseException) -> InvalidEventError:
    return InvalidEventError(f"undecodable event ({type(exc).__name__}: {str(exc)[:200]})")


#: Raw items a decoder keeps between two ``raw_items()`` calls.
RAW_ITEMS_KEPT = 10_000


class DecoderBase:
    """Shared bookkeeping of the stream decoders.

    Errors never swallow events: when a chunk yields events and then an error (an exception
    frame, an error chunk, invalid JSON), ``feed`` returns those events and raises the error on
    the next ``feed`` or ``close``. A failed decoder raises its error on every later call.
    """

    def __init__(self) -> None:
        #: Keep-alive comments seen so far (recorded, never events).
        self.keepalives = 0
        # (kind, data) pairs turned into RawItems only when drained, so decoding stays cheap
        # for callers that never ask; bounded, so memory stays flat for them.
        self._raw: deque[tuple[str, Any]] = deque(maxlen=RAW_ITEMS_KEPT)
        #: False: nothing is kept for :meth:`raw_items` (nobody records them).
        self.record_raw = True
        #: Things worth knowing about a stream that still counts as complete (e.g. an OpenAI
        #: stream that ended cleanly after its finish_reason without ``data: [DONE]``).
        self.warnings: list[str] = []
        self._failed: CallError | None = None

    def raw_items(self) -> list[RawItem]:
        """Raw units decoded since the last call (drained), for capture and ``-v``. At most
        :data:`RAW_ITEMS_KEPT` are kept between calls (the oldest are dropped)."""
        items = [self._raw_item(kind, data) for kind, data in self._raw]
        self._raw.clear()
        return items

    def _raw_item(self, kind: str, data: Any) -> RawItem:
        return RawItem(kind, data)

    def feed(self, data: bytes) -> list[Event]:
        """Add body bytes; return the events completed by them."""
        if self._failed is not None:
            raise self._failed
        out: list[Event] = []
        try:
            try:
                self._feed(data, out)
            except _UNEXPECTED as exc:
                raise _undecodable(exc) from exc
        except CallError as exc:
            self._failed = exc
            if out:
                return out
            raise
        return out

    def close(self) -> list[Event]:
        """End of body: return the last events, or raise when the stream was incomplete or
        undecodable."""
        if self._failed is not None:
            raise self._failed
        out: list[Event] = []
        try:
            try:
                self._close(out)
            except _UNEXPECTED as exc:
                raise _undecodable(exc) from exc
        except CallError as exc:
            self._failed = exc
            raise
        return out

    def _feed(self, data: bytes, out: list[Event]) -> None:
        raise NotImplementedError

    def _close(self, out: list[Event]) -> None:
        raise NotImplementedError


class JSONBodyDecoder(DecoderBase):
    """A non-streaming body: buffered, parsed at ``close`` into the same events as a stream, so
    the client has one code path. A body cut mid-document is ``IncompleteStreamError``; one
    that is not JSON, or not an object, is ``InvalidEventError``."""

    #: What the body is, for messages ("the Converse body", "the chat completion").
    what = "the body"

    def __init__(self) -> None:
        super().__init__()
        self._body = bytearray()

    def _feed(self, data: bytes, out: list[Event]) -> None:
        self._body += data

    def _close(self, out: list[Event]) -> None:
        text = self._body.decode("utf-8", "replace")
        if self.record_raw:
            self._raw.append(("body", text))
        if not text.strip():
            raise IncompleteStreamError(f"{self.what} is empty")
        try:
            doc = json_value(text)
        except json.JSONDecodeError as exc:
            if json_truncated(exc):
                raise IncompleteStreamError(
                    f"{self.what} ended mid-document after {len(self._body)} bytes"
                ) from exc
            raise InvalidEventError(f"invalid JSON in {self.what}: {exc}") from exc
        if not isinstance(doc, dict):
            raise InvalidEventError(f"{self.what} is not a JSON object")
        self._document(doc, out)

    def _document(self, doc: dict[str, Any], out: list[Event]) -> None:
        raise NotImplementedError
