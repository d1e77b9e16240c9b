"""Raw capture of one attempt: writing it (redacted), reading it back and decoding it offline.

A capture is a JSONL file, one object per line, each with ``type`` and ``t`` (seconds on a
monotonic clock since the request was sent)::

    {"type": "meta", "format": "callproof-capture", "version": 1, "api", "target", "model",
     "provider", "timeouts": {...}, "started_at"}
    {"type": "request", "t": 0.0, "method", "url", "headers": [[name, value], ...], "body"}
    {"type": "response", "t", "status", "headers": [[name, value], ...]}
    {"type": "chunk", "t", "b64"}            body bytes exactly as they arrived, per read
    {"type": "raw", "t", "kind", "data"}     each frame or SSE line the decoder saw (readable)
    {"type": "end", "t", "eof", "error": {kind, type, message, status, outcome} | null, "note"}

``chunk`` lines carry the bytes and their arrival times, so
:func:`callproof.emulator.replay.replay_app` reproduces the
stream byte for byte with its original timing (and holds the connection open where the
original hung); ``raw`` lines are for people. Credentials never reach the file: headers and URLs
go through :class:`~callproof.redact.Redactor`, every line is scrubbed of the secrets the process
knows, and the body is scrubbed as one joined stream when it ends, in whole frames or lines
(:class:`~callproof.scrub_body.BodyScrubber`), so a scrubbed capture replays to the same outcome
as the call. Chunk lines are therefore written after the body ends, each with its read's time.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx

from callproof.callstate import CallState, decode_step
from callproof.dialects import get_dialect
from callproof.dialects.base import Dialect, RawItem, StreamDecoder
from callproof.errors import (
    CallError,
    ConfigError,
    DeadlineExceeded,
    StallBeforeHeaders,
    StallMidStream,
    StallNoEvents,
    TransportError,
)
from callproof.events import Event, Response
from callproof.redact import Redactor
from callproof.scrub_body import BodyScrubber
from callproof.targets import Target, Timeouts

__all__ = [
    "Capture",
    "CaptureWriter",
    "decode_capture",
    "read_capture",
]

FORMAT = "callproof-capture"
#: At most this many ``raw`` lines per capture (a keep-alive flood makes millions); the rest
#: are counted in one last ``raw`` line of kind ``dropped``. Chunks are always kept whole.
MAX_RAW_LINES = 20_000
#: The eventstream content type: such bodies are scrubbed frame by frame and re-encoded.
_EVENTSTREAM = "application/vnd.amazon.eventstream"


def _jsonable(value: Any) -> Any:
    """A JSON form of a decoder's raw item (frames, SSE events, comments, bytes)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        try:
            return data.decode()
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(data).decode()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__") or hasattr(value, "__slots__"):
        names: Iterable[str] = (
            getattr(value, "__dataclass_fields__", None) or getattr(value, "__slots__", ()) or ()
        )
        return {n: _jsonable(getattr(value, n, None)) for n in names if not n.startswith("_")}
    return repr(value)


