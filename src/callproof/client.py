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
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from callproof import dialects
from callproof import transport as _transport
from callproof.callstate import REQUEST_ID_HEADERS, CallState, decode_step, request_id_from
from callproof.capture import CaptureWriter
from callproof.clock import REAL_CLOCK, Clock, RealClock, timeout_after
from callproof.conversation import Conversation
from callproof.dialects.base import Dialect
from callproof.endpoints import Signer, build_request
from callproof.errors import (
    CallError,
    ConfigError,
    IncompleteFrame,
    IncompleteStreamError,
    ProtocolError,
    StallError,
    TransportError,
)
from callproof.events import (
    Event,
    Response,
)
from callproof.h1 import Body, H1Transport
from callproof.looplag import AdmissionGate, is_admitted
from callproof.redact import redact_url
from callproof.targets import Target, Timeouts
from callproof.telemetry.tracing import client_trace
from callproof.transforms import TransformPolicy, prepare

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

#: An error body longer than this is cut (a misbehaving server must not exhaust memory).
MAX_ERROR_BODY = 1 << 20
#: A response body (after httpx undoes gzip/deflate/br) longer than this ends the call with a
#: ProtocolError: a ~1 MiB gzip bomb must not cost a gigabyte. Far above any real answer.
MAX_BODY_BYTES = 64 << 20
#: After the terminal event, how long the rest of the body may take to end (so the connection
#: can be reused) before it is closed; the answer is complete either way.
AFTER_STOP_GRACE_S = 0.25


def get_dialect(api: str, **options: Any) -> Dialect:
    """The dialect for ``api`` (one of :data:`~callproof.dialects.API_NAMES`), built with
    ``options`` (a target's ``dialect_options``)."""
    return dialects.get_dialect(api, **options)


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
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.target = target
        self._clock = clock  # the client's: every clock of this response reads it
        self._state = state
        self._http = http_response
        self._bytes = http_response.aiter_bytes()
        #: The real network's body read off its connection (no content-encoding to undo):
        #: one ``await`` at most per chunk instead of httpx's and httpcore's layers.
        self._body: Body | None = None
        stream = http_response.stream
        if isinstance(stream, Body):
            encoding = http_response.headers.get("content-encoding", "identity")
            if encoding.strip().lower() == "identity":
                self._body = stream
        #: RealClock's deadlines are loop timers on the read itself (no timeout scope a chunk).
        self._real_clock = type(clock) is RealClock
        self._capture = capture
        self._pending: deque[Event] = deque()
        self._done = False
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._resumed_at: float | None = None
        #: Called once when the stream closes (the admission gate's release).
        self.on_close: Callable[[], None] | None = None
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
            self._resumed_at = self._clock.monotonic()
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
                if self._body is not None:
                    chunk = await self._next_chunk(self._body, limit)
                    if not chunk:
                        raise StopAsyncIteration
                else:
                    async with self._clock.timeout_at(limit):
                        chunk = await anext(self._bytes)
            except StopAsyncIteration:
                now = self._clock.monotonic()
                self._done = True
                self._pending.extend(decode_step(state.on_eof, now))
                await self._finish(None)
                return
            except TimeoutError:
                now = self._clock.monotonic()
                raise state.stall(stall_cls, now) from None
            except httpx.HTTPError as exc:
                raise self._translate_body_error(exc) from exc
            now = self._clock.monotonic()
            self._count(len(chunk))
            if self._capture is not None:
                self._capture.chunk(now, chunk)
            events = decode_step(state.on_bytes, now, chunk)
            self._pending.extend(events)
            if state.stopped:
                await self._end_after_stop(now)
        except CallError as err:
            self._done = True
            await self._finish(err)
            raise _contextualise(err, self.target, state) from err.__cause__

    async def _next_chunk(self, body: Body, limit: float | None) -> bytes:
        """The next chunk of a connection-read body (``b""`` at its end), waiting until
        ``limit`` at most (then TimeoutError, as ``clock.timeout_at`` raises it)."""
        chunk = body.take()
        while chunk is None:
            if limit is None:
                await body.wait()
            elif self._real_clock:
                await body.wait(limit - self._clock.monotonic())
            else:
                async with self._clock.timeout_at(limit):
                    await body.wait()
            chunk = body.take()
        return chunk

    def _trailing(self, chunk: bytes) -> bool:
        """Count and capture a chunk after the terminal event; True once past the cap."""
        self._received += len(chunk)
        if self._received > MAX_BODY_BYTES:
            return True  # the answer is complete; the rest is not worth the memory
        if self._capture is not None:
            self._capture.chunk(self._clock.monotonic(), chunk)
        return False

    async def _end_after_stop(self, stopped_at: float) -> None:
        """The terminal event is in, so the answer is complete. Read what is left of the body
        for a moment, so the connection can be reused; a server that holds the body open after
        the terminal event (seen with Kimi-API streams) must not turn a finished answer into a
        stall. Trailing bytes are captured but not decoded. The clocks stop at the event."""
        self._done = True
        try:
            if self._body is not None:
                limit = self._clock.monotonic() + AFTER_STOP_GRACE_S
                while (chunk := await self._next_chunk(self._body, limit)) and not (
                    self._trailing(chunk)
                ):
                    pass
            else:
                async with timeout_after(self._clock, AFTER_STOP_GRACE_S):
                    async for chunk in self._bytes:
                        if self._trailing(chunk):
                            break
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
        now = self._clock.monotonic()
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
            now = self._clock.monotonic()
            self._state.finish(now)
            self._capture.end(now, error=None, eof=False, note="closed by the caller")
        self._done = True
        if self.on_close is not None:
            release, self.on_close = self.on_close, None
            release()
        await self._http.aclose()
        if self._capture is not None:
            self._capture.close()


