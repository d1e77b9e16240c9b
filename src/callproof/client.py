"""One async streaming client over the four wire APIs that never hides a failure.

::

    async with Client() as client:
        async with client.stream(target, conversation) as stream:
            async for event in stream:        # typed events (callproof.events)
                ...
        response = stream.response            # text, thinking, tool calls, stop, usage, timings
        response = await client.complete(target, conversation)   # the same, in one call

The pipeline: :mod:`callproof.transforms` adapts the conversation to the target, the target's
dialect encodes it, :mod:`callproof.endpoints` adds URL and auth, httpx sends it, the dialect's
sans-IO decoder turns bytes into events, and :class:`CallState` runs the clocks and accumulates
the :class:`~callproof.events.Response`.

Clocks are measured on *decoded events*, never bytes, so keep-alive comments do not reset them.
Each wait for bytes runs under an asyncio timeout, so a hung socket is interrupted on time
whatever the socket's own read timeout. Every failure is a :class:`~callproof.errors.CallError`
carrying target, model, request id and the partial response (``error.response``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from callproof import transport as _transport
from callproof.conversation import Conversation
from callproof.dialects.base import Dialect, StreamDecoder
from callproof.endpoints import Signer, build_request
from callproof.errors import (
    CallError,
    ConfigError,
    DeadlineExceeded,
    IncompleteFrame,
    IncompleteStreamError,
    InvalidEventError,
    ProtocolError,
    StallBeforeHeaders,
    StallError,
    StallMidStream,
    StallNoEvents,
    TransportError,
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
from callproof.looplag import AdmissionGate, is_admitted
from callproof.targets import Target, Timeouts
from callproof.telemetry.tracing import client_trace
from callproof.transforms import TransformPolicy, prepare

if TYPE_CHECKING:
    from callproof.capture import CaptureWriter

__all__ = [
    "MAX_BODY_BYTES",
    "REQUEST_ID_HEADERS",
    "CallState",
    "Client",
    "ResponseStream",
    "get_dialect",
    "request_id_from",
]

log = logging.getLogger(__name__)

#: Response headers that carry a request id, in order of preference.
REQUEST_ID_HEADERS = ("x-amzn-requestid", "x-amz-request-id", "x-request-id", "x-generation-id")
#: An error body longer than this is cut (a misbehaving server must not exhaust memory).
MAX_ERROR_BODY = 1 << 20
#: A response body (after httpx undoes gzip/deflate/br) longer than this ends the call with a
#: ProtocolError: a ~1 MiB gzip bomb must not cost a gigabyte. Far above any real answer.
MAX_BODY_BYTES = 64 << 20
#: After the terminal event, how long the rest of the body may take to end (so the connection
#: can be reused) before it is closed; the answer is complete either way.
AFTER_STOP_GRACE_S = 0.25


def get_dialect(api: str, **options: Any) -> Dialect:
    """The dialect for ``api`` (one of :data:`~callproof.dialects.base.API_NAMES`), built with
    ``options`` (a target's ``dialect_options``)."""
    from callproof import dialects

    return dialects.get_dialect(api, **options)


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


class ResponseStream:
    """An open response: an async iterator of :data:`~callproof.events.Event`.

    ``response`` is the :class:`~callproof.events.Response` accumulated so far. Closing it (or
    leaving the ``async with``) closes the connection.
    """

    def __init__(
        self,
        *,
        target: Target,
        state: CallState,
        http_response: httpx.Response,
        capture: CaptureWriter | None,
    ) -> None:
        self.target = target
        self._state = state
        self._http = http_response
        self._bytes = http_response.aiter_bytes()
        self._capture = capture
        self._pending: deque[Event] = deque()
        self._done = False
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._resumed_at: float | None = None
        self._received = 0  # decoded body bytes so far, against MAX_BODY_BYTES

    @property
    def response(self) -> Response:
        """Everything decoded so far, with timings."""
        return self._state.response

    @property
    def status_code(self) -> int:
        return self._http.status_code

    @property
    def warnings(self) -> list[str]:
        """The decoder's warnings about a stream that still counts as complete (an OpenAI
        chat stream without ``data: [DONE]``)."""
        return list(getattr(self._state.decoder, "warnings", ()))

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> Event:
        if not self._pending and not self._done:
            # The idle clock restarts when the consumer comes back for more, not at every
            # chunk read: a chunk of keep-alive comments must not reset it.
            self._resumed_at = self._loop.time()
        while not self._pending:
            if self._done:
                raise StopAsyncIteration
            await self._read()
        return self._pending.popleft()

    async def _read(self) -> None:
        state = self._state
        limit, stall_cls = state.next_limit(resumed_at=self._resumed_at)
        try:
            try:
                async with asyncio.timeout_at(limit):
                    chunk = await anext(self._bytes)
            except StopAsyncIteration:
                now = self._loop.time()
                self._done = True
                self._pending.extend(_decoding(state.on_eof, now))
                await self._finish(None)
                return
            except TimeoutError:
                now = self._loop.time()
                raise state.stall(stall_cls, now) from None
            except httpx.HTTPError as exc:
                raise self._translate_body_error(exc) from exc
            now = self._loop.time()
            self._count(len(chunk))
            if self._capture is not None:
                self._capture.chunk(now, chunk)
            events = _decoding(state.on_bytes, now, chunk)
            if self._capture is not None:
                # Drained every chunk: a decoder would otherwise keep thousands of raw frames.
                self._capture.raw_items(now, state.decoder.raw_items())
            self._pending.extend(events)
            if state.stopped:
                await self._end_after_stop(now)
        except CallError as err:
            self._done = True
            await self._finish(err)
            raise _contextualise(err, self.target, state) from err.__cause__

    async def _end_after_stop(self, stopped_at: float) -> None:
        """The terminal event is in, so the answer is complete. Read what is left of the body
        for a moment, so the connection can be reused; a server that holds the body open after
        the terminal event (seen with Kimi-API streams) must not turn a finished answer into a
        stall. Trailing bytes are captured but not decoded. The clocks stop at the event."""
        self._done = True
        try:
            async with asyncio.timeout(AFTER_STOP_GRACE_S):
                async for chunk in self._bytes:
                    self._received += len(chunk)
                    if self._received > MAX_BODY_BYTES:
                        break  # the answer is complete; the rest is not worth the memory
                    if self._capture is not None:
                        self._capture.chunk(self._loop.time(), chunk)
        except TimeoutError:
            log.debug(
                "%s: body still open %.2f s after the terminal event; closing it",
                self.target.name,
                AFTER_STOP_GRACE_S,
            )
        except httpx.HTTPError as exc:
            log.debug("%s: body broke after the terminal event: %s", self.target.name, exc)
        self._state.response.keepalives = self._state.decoder.keepalives
        await self._finish(None, at=stopped_at)

    def _count(self, size: int) -> None:
        self._received += size
        if self._received > MAX_BODY_BYTES:
            encoding = self._http.headers.get("content-encoding")
            raise ProtocolError(
                f"the response body passed {MAX_BODY_BYTES} bytes"
                + (f" decoded (content-encoding {encoding})" if encoding else "")
                + "; the rest was not read"
            )

    def _translate_body_error(self, exc: httpx.HTTPError) -> CallError:
        """A connection that broke mid-body: incomplete when the peer closed early (or left a
        frame half-sent), a transport error when the read itself failed (a reset)."""
        if isinstance(exc, httpx.RemoteProtocolError):
            try:
                self._state.decoder.close()
            except (IncompleteFrame, IncompleteStreamError):
                pass
            except CallError as err:
                return err
            return IncompleteStreamError(f"connection closed mid-stream: {exc}")
        return _translate_transport(exc, during="reading the response body")

    async def _finish(self, error: CallError | None, *, at: float | None = None) -> None:
        now = self._loop.time()
        self._state.finish(now if at is None else at)
        if self._capture is not None:
            self._capture.end(now, error=error, eof=error is None or self._done_eof(error))
        await self.aclose()

    @staticmethod
    def _done_eof(error: CallError) -> bool:
        return not isinstance(error, StallError | TransportError)

    async def aclose(self) -> None:
        """Close the connection (idempotent). Called when leaving ``async with``."""
        if self._closed:
            return
        self._closed = True
        if not self._done and self._capture is not None:
            now = self._loop.time()
            self._state.finish(now)
            self._capture.end(now, error=None, eof=False, note="closed by the caller")
        self._done = True
        await self._http.aclose()
        if self._capture is not None:
            self._capture.close()


def _decoding(step: Callable[..., list[Event]], *args: Any) -> list[Event]:
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


def _contextualise(err: CallError, target: Target, state: CallState | None) -> CallError:
    err.with_context(
        target=target.name,
        model=target.model,
        request_id=state.response.request_id if state else None,
    )
    if state is not None and err.response is None:
        err.response = state.response
    return err


def _translate_transport(exc: httpx.HTTPError, *, during: str) -> CallError:
    """httpx's errors, named for their cause (this is the one translation boundary)."""
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE" in text.upper() or "SSL" in text.upper() or "TLS" in text.upper():
        return TransportError(f"TLS error while {during}: {text}")
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return TransportError(f"could not connect: {text}")
    if isinstance(exc, httpx.RemoteProtocolError):
        return TransportError(f"the server broke the HTTP protocol while {during}: {text}")
    return TransportError(f"{type(exc).__name__} while {during}: {text}")


class Client:
    """The callproof client: ``stream()`` and ``complete()`` over one ``httpx.AsyncClient``.

    Pass ``http`` to use your own client, or ``transport`` (e.g. ``httpx.MockTransport`` or
    ``httpx.ASGITransport(app)``) to fake the network. Without either, one
    ``httpx.AsyncClient`` is made per TLS-verification setting of the endpoints used.
    ``keep_events`` keeps every event on ``Response.events``. ``policy`` chooses how
    conversations are adapted to each target (see :mod:`callproof.transforms`).
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        keep_events: bool = False,
        policy: TransformPolicy | None = None,
        signer: Signer | None = None,
        admission: AdmissionGate | None = None,
    ) -> None:
        self._owned: dict[str, httpx.AsyncClient] = {}
        self._http = http
        #: New calls wait here, before their clocks start, while the loop is behind
        #: (:class:`~callproof.looplag.AdmissionGate`); by default on the real network only.
        self.admission = admission
        if admission is None and http is None and transport is None:
            self.admission = AdmissionGate()
        if http is None and transport is not None:
            # Our own clocks (CallState) time every call; httpx's per-read timeouts would
            # not measure what we mean, so they are off.
            self._http = httpx.AsyncClient(transport=transport, timeout=None)  # noqa: S113
            self._owned["transport"] = self._http
        self.keep_events = keep_events
        self.policy = policy or TransformPolicy()
        self._signer = signer or Signer()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP clients this client made (an injected ``http`` stays open)."""
        owned, self._owned = self._owned, {}
        if self.admission is not None:
            self.admission.stop()
        for http in owned.values():
            await http.aclose()

    def _http_for(self, verify: bool | str) -> httpx.AsyncClient:
        if self._http is not None:
            return self._http
        key = f"verify={verify!r}"
        http = self._owned.get(key)
        if http is None:
            ssl_verify: bool | ssl.SSLContext = verify if isinstance(verify, bool) else True
            if isinstance(verify, str):
                try:
                    ssl_verify = ssl.create_default_context(cafile=verify)
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigError(
                        f"cannot load the CA bundle {verify}: {exc.strerror or exc}",
                        where="endpoint.verify",
                    ) from exc
            # callproof.transport: httpcore's connections on an O(1) free list, not its pool
            # (whose per-event scan is O(connections x requests): a cliff past ~1,000 streams).
            http = httpx.AsyncClient(
                transport=_transport.make_transport(ssl_verify),
                timeout=None,  # noqa: S113 - see above: CallState's clocks time each call
            )
            self._owned[key] = http
        return http

    def build(self, target: Target, conversation: Conversation) -> httpx.Request:
        """The exact HTTP request ``stream()`` would send (transforms applied, signed)."""
        dialect = get_dialect(target.api, **target.dialect_options)
        prepared = prepare(conversation, target, self.policy)
        wire = dialect.encode_request(target.model, prepared, extra=target.extra or None)
        return build_request(wire, target.endpoint, signer=self._signer)

    @asynccontextmanager
    async def stream(
        self,
        target: Target,
        conversation: Conversation,
        *,
        timeouts: Timeouts | None = None,
        capture: Path | None = None,
    ) -> AsyncIterator[ResponseStream]:
        """Send one request and yield its :class:`ResponseStream` once headers are in.

        Raises, on entry, a :class:`~callproof.errors.StallBeforeHeaders` when no headers came
        within the first-event timeout, an :class:`~callproof.errors.HTTPStatusError` for a
        non-2xx answer, a :class:`~callproof.errors.TransportError` when the connection failed,
        and :class:`~callproof.errors.ConfigError` for bad configuration (no credentials).
        """
        span = client_trace(target, conversation)  # None unless tracing is on (opt-in)
        try:
            stream = await self._open(target, conversation, timeouts or target.timeouts, capture)
        except BaseException as exc:
            if span is not None:
                span.end(None, exc)
            raise
        try:
            yield stream
        except BaseException as exc:
            if span is not None:
                span.end(stream.response, exc)
            raise
        finally:
            await stream.aclose()
        if span is not None:
            span.end(stream.response, None)

    async def complete(
        self,
        target: Target,
        conversation: Conversation,
        *,
        timeouts: Timeouts | None = None,
        capture: Path | None = None,
    ) -> Response:
        """Send one request, read the whole stream, return the :class:`Response`."""
        async with self.stream(target, conversation, timeouts=timeouts, capture=capture) as s:
            async for _ in s:
                pass
        return s.response

    async def _open(
        self, target: Target, conversation: Conversation, timeouts: Timeouts, capture: Path | None
    ) -> ResponseStream:
        if self.admission is not None and not is_admitted():
            await self.admission.admit()  # before any clock or work of this call
        dialect = get_dialect(target.api, **target.dialect_options)
        if target.endpoint.auth.kind == "sigv4" and not self._signer.ready(
            target.endpoint.auth.profile
        ):
            # The first resolution of botocore's credential chain (or a refresh) may read
            # files or wait on a credential service: keep it off the event loop. Once
            # resolved, signing is pure CPU and runs on the loop (no thread hop per call).
            request = await asyncio.to_thread(self.build, target, conversation)
        else:
            request = self.build(target, conversation)
        request.extensions["timeout"] = httpx.Timeout(
            connect=timeouts.connect, read=None, write=None, pool=None
        ).as_dict()
        http = self._http_for(target.endpoint.verify)
        writer: CaptureWriter | None = None
        if capture is not None:
            from callproof.capture import CaptureWriter

            writer = CaptureWriter(capture, target=target, timeouts=timeouts)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        decoder = dialect.stream_decoder()
        decoder.record_raw = writer is not None  # raw units only for a capture to record
        state = CallState(
            decoder,
            timeouts,
            t0,
            keep_events=self.keep_events,
            model=target.model,
        )
        if writer is not None:
            writer.request(t0, request)
        if log.isEnabledFor(logging.DEBUG):
            # Keys in a URL's query string or user info must not reach a log.
            from callproof.capture import redact_url

            url = redact_url(str(request.url))
            log.debug("%s %s (target %s)", request.method, url, target.name)
        try:
            try:
                limit, stall_cls = state.next_limit()
                async with asyncio.timeout_at(limit):
                    http_response = await http.send(request, stream=True)
            except TimeoutError:
                raise state.stall(stall_cls, loop.time()) from None
            except httpx.HTTPError as exc:
                raise _translate_transport(exc, during="sending the request") from exc
            now = loop.time()
            state.on_headers(now, http_response.headers)
            if writer is not None:
                writer.response(now, http_response.status_code, http_response.headers.multi_items())
            if not 200 <= http_response.status_code < 300:
                await self._raise_status(dialect, http_response, state, writer)
        except CallError as err:
            state.finish(loop.time())
            if writer is not None:
                writer.end(loop.time(), error=err, eof=not isinstance(err, StallError))
                writer.close()
            raise _contextualise(err, target, state) from err.__cause__
        except BaseException:
            if writer is not None:
                writer.close()
            raise
        return ResponseStream(
            target=target, state=state, http_response=http_response, capture=writer
        )

    @staticmethod
    async def _raise_status(
        dialect: Dialect,
        http_response: httpx.Response,
        state: CallState,
        writer: CaptureWriter | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        body = bytearray()
        limit, stall_cls = state.next_limit()
        try:
            async with asyncio.timeout_at(limit):
                async for chunk in http_response.aiter_bytes():
                    if writer is not None:
                        writer.chunk(loop.time(), chunk)
                    body += chunk
                    if len(body) > MAX_ERROR_BODY:
                        break
        except TimeoutError:
            # The status line already said what happened: an error body that never ends
            # must not turn a 429 or a 503 into a stall.
            log.debug(
                "HTTP %d: error body unfinished after %d bytes (%s timer)",
                http_response.status_code,
                len(body),
                stall_cls.outcome,
            )
        except httpx.HTTPError:
            pass  # a broken error body still has a status worth reporting
        finally:
            await http_response.aclose()
        raise dialect.decode_error(
            http_response.status_code, http_response.headers, bytes(body[:MAX_ERROR_BODY])
        )