class CaptureWriter:
    """Writes one attempt's capture (the client drives it; see :meth:`Client.stream`)."""

    def __init__(self, path: Path, *, target: Target, timeouts: Timeouts) -> None:
        self.path = Path(path)
        self.redactor = Redactor()
        self._t0 = 0.0
        self._body = BodyScrubber(eventstream=False)
        self._pending: tuple[float, bytearray] | None = None
        self._raw_written = 0
        self._raw_dropped = 0
        self._target = target
        # Raw lines are decoded from the scrubbed body as it is written (not from the live
        # decoder), so they hold no secret the body scrubbing removed, split ones included.
        self._raw_decoder: StreamDecoder | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] | None = self.path.open("w", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write capture {path}: {exc.strerror or exc}") from exc
        self._write(
            {
                "type": "meta",
                "format": FORMAT,
                "version": 1,
                "api": target.api,
                "target": target.name,
                "model": target.model,
                "provider": target.provider,
                "timeouts": {
                    "connect": timeouts.connect,
                    "first_event": timeouts.first_event,
                    "idle": timeouts.idle,
                    "deadline": timeouts.deadline,
                },
                "started_at": datetime.now(UTC).isoformat(),
            }
        )

    def _write(self, obj: dict[str, Any], *, scrub: bool = True) -> None:
        if self._file is None:
            return
        line = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        self._file.write((self.redactor.scrub(line) if scrub else line) + "\n")

    def _t(self, now: float) -> float:
        return round(now - self._t0, 6)

    def request(self, t0: float, request: httpx.Request) -> None:
        self._t0 = t0
        headers = self.redactor.headers(request.headers.multi_items())
        url = self.redactor.url(str(request.url))
        body = request.content
        record: dict[str, Any] = {
            "type": "request",
            "t": 0.0,
            "method": request.method,
            "url": url,
            "headers": headers,
        }
        try:
            record["body"] = body.decode()
        except UnicodeDecodeError:
            record["body_b64"] = base64.b64encode(body).decode()
        self._write(record)

    def response(self, now: float, status: int, headers: Iterable[tuple[str, str]]) -> None:
        headers = list(headers)
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        self._body = BodyScrubber(eventstream=content_type.lower().startswith(_EVENTSTREAM))
        if 200 <= status < 300:
            try:
                dialect = get_dialect(self._target.api, **self._target.dialect_options)
            except ConfigError:
                dialect = None
            if dialect is not None:
                self._raw_decoder = dialect.stream_decoder()
                self._raw_decoder.record_raw = True
        self._write(
            {
                "type": "response",
                "t": self._t(now),
                "status": status,
                "headers": self.redactor.headers(headers),
            }
        )

    def chunk(self, now: float, data: bytes) -> None:
        """Body bytes as read at ``now``. They are written scrubbed, a segment at a time (see
        :class:`~callproof.scrub_body.BodyScrubber`), each read with its own time."""
        for t, piece in self._body.feed(now, data):
            self._put(t, piece)

    def _put(self, t: float, data: bytes) -> None:
        # Pieces of one read that straddled two units come out separately: join them, so a
        # capture with no secret keeps the reads exactly as they came.
        pending = self._pending
        if pending is not None and pending[0] == t:
            pending[1].extend(data)
            return
        self._write_pending()
        self._pending = (t, bytearray(data))

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            b64 = base64.b64encode(pending[1]).decode()
            # Scrubbed as bytes already; the base64 text of the line cannot spell a secret.
            self._write({"type": "chunk", "t": self._t(pending[0]), "b64": b64}, scrub=False)
            self._decode_raw(pending[0], bytes(pending[1]), end=False)

    def _decode_raw(self, t: float, data: bytes, *, end: bool) -> None:
        decoder = self._raw_decoder
        if decoder is None:
            return
        try:
            if end:
                decoder.close()
            else:
                decoder.feed(data)
        except CallError:
            self._raw_decoder = None  # the body broke here: the raw lines stop with it
        self._raw(t, decoder.raw_items())

    def _flush_body(self) -> None:
        for t, piece in self._body.finish():
            self._put(t, piece)
        last = self._pending[0] if self._pending is not None else None
        self._write_pending()
        if last is not None:
            self._decode_raw(last, b"", end=True)
        self._raw_decoder = None

    def raw_items(self, now: float, items: Iterable[RawItem]) -> None:
        """Accepted for callers that feed a live decoder's raw units; they are not written
        (the capture decodes its raw lines from the scrubbed body itself)."""
        del now, items

    def _raw(self, t_abs: float, items: Iterable[RawItem]) -> None:
        t = self._t(t_abs)
        for item in items:
            if self._raw_written >= MAX_RAW_LINES:
                self._raw_dropped += 1
                continue
            self._raw_written += 1
            self._write({"type": "raw", "t": t, "kind": item.kind, "data": _jsonable(item.data)})

    def end(
        self, now: float, *, error: CallError | None, eof: bool, note: str | None = None
    ) -> None:
        self._flush_body()
        if self._raw_dropped:
            self._write(
                {"type": "raw", "t": self._t(now), "kind": "dropped", "data": self._raw_dropped}
            )
            self._raw_dropped = 0
        err = None
        if error is not None:
            err = {**error.to_dict(), "outcome": error.outcome}
        self._write({"type": "end", "t": self._t(now), "eof": eof, "error": err, "note": note})

    def close(self) -> None:
        if self._file is not None:
            self._flush_body()
            self._file.close()
            self._file = None


@dataclass(slots=True)
class Capture:
    """A capture file, read back."""

    meta: dict[str, Any]
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None

    @property
    def api(self) -> str:
        return str(self.meta.get("api"))

    @property
    def timeouts(self) -> Timeouts:
        t = self.meta.get("timeouts") or {}
        return Timeouts(**{k: t.get(k) for k in ("connect", "first_event", "idle", "deadline")})

    @property
    def eof(self) -> bool:
        """Whether the body reached its end (else the original connection was left open)."""
        return bool(self.end and self.end.get("eof"))


def _timeouts(value: Any, where: str) -> dict[str, float | None]:
    """The meta line's clocks: numbers of seconds or null, else a :class:`ConfigError`."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: timeouts is not an object")
    out: dict[str, float | None] = {}
    for key in ("connect", "first_event", "idle", "deadline"):
        item = value.get(key)
        if item is not None and (isinstance(item, bool) or not isinstance(item, int | float)):
            raise ConfigError(f"{where}: timeouts.{key} is not a number of seconds")
        try:
            out[key] = None if item is None else float(item)
        except OverflowError:
            raise ConfigError(f"{where}: timeouts.{key} is out of range") from None
    return out


def _meta(obj: Any, path: Path, number: int) -> Capture:
    """The capture a first (meta) line opens."""
    kind = obj.get("type") if isinstance(obj, dict) else None
    if kind != "meta" or obj.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a callproof capture (no meta line first)")
    obj["timeouts"] = _timeouts(obj.get("timeouts"), f"{path}:{number}")
    if not isinstance(obj.get("api"), str):
        raise ConfigError(f"{path}:{number}: the meta line names no api")
    return Capture(meta=obj)


def _add_line(capture: Capture, kind: Any, obj: dict[str, Any]) -> None:
    """One later line into ``capture``; a malformed one raises KeyError, TypeError or
    ValueError (an unknown kind is ignored)."""
    match kind:
        case "request":
            capture.request = obj
        case "response":
            obj["t"], obj["status"] = float(obj["t"]), int(obj["status"])
            obj["headers"] = [[str(k), str(v)] for k, v in obj["headers"]]
            capture.response = obj
        case "chunk":
            data = base64.b64decode(obj["b64"], validate=True)
            capture.chunks.append((float(obj["t"]), data))
        case "raw":
            capture.raw.append(obj)
        case "end":
            obj["t"] = float(obj.get("t", 0.0))
            if not isinstance(obj.get("error"), dict | None):
                raise TypeError("error is not an object")
            capture.end = obj


def read_capture(path: Path) -> Capture:
    """Parse a capture file; a file that is not one is a :class:`ConfigError`."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read capture {path}: {exc.strerror or exc}") from exc
    capture: Capture | None = None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: not a JSON line: {exc}") from exc
        if capture is None:
            capture = _meta(obj, path, number)
            continue
        kind = obj.get("type") if isinstance(obj, dict) else None
        try:
            _add_line(capture, kind, obj)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # binascii: ValueError
            raise ConfigError(
                f"{path}:{number}: a malformed {kind} line ({type(exc).__name__}: {exc})"
            ) from exc
    if capture is None:
        raise ConfigError(f"{path}: empty capture")
    return capture