def _json_for_stream(dialect: Dialect, http_response: httpx.Response) -> bool:
    """True when the dialect expects an event stream but the answer says JSON."""
    expects_stream = dialect.streaming and getattr(dialect, "stream", True) is not False
    content_type = http_response.headers.get("content-type", "").split(";")[0].strip().lower()
    return expects_stream and content_type == "application/json"


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
        clock: Clock | None = None,
    ) -> None:
        self._owned: dict[str, httpx.AsyncClient] = {}
        #: Per owned client, its transport when requests may skip ``AsyncClient.send`` (the
        #: real network's :class:`~callproof.h1.H1Transport`, no proxy in the environment).
        self._direct: dict[str, H1Transport] = {}
        self._http = http
        #: An injected real-network transport is handed requests directly too.
        self._direct_injected: H1Transport | None = None
        if http is None and isinstance(transport, H1Transport) and not urllib.request.getproxies():
            self._direct_injected = transport
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
        #: The clock of every call's watchdogs (first event, idle, deadline); a router over
        #: this client takes it as its own (one clock for both).
        self.clock: Clock = clock or REAL_CLOCK
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
        self._direct = {}
        if self.admission is not None:
            self.admission.stop()
        for http in owned.values():
            await http.aclose()

    def _http_for(self, verify: bool | str) -> tuple[httpx.AsyncClient, H1Transport | None]:
        """The HTTP client for an endpoint's TLS setting, and the transport its requests may
        be handed to directly (None: through ``send``)."""
        if self._http is not None:
            return self._http, self._direct_injected
        key = f"verify={verify!r}"
        http = self._owned.get(key)
        if http is not None:
            return http, self._direct.get(key)
        ssl_verify: bool | ssl.SSLContext = verify if isinstance(verify, bool) else True
        if isinstance(verify, str):
            try:
                ssl_verify = ssl.create_default_context(cafile=verify)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"cannot load the CA bundle {verify}: {exc.strerror or exc}",
                    where="endpoint.verify",
                ) from exc
        # callproof.h1 (via callproof.transport.make_transport): connections on an O(1) free
        # list, not httpcore's pool (whose per-event scan is O(connections x requests)).
        transport = _transport.make_transport(ssl_verify)
        http = httpx.AsyncClient(
            transport=transport,
            timeout=None,  # noqa: S113 - see above: CallState's clocks time each call
        )
        self._owned[key] = http
        # httpx mounts the environment's proxies (HTTP_PROXY...) when the client is made;
        # with one set, requests go through ``send`` (its mounts, NO_PROXY) as before.
        if isinstance(transport, H1Transport) and not urllib.request.getproxies():
            self._direct[key] = transport
        return http, self._direct.get(key)

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
        gate = self.admission
        if gate is None or is_admitted():
            return await self._open_admitted(target, conversation, timeouts, capture)
        await gate.admit()  # before any clock or work of this call
        try:
            stream = await self._open_admitted(target, conversation, timeouts, capture)
        except BaseException:
            gate.release()
            raise
        stream.on_close = gate.release
        return stream

    async def _open_admitted(
        self, target: Target, conversation: Conversation, timeouts: Timeouts, capture: Path | None
    ) -> ResponseStream:
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
        http, direct = self._http_for(target.endpoint.verify)
        writer: CaptureWriter | None = None
        if capture is not None:
            writer = CaptureWriter(capture, target=target, timeouts=timeouts)
        clock = self.clock
        t0 = clock.monotonic()
        decoder = dialect.stream_decoder()
        # A capture decodes its raw lines from the scrubbed body itself (callproof.capture).
        decoder.record_raw = False
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
            url = redact_url(str(request.url))
            log.debug("%s %s (target %s)", request.method, url, target.name)
        try:
            try:
                limit, stall_cls = state.next_limit()
                async with clock.timeout_at(limit):
                    if direct is not None:
                        # The prebuilt request straight to the transport: no auth flow, no
                        # redirect loop (a 3xx is an HTTPStatusError below, never followed),
                        # no cookie jar; httpx's exceptions and responses as from ``send``.
                        http_response = await direct.handle_async_request(request)
                    else:
                        http_response = await http.send(request, stream=True)
            except TimeoutError:
                raise state.stall(stall_cls, clock.monotonic()) from None
            except httpx.HTTPError as exc:
                raise _translate_transport(exc, during="sending the request") from exc
            now = clock.monotonic()
            state.on_headers(now, http_response.headers)
            if writer is not None:
                writer.response(now, http_response.status_code, http_response.headers.multi_items())
            if not 200 <= http_response.status_code < 300:
                await self._raise_status(dialect, http_response, state, writer, clock)
            if _json_for_stream(dialect, http_response):
                await self._raise_json_for_stream(http_response, state, writer, clock)
        except CallError as err:
            state.finish(clock.monotonic())
            if writer is not None:
                writer.end(clock.monotonic(), error=err, eof=not isinstance(err, StallError))
                writer.close()
            raise _contextualise(err, target, state) from err.__cause__
        except BaseException:
            if writer is not None:
                writer.close()
            raise
        return ResponseStream(
            target=target, state=state, http_response=http_response, capture=writer, clock=clock
        )

    @staticmethod
    async def _raise_json_for_stream(
        http_response: httpx.Response,
        state: CallState,
        writer: CaptureWriter | None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        """A 2xx JSON body where an event stream was expected (a proxy or a server that
        ignored ``stream``): a protocol error that names it, with the body kept (bounded) in
        the message and the capture, instead of "0 data events" (issue 9)."""
        body = bytearray()
        limit, _ = state.next_limit()
        try:
            async with clock.timeout_at(limit):
                async for chunk in http_response.aiter_bytes():
                    if writer is not None:
                        writer.chunk(clock.monotonic(), chunk)
                    body += chunk
                    if len(body) > MAX_ERROR_BODY:
                        break
        except (TimeoutError, httpx.HTTPError):
            pass  # the content type already says what went wrong
        finally:
            await http_response.aclose()
        text = bytes(body[:MAX_ERROR_BODY]).decode("utf-8", "replace")
        raise ProtocolError(f"a JSON body where an event stream was expected: {text}")

    @staticmethod
    async def _raise_status(
        dialect: Dialect,
        http_response: httpx.Response,
        state: CallState,
        writer: CaptureWriter | None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        body = bytearray()
        limit, stall_cls = state.next_limit()
        try:
            async with clock.timeout_at(limit):
                async for chunk in http_response.aiter_bytes():
                    if writer is not None:
                        writer.chunk(clock.monotonic(), chunk)
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
