"""The client's real-network HTTP/1.1: an asyncio ``Protocol`` per connection, ``httptools``
parsing the response, connections on an O(1) free list per origin.

A short call's CPU went mostly to layers, not work: per body chunk, httpx's ``aiter_bytes`` ->
``aiter_raw`` -> its transport's stream -> httpcore's connection stream -> h11's
``next_event`` -> the network stream -> anyio's ``receive`` (with a checkpoint, one more loop
turn), each an async generator or coroutine; per request, ``AsyncClient.send``'s auth,
redirect and timer machinery and httpcore's state machine. Here a chunk is parsed where it
arrives (``data_received`` feeds llhttp through httptools; its ``on_body`` appends to a list
and wakes the one waiting reader) and the reader takes it with one ``await`` at most.

:class:`H1Transport` is an :class:`httpx.AsyncBaseTransport`, so the seam stays: it answers
``httpx.AsyncClient.send`` like any transport (tests inject ``MockTransport``/``ASGITransport``
instead and never come here), and :class:`~callproof.client.Client` calls
:meth:`H1Transport.handle_async_request` directly with its prebuilt request. Responses are
``httpx.Response`` objects with a :class:`Body` stream; :class:`Body` also offers the reader's
fast path (:meth:`Body.take`, :meth:`Body.wait`) the client uses when the body is not
content-encoded (an encoded one goes through httpx's decoders).

What is kept from httpx/httpcore: their exception names (``ConnectError``,
``ConnectTimeout``, ``RemoteProtocolError`` for a peer that closed early or broke the
protocol, ``ReadError`` for a reset), so the client classifies failures exactly as before;
h11 validates and writes the request head (no hand-written HTTP); redirects are never followed
(nothing here follows one); TLS through the loop's own ``ssl`` support. A connection that was
not left idle at a message boundary is closed, never reused; a cancelled request closes its
connection; a cancelled connect is closed by asyncio itself.

Measured (bench/client.py ``--per-call-only``, the seed's SigV4 tool-result call on the emulator,
process CPU, boto3 in the same run, 2 shared cores at load 7-14): without the admission gate,
1.37-1.54x boto3 over httpx/httpcore, 0.77-0.91x over this module; the OpenAI call 1.26-1.35x
the openai SDK before, 0.84-0.98x after. CPU per decoded event of a 20,000-event stream 0.42x
boto3 before, 0.37-0.39x after. bench/probe.py ``--quick``, client CPU per attempt over
httpcore's connections on the same free list, then here (load 8-14): 1.30 -> 0.56-0.79 ms at
1,000 concurrent, 1.15 -> 0.49 ms at 5,000 (which completes, 476 attempts/s against 319).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import typing
from collections import deque

import h11
import httptools
import httpx

__all__ = ["HIGH_WATER", "TAKE_MAX", "Body", "H1Transport"]

#: Unread body bytes past which the socket stops being read until the reader catches up.
HIGH_WATER = 256 * 1024
#: The most one :meth:`Body.take` returns: what the decoder turns into events at once (with
#: httpcore, its 64 KiB read size), so a fast sender does not pile up events in memory.
TAKE_MAX = 64 * 1024

_Key = tuple[str, str, int]
_NO_BODY_STATUS = (204, 304)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: the parser's callbacks fill the current response."""

    def __init__(self, key: _Key) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.idle_since = 0.0
        #: A request is out on it (bytes arriving otherwise make it unusable).
        self.in_flight = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.surplus = False
        self.framed = False  # content-length or chunked: EOF before the end is an error
        self.error: httpx.HTTPError | None = None
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self._informational = False

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.in_flight or self.complete:  # nothing more was asked: never reused
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP response: {exc}"))

    def eof_received(self) -> bool:
        self._ended(None)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # a second answer in the bytes of the first: never reused
            self.surplus = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._informational or self.surplus:
            return
        self.headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length" or (
            lower == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self.framed = True

    def on_headers_complete(self) -> None:
        if self.surplus:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue and friends: the real answer follows
            self._informational = True
            self.headers = []
            return
        self.status = status
        if status in _NO_BODY_STATUS:
            self.framed = True
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.surplus:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.surplus:
            return
        if self._informational:
            self._informational = False
            return
        self.complete = True
        # llhttp's flags are only good inside the callback (it resets them right after).
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    # -- state ------------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: httpx.HTTPError) -> None:
        if self.error is None and not self.complete:
            self.error = error
        self.close()
        self._wake()

    def _ended(self, exc: Exception | None) -> None:
        """The peer closed (``exc`` None) or the connection broke."""
        was_lost, self.lost = self.lost, True
        if was_lost or self.complete or self.error is not None:
            self._wake()
            return
        if exc is not None:
            self.error = httpx.ReadError(str(exc) or type(exc).__name__)
        elif not self.head_done:
            self.error = httpx.RemoteProtocolError(
                "Server disconnected without sending a response."
            )
        elif self.framed:
            self.error = httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            )
        else:
            self.complete = True  # a body delimited by the connection's end
        self._wake()

    def reusable(self) -> bool:
        """Idle at a message boundary and willing to carry another request."""
        return (
            self.complete
            and not self.surplus
            and self.error is None
            and not self.lost
            and self.transport is not None
            and not self.transport.is_closing()
            and self.keep_alive
        )

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()  # no lingering close: a half-read socket is dropped now

    # -- the reader -------------------------------------------------------------------------

    def take(self) -> bytes | None:
        """Buffered body bytes; ``b""`` at the body's end; None when nothing is there yet.
        Raises the connection's error once the bytes before it are taken."""
        chunks = self.chunks
        if chunks:
            first = chunks[0]
            if len(first) > TAKE_MAX:
                data = first[:TAKE_MAX]
                chunks[0] = first[TAKE_MAX:]
            elif len(chunks) == 1:
                data = first
                chunks.clear()
            else:
                size, count = 0, 0
                for chunk in chunks:
                    if size + len(chunk) > TAKE_MAX:
                        break
                    size += len(chunk)
                    count += 1
                data = b"".join(chunks[:count])
                del chunks[:count]
            self.buffered -= len(data)
            if self.paused and self.buffered <= HIGH_WATER and self.transport is not None:
                self.paused = False
                self.transport.resume_reading()
            return data
        if self.complete:
            return b""
        if self.error is not None:
            raise self.error
        return None

    async def wait(self, delay: float | None = None) -> None:
        """Until the parser has something for the reader; ``delay`` seconds at most (then
        :class:`TimeoutError`)."""
        if self.chunks or self.complete or self.error is not None:
            return
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        handle = None if delay is None else loop.call_later(delay, _expire, waiter)
        try:
            await waiter
        finally:
            self.waiter = None
            if handle is not None:
                handle.cancel()

    async def wait_head(self) -> None:
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self.wait()