def decode_capture(path: Path) -> tuple[Response | CallError, list[Event]]:
    """Decode a capture offline: the :class:`Response` the client would return, or the
    :class:`CallError` it would raise, and the events decoded on the way.

    The recorded timestamps run through the same clocks (the capture's timeouts) as a live
    call, so a recorded stall is concluded as the same stall.
    """
    cap = read_capture(path)
    dialect = get_dialect(cap.api)
    decoder = dialect.stream_decoder()
    decoder.record_raw = False  # the capture's own raw lines are what a reader wants
    state = CallState(decoder, cap.timeouts, 0.0, keep_events=True, model=cap.meta.get("model"))
    try:
        result = _decode(cap, dialect, state)
    except CallError as err:
        state.finish((cap.end or {}).get("t", 0.0))
        err.with_context(
            target=cap.meta.get("target"),
            model=cap.meta.get("model"),
            request_id=state.response.request_id,
        )
        err.response = state.response
        return err, list(state.response.events)
    return result, list(result.events)


def _decode(cap: Capture, dialect: Dialect, state: CallState) -> Response:
    end_t = float((cap.end or {}).get("t", 0.0))

    def check(t: float) -> None:
        limit, cls = state.next_limit()
        if limit is not None and t > limit:
            raise state.stall(cls, limit)

    if cap.response is None:
        check(end_t + 0.05)
        raise _recorded_error(cap)
    check(float(cap.response["t"]))
    headers = {str(k): str(v) for k, v in cap.response["headers"]}
    state.on_headers(float(cap.response["t"]), headers)
    status = int(cap.response["status"])
    if not 200 <= status < 300:
        body = b"".join(data for _, data in cap.chunks)
        raise dialect.decode_error(status, httpx.Headers(headers), body)
    for t, data in cap.chunks:
        check(t)
        decode_step(state.on_bytes, t, data)
    if cap.eof:
        decode_step(state.on_eof, end_t)
        response: Response = state.response
        return response
    check(end_t + 0.05)
    if cap.end is None or cap.end.get("error") is None:
        # The caller stopped reading: nothing went wrong on the wire so far.
        partial: Response = state.finish(end_t)
        return partial
    raise _recorded_error(cap)


def _recorded_error(cap: Capture) -> CallError:
    err = (cap.end or {}).get("error") or {}
    message = str(err.get("message") or "the capture ended without a response")
    for cls in (StallBeforeHeaders, StallNoEvents, StallMidStream, DeadlineExceeded):
        if err.get("outcome") == cls.outcome:
            return cls(message)
    return TransportError(message)
