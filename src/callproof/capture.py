"""Raw capture of one attempt, redaction, offline decoding and timed replay.

A capture is a JSONL file, one object per line, each with ``type`` and ``t`` (seconds on a
monotonic clock since the request was sent)::

    {"type": "meta", "format": "callproof-capture", "version": 1, "api", "target", "model",
     "provider", "timeouts": {...}, "started_at"}
    {"type": "request", "t": 0.0, "method", "url", "headers": [[name, value], ...], "body"}
    {"type": "response", "t", "status", "headers": [[name, value], ...]}
    {"type": "chunk", "t", "b64"}            body bytes exactly as they arrived, per read
    {"type": "raw", "t", "kind", "data"}     each frame or SSE line the decoder saw (readable)
    {"type": "end", "t", "eof", "error": {kind, type, message, status, outcome} | null, "note"}

``chunk`` lines carry the bytes and their arrival times, so :func:`replay_app` reproduces the
stream byte for byte with its original timing (and holds the connection open where the
original hung); ``raw`` lines are for people. Credentials never reach the file: see
:class:`Redactor`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from callproof.dialects.base import RawItem
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
from callproof.targets import Target, Timeouts

__all__ = [
    "REDACTED",
    "Capture",
    "CaptureWriter",
    "Redactor",
    "decode_capture",
    "read_capture",
    "redact_url",
    "replay_app",
]

REDACTED = "[REDACTED]"
FORMAT = "callproof-capture"

#: Header and query-parameter names whose values are credentials.
_SECRET_NAME = re.compile(
    r"(?i)(auth|token|secret|passw|api[-_]?key|^key$|signature|credential|cookie|session)"
)
#: A bearer (or other scheme) token inside any header value.
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+([A-Za-z0-9._~+/=:-]{4,})")
#: An auth scheme word (``Bearer``, ``AWS4-HMAC-SHA256``), kept so a reader sees the kind.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,31}")
#: Header names that carry no secret despite matching the pattern above.
_SAFE_NAMES = frozenset({"x-amz-content-sha256", "content-length"})


class Redactor:
    """Removes credentials from headers and URLs, and remembers every secret it removed so
    that no later line (bodies, frames) can carry one into the file either."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        # What scrub() looks for, prepared once per secret rather than per line: each secret
        # and its JSON-escaped form, longest first so that a secret containing another is
        # replaced whole, not around the shorter one.
        self._forms: list[str] = []
        self._byte_forms: list[bytes] = []

    def _remember(self, value: str) -> None:
        added = False
        for piece in {value, *value.replace(",", " ").split()}:
            if len(piece) >= 8 and piece not in self.secrets:
                self.secrets.add(piece)
                added = True
        if added:
            forms = set(self.secrets) | {json.dumps(s)[1:-1] for s in self.secrets}
            self._forms = sorted(forms, key=len, reverse=True)
            self._byte_forms = sorted((s.encode() for s in self.secrets), key=len, reverse=True)

    def header(self, name: str, value: str) -> str:
        """The value to record for header ``name``."""
        if name.lower() not in _SAFE_NAMES and _SECRET_NAME.search(name):
            scheme, sep, rest = value.partition(" ")
            if sep and _SCHEME.fullmatch(scheme):
                self._remember(rest)
                return f"{scheme} {REDACTED}"
            self._remember(value)
            return REDACTED

        def sub(m: re.Match[str]) -> str:
            self._remember(m.group(2))
            return f"{m.group(1)} {REDACTED}"

        return _BEARER.sub(sub, value)

    def headers(self, items: Iterable[tuple[str, str]]) -> list[list[str]]:
        return [[k, self.header(k, v)] for k, v in items]

    def url(self, url: str) -> str:
        """``url`` with credentials in the query string and user info replaced."""
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            self._remember(userinfo)
            netloc = f"{REDACTED}@{host}"
        query = parts.query
        if query:
            pairs = []
            for key, value in parse_qsl(query, keep_blank_values=True):
                if _SECRET_NAME.search(key) or key.lower().startswith("x-amz-"):
                    self._remember(value)
                    value = REDACTED
                pairs.append((key, value))
            query = urlencode(pairs, safe="[]")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

    def scrub(self, text: str) -> str:
        """``text`` with every remembered secret replaced."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def scrub_bytes(self, data: bytes) -> bytes:
        """``data`` with every remembered secret replaced."""
        for form in self._byte_forms:
            if form in data:
                data = data.replace(form, REDACTED.encode())
        return data


def redact_url(url: str) -> str:
    """``url`` with keys in its query string and user info replaced, for logs and messages."""
    return Redactor().url(url)


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
        self._write(
            {
                "type": "response",
                "t": self._t(now),
                "status": status,
                "headers": self.redactor.headers(headers),
            }
        )

    def chunk(self, now: float, data: bytes) -> None:
        data = self.redactor.scrub_bytes(data)
        b64 = base64.b64encode(data).decode()
        # Scrubbed as bytes already; the base64 text of the line cannot spell a secret.
        self._write({"type": "chunk", "t": self._t(now), "b64": b64}, scrub=False)

    def raw_items(self, now: float, items: Iterable[RawItem]) -> None:
        t = self._t(now)
        for item in items:
            self._write({"type": "raw", "t": t, "kind": item.kind, "data": _jsonable(item.data)})

    def end(
        self, now: float, *, error: CallError | None, eof: bool, note: str | None = None
    ) -> None:
        err = None
        if error is not None:
            err = {**error.to_dict(), "outcome": error.outcome}
        self._write({"type": "end", "t": self._t(now), "eof": eof, "error": err, "note": note})

    def close(self) -> None:
        if self._file is not None:
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
        kind = obj.get("type") if isinstance(obj, dict) else None
        if capture is None:
            if kind != "meta" or obj.get("format") != FORMAT:
                raise ConfigError(f"{path}: not a callproof capture (no meta line first)")
            capture = Capture(meta=obj)
            continue
        try:
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
                    capture.end = obj
        except (KeyError, TypeError, ValueError) as exc:  # binascii.Error is a ValueError
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
    from callproof.client import CallState, get_dialect

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


def _decode(cap: Capture, dialect: Any, state: Any) -> Response:
    from callproof.client import _decoding

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
        _decoding(state.on_bytes, t, data)
    if cap.eof:
        _decoding(state.on_eof, end_t)
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


_HOP_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive"}
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def replay_app(
    path: Path, *, speed: float = 1.0
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app that answers every HTTP request with the captured response: the original
    status and headers, each body chunk at its original time (divided by ``speed``), and the
    connection held open where the original hung. ``callproof emulate --replay`` serves it."""
    cap = read_capture(path)
    if speed <= 0:
        raise ConfigError("replay speed must be positive")

    async def play(send: Send) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def at(t: float) -> None:
            delay = start + t / speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

        if cap.response is None:
            await asyncio.Event().wait()  # the original never answered
            return
        await at(float(cap.response["t"]))
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in cap.response["headers"]
            if k.lower() not in _HOP_HEADERS
        ]
        await send(
            {
                "type": "http.response.start",
                "status": int(cap.response["status"]),
                "headers": headers,
            }
        )
        for t, data in cap.chunks:
            await at(t)
            await send({"type": "http.response.body", "body": data, "more_body": True})
        if cap.eof:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await asyncio.Event().wait()  # the original stream hung here

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        while True:  # read the request body before answering
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        if message["type"] == "http.disconnect":
            return
        player = asyncio.create_task(play(send))

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            player.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await player
        except asyncio.CancelledError:
            if not watcher.done():  # cancelled from outside (server shutdown), not by the peer
                raise
        finally:
            watcher.cancel()
            player.cancel()

    return app