class Body(httpx.AsyncByteStream):
    """A response body read straight off its connection; closing it gives the connection back
    to the free list when the response was read to its end, else closes it."""

    def __init__(self, connection: _Connection, transport: H1Transport) -> None:
        self._connection: _Connection | None = connection
        self._transport = transport

    def take(self) -> bytes | None:
        """Buffered bytes, ``b""`` at the end, None when the reader must :meth:`wait`."""
        connection = self._connection
        if connection is None:
            raise httpx.StreamClosed()
        return connection.take()

    async def wait(self, delay: float | None = None) -> None:
        """Until :meth:`take` has an answer; ``delay`` seconds at most (TimeoutError)."""
        connection = self._connection
        if connection is None:
            raise httpx.StreamClosed()
        await connection.wait(delay)

    async def __aiter__(self) -> typing.AsyncIterator[bytes]:
        while True:
            chunk = self.take()
            if chunk is None:
                await self.wait()
                continue
            if not chunk:
                return
            yield chunk

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._transport._checkin(connection)


class H1Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio protocols, an O(1) LIFO free list of idle connections per origin
    (the free-list design of :mod:`callproof.transport`, without httpcore underneath)."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        max_idle: int = 4096,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self._ssl = (
            verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
        )
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._idle: dict[_Key, deque[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._shut = False

    @property
    def in_use(self) -> int:
        """Connections serving a request now."""
        return len(self._busy)

    @property
    def idle(self) -> int:
        """Idle keep-alive connections."""
        return sum(len(queue) for queue in self._idle.values())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme or '?'}://'."
            )
        if self._shut:
            raise httpx.ConnectError("the HTTP client is closed")
        host = url.host
        port = url.port or (443 if scheme == "https" else 80)
        key: _Key = (scheme, host, port)
        try:
            head = h11.Connection(h11.CLIENT).send(
                h11.Request(method=request.method, target=url.raw_path, headers=request.headers.raw)
            )
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc)) from exc
        assert head is not None
        body = await request.aread()  # the bytes it was built with (a stream is read once)
        connection = self._checkout(key)
        if connection is None:
            timeout = request.extensions.get("timeout", {}).get("connect")
            connection = await self._connect(key, timeout)
        self._busy.add(connection)
        connection.in_flight = True
        try:
            assert connection.transport is not None
            connection.transport.write(head + body if body else head)
            await connection.wait_head()
        except BaseException:
            self._busy.discard(connection)
            connection.close()
            raise
        return httpx.Response(
            connection.status,
            headers=connection.headers,
            stream=Body(connection, self),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    def _checkout(self, key: _Key) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.reusable() and connection.idle_since + self._expiry >= now:
                connection._reset()
                return connection
            connection.close()
        return None

    async def _connect(self, key: _Key, timeout: float | None) -> _Connection:  # noqa: ASYNC109
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls = self._ssl if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(key),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} in {timeout} s") from exc
        except OSError as exc:  # ssl.SSLError included: its text names the TLS failure
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return connection

    def _checkin(self, connection: _Connection) -> None:
        self._busy.discard(connection)
        connection.in_flight = False
        if self._shut or not connection.reusable():
            connection.close()
            return
        idle = self._idle.get(connection.key)
        if idle is None:
            idle = self._idle[connection.key] = deque()
        now = time.monotonic()
        connection.idle_since = now
        idle.append(connection)
        while idle and (len(idle) > self._max_idle or idle[0].idle_since + self._expiry < now):
            idle.popleft().close()

    async def aclose(self) -> None:
        self._shut = True
        for queue in self._idle.values():
            for connection in queue:
                connection.close()
        self._idle.clear()
        for connection in self._busy:
            connection.close()
        self._busy.clear()

    def __repr__(self) -> str:
        return f"<H1Transport [in use: {self.in_use}, idle: {self.idle}]>"
