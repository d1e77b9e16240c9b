"""The client's HTTP transport: httpx's transport over a free list of httpcore connections.

httpx's default transport sends every request through ``httpcore.AsyncConnectionPool``, whose
``_assign_requests_to_connections`` runs on every request start and every response close and
scans every connection for each idle one and for each queued request: O(connections x requests)
per pool event. At 1,000 concurrent streams that scan was 39% of the client's CPU, at 1,500
99%; past ``max_connections`` requests queue behind it, and the router at 40% hangs livelocked
(every clock hundreds of seconds late, a healthy fallback's breaker opened).

:class:`FreeListTransport` keeps httpx (its requests, responses, exceptions and the
``MockTransport``/``ASGITransport`` seam tests use) and httpcore's
:class:`~httpcore.AsyncHTTPConnection` (h11, connect, TLS, keep-alive state), and replaces only
the pool with a last-in-first-out list of idle connections per origin:

* taking a connection pops the most recently returned one (checked with its own
  ``is_available``/``has_expired``, one connection, not all) or opens a new one: O(1);
* closing a response pushes the connection back when it is idle, else drops it: O(1);
* nothing queues: a request never waits for another request's connection, so no clock ever
  waits on the pool. Concurrency is bounded by the caller (the probe's ``--concurrency``, the
  router's hedges), and the file-descriptor limit by :func:`raise_fd_limit`;
* idle connections past ``max_idle`` per origin, or idle longer than ``keepalive_expiry``, are
  closed from the cold end of the list, O(1) amortised per return.

The probe's workers are fixed and sequential, so in a probe each worker in effect keeps its own
connection: the "connection per worker" design, without a pool object shared by all of them.

Why this design: bench/probe.py ``--designs`` measured it against httpx over aiohttp's
connector (an adapter behind the same httpx seam, in the bench) and against the httpcore pool it
replaces, the probe's tool-result attempts on the emulator in another process, runs alternated,
on a 2-core machine shared with other work (load 5-9), client CPU by ``time.process_time``.
Two runs, ratios within each:

* against httpcore's pool: 0.26-0.41x the CPU per attempt and 2.3-4.2x the attempts/s at
  1,000 concurrent; at 5,000 the pool did not finish 10,000 attempts in 100 s, the free list
  did (all passed with the client's admission gate; 9,991 of 10,000 in a run before it, the
  rest failing to connect in the 5,000-connection burst);
* against aiohttp: 1.19-1.29x the attempts/s at 1,000 and 5,000 concurrent, at 1.09-1.24x the
  CPU per attempt (0.90-0.99x at concurrency 1).

The free list is the faster of the two in attempts/s, keeps every httpx/httpcore error mapping
and stream semantic the client's tests pin, and needs no new dependency; aiohttp's C parser is
the cheaper per attempt at high concurrency, which is the design to revisit if CPU rather than
throughput becomes the limit.

:class:`CoalescingBackend` (httpcore's anyio backend, its streams wrapped) holds writes until the
response is read, so h11's separate head and body writes leave in one ``send``.

Since issue 14's short-call work, :func:`make_transport` returns :class:`callproof.h1.H1Transport`:
the same free list over asyncio protocols with httptools parsing, without httpcore's and httpx's
layers per request and per chunk (its docstring has the figures). :class:`FreeListTransport`
stays as the httpcore-based design for comparison (bench/probe.py) and for callers that want it.
"""

from __future__ import annotations

import asyncio
import resource
import ssl
import time
import typing
from collections import deque

import httpcore
import httpx

__all__ = [
    "COALESCE_MAX_BYTES",
    "DEFAULT_KEEPALIVE_EXPIRY_S",
    "DEFAULT_MAX_IDLE",
    "CoalescingBackend",
    "CoalescingStream",
    "FreeListPool",
    "FreeListTransport",
    "make_transport",
    "raise_fd_limit",
]

#: Idle keep-alive connections kept per origin (more are closed when they come back).
DEFAULT_MAX_IDLE = 4096
#: An idle connection older than this is closed rather than reused (httpx's default is 5 s).
DEFAULT_KEEPALIVE_EXPIRY_S = 5.0

_Key = tuple[bytes, bytes, int | None]


class FreeListPool(httpcore.AsyncConnectionPool):
    """An httpcore pool whose every operation is O(1): a LIFO free list of idle HTTP/1.1
    connections per origin, no request queue, no limit on connections in use.

    It subclasses :class:`httpcore.AsyncConnectionPool` for its connection factory
    (``create_connection``: TLS context, socket options, network backend) and its interface;
    ``handle_async_request`` and ``aclose`` are its own.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_idle: int = DEFAULT_MAX_IDLE,
        keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY_S,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        super().__init__(
            ssl_context=ssl_context,
            max_connections=None,
            max_keepalive_connections=max_idle,
            keepalive_expiry=keepalive_expiry,
            network_backend=network_backend,
        )
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._idle: dict[_Key, deque[tuple[float, httpcore.AsyncConnectionInterface]]] = {}
        self._busy: set[httpcore.AsyncConnectionInterface] = set()
        self._shut = False

    @property
    def connections(self) -> list[httpcore.AsyncConnectionInterface]:
        """Every open connection: in use, then idle."""
        idle = [conn for queue in self._idle.values() for _, conn in queue]
        return [*self._busy, *idle]

    @property
    def in_use(self) -> int:
        """Connections serving a request now."""
        return len(self._busy)

    @property
    def idle(self) -> int:
        """Idle keep-alive connections."""
        return sum(len(queue) for queue in self._idle.values())

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        scheme = request.url.scheme
        if scheme not in (b"http", b"https"):
            raise httpcore.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme.decode() or '?'}://'."
            )
        if self._shut:
            raise httpcore.ConnectError("the HTTP client is closed")
        origin = request.url.origin
        key: _Key = (origin.scheme, origin.host, origin.port)
        while True:
            connection = await self._checkout(key, origin)
            self._busy.add(connection)
            try:
                response = await connection.handle_async_request(request)
            except httpcore.ConnectionNotAvailable:
                # It was idle when taken, then was not (a race with its own close): a new one.
                self._busy.discard(connection)
                continue
            except BaseException:
                # httpcore closes a connection it broke; one left unused (a cancellation at
                # httpcore's state lock, before the request began) goes back or is closed,
                # never dropped with its socket open.
                self._busy.discard(connection)
                if connection.is_idle() and not self._shut:
                    for stale in self._push_idle(key, connection):
                        await stale.aclose()
                elif not connection.is_closed():
                    await connection.aclose()  # aborts the socket before its first suspension
                raise
            break
        return httpcore.Response(
            status=response.status,
            headers=response.headers,
            content=_ReturningStream(response.stream, self, key, connection),
            extensions=response.extensions,
        )

    async def _checkout(
        self, key: _Key, origin: httpcore.Origin
    ) -> httpcore.AsyncConnectionInterface:
        idle = self._idle.get(key)
        while idle:
            _, connection = idle.pop()
            if connection.is_available() and not connection.has_expired():
                return connection
            await connection.aclose()
        return self.create_connection(origin)

    async def _checkin(self, key: _Key, connection: httpcore.AsyncConnectionInterface) -> None:
        self._busy.discard(connection)
        if self._shut or not connection.is_idle():
            if not connection.is_closed():
                await connection.aclose()
            return
        for stale in self._push_idle(key, connection):
            await stale.aclose()

    def _push_idle(
        self, key: _Key, connection: httpcore.AsyncConnectionInterface
    ) -> list[httpcore.AsyncConnectionInterface]:
        """Put an idle connection on the free list; returns those trimmed from the cold end
        (over the cap, or idle past the keep-alive expiry), for the caller to close."""
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = deque()
        now = time.monotonic()
        idle.append((now, connection))
        stale = []
        while idle and (len(idle) > self._max_idle or idle[0][0] + self._expiry < now):
            stale.append(idle.popleft()[1])
        return stale

    async def aclose(self) -> None:
        self._shut = True
        closing = [*self._busy, *(conn for queue in self._idle.values() for _, conn in queue)]
        self._busy.clear()
        self._idle.clear()
        for connection in closing:
            await connection.aclose()

    def __repr__(self) -> str:
        return f"<FreeListPool [in use: {self.in_use}, idle: {self.idle}]>"


class _ReturningStream:
    """A response body that gives its connection back to the free list when closed. Iterating
    it is iterating httpcore's own body stream: no layer is added per chunk."""

    def __init__(
        self,
        stream: typing.AsyncIterable[bytes] | typing.Iterable[bytes],
        pool: FreeListPool,
        key: _Key,
        connection: httpcore.AsyncConnectionInterface,
    ) -> None:
        assert isinstance(stream, typing.AsyncIterable)
        self._stream = stream
        self._pool = pool
        self._key = key
        self._connection = connection
        self._closed = False

    def __aiter__(self) -> typing.AsyncIterator[bytes]:
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._stream, "aclose", None)
            if close is not None:
                await close()
        finally:
            await self._pool._checkin(self._key, self._connection)


#: Writes held back past this many bytes are sent at once (a large body is not buffered whole).
COALESCE_MAX_BYTES = 64 * 1024


class CoalescingStream(httpcore.AsyncNetworkStream):
    """A network stream whose writes wait for the next read: h11 writes a request's head and
    its body separately, and each write is a ``send`` syscall (on loopback, the receiver's
    TCP processing runs inside it); held until the response is read, they leave as one."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._pending: list[bytes] = []
        self._size = 0

    async def _flush(self, timeout: float | None) -> None:  # noqa: ASYNC109 - httpcore's
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending.clear()
            self._size = 0
            await self._inner.write(data, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        self._pending.append(buffer)
        self._size += len(buffer)
        if self._size >= COALESCE_MAX_BYTES:
            await self._flush(timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        await self._flush(timeout)
        return await self._inner.read(max_bytes, timeout)

    async def aclose(self) -> None:
        self._pending.clear()
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        await self._flush(timeout)
        return CoalescingStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


_CLOSING: set[asyncio.Task[None]] = set()


def _close_when_connected(connect: asyncio.Future[httpcore.AsyncNetworkStream]) -> None:
    """Close a stream whose opener was cancelled before it could use it."""
    if connect.cancelled() or connect.exception() is not None:
        return
    task = asyncio.ensure_future(connect.result().aclose())
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


class CoalescingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's asyncio (anyio) backend, its streams wrapped in :class:`CoalescingStream`."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: typing.Any = None,
    ) -> httpcore.AsyncNetworkStream:
        # anyio's connect_tcp leaks the socket it connected when the caller is cancelled at
        # that moment (its happy-eyeballs task group exits with the cancellation, and the
        # connected stream is never closed): a hedge loser cancelled while connecting. The
        # connect runs in its own task, shielded; a cancelled caller closes what it opens.
        connect = asyncio.ensure_future(
            self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        )
        try:
            stream = await asyncio.shield(connect)
        except asyncio.CancelledError:
            connect.add_done_callback(_close_when_connected)
            raise
        return CoalescingStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: typing.Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return CoalescingStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class FreeListTransport(httpx.AsyncHTTPTransport):
    """httpx's own :class:`~httpx.AsyncHTTPTransport` (request conversion, exception mapping,
    response streams) over a :class:`FreeListPool` instead of httpcore's pool."""

    def __init__(  # the parent's __init__ only builds the pool this replaces
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        max_idle: int = DEFAULT_MAX_IDLE,
        keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY_S,
    ) -> None:
        context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
        self._pool = FreeListPool(
            ssl_context=context,
            max_idle=max_idle,
            keepalive_expiry=keepalive_expiry,
            network_backend=CoalescingBackend(),
        )

    @property
    def pool(self) -> FreeListPool:
        """The free list (its ``in_use`` and ``idle`` counts)."""
        assert isinstance(self._pool, FreeListPool)
        return self._pool


def make_transport(verify: ssl.SSLContext | bool = True) -> httpx.AsyncBaseTransport:
    """The transport :class:`~callproof.client.Client` sends real requests through: the same
    free-list design without httpcore underneath (:class:`callproof.h1.H1Transport`, fewer
    layers per request and per body chunk). :class:`FreeListTransport`, the same list over
    httpcore's connections, is the design it replaced; nothing in callproof sends through it
    any more."""
    from callproof.h1 import H1Transport  # h1 imports nothing of this module

    return H1Transport(verify=verify)


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft open-file limit towards ``wanted`` (never above the hard
    limit, never lowered); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target
