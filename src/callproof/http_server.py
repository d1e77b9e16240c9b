"""Serve an ASGI app with hypercorn on a background thread: HTTP/1.1, h2c and TLS with ALPN h2.

One port speaks both protocols: cleartext connections start as HTTP/1.1 and switch to HTTP/2
when the client sends the HTTP/2 preface with prior knowledge (the AWS SDK for JavaScript v3
does this on ``http://`` URLs); under TLS, ALPN picks ``h2`` or ``http/1.1``. hypercorn (with
h11 and h2) does all the framing; this module only binds, accepts and stops. With a
:class:`Front` (``front=``, the emulator's fast HTTP/1.1 front), cleartext connections start on
the front's own asyncio protocol, and a connection it does not serve is handed to hypercorn with
the bytes already read (``_Hooks.hand_over``), so hypercorn answers it as it would have. A front
may serve h2c itself (the emulator's :mod:`~callproof.emulator.h2front`): ``_Hooks.adopt``
registers its protocol in the connection cap, and ``_Hooks.app`` is the app for the streams it
does not answer from plans.

Public API:

* :class:`ServerLimits` - header size, header/idle timeout, connection cap (the hardening the
  robustness issue asks for: bounded header memory, idle sockets closed, no EMFILE flood).
* :class:`HTTPServer` ``(app, *, host, port, tls, limits, log_level, on_stop, front)`` -
  ``start()``, ``stop()``, ``wait()``, context manager; ``url``, ``port``, ``ca_path`` (the
  throwaway CA under ``tls=True``).
* :data:`CONNECTION_EXTENSION` - the ASGI scope extension (``scope["extensions"][...]``) holding
  a :class:`Connection` for the request, so an app can cut or reset what it is sending:
  ``await conn.reset(scope)`` (HTTP/1.1: a real TCP reset, SO_LINGER 0; HTTP/2: RST_STREAM on
  this stream), ``await conn.reset(scope, whole=True)`` (a TCP reset even under HTTP/2),
  ``await conn.cut(scope)`` (HTTP/1.1: close the connection mid-body, a FIN; HTTP/2:
  RST_STREAM), ``conn.http_version``.

The connection handle reaches into hypercorn's protocol objects (``TCPServer.protocol``), which
is why hypercorn's version is pinned in uv.lock; tests over both protocols hold it.

One fix to hypercorn's HTTP/2 (applied when this module is imported): a client's GOAWAY with
NO_ERROR no longer closes the connection while streams are open. RFC 9113 §6.8 lets the streams
the GOAWAY covers finish; the AWS SDK for JavaScript sends GOAWAY right after the response
headers of every event stream (its "isolated session", @smithy/node-http-handler 4.x), so
hypercorn as shipped cut every ConverseStream whose first event was not already sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import resource
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any

import h2.connection
import h2.errors
import h2.events
import h11
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H11Protocol

__all__ = ["CONNECTION_EXTENSION", "Connection", "Front", "HTTPServer", "ServerLimits"]

#: The ASGI scope extension that carries the request's :class:`Connection`.
CONNECTION_EXTENSION = "callproof.connection"

log = logging.getLogger("callproof.http")


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Bounds on what one client can hold.

    ``max_header_bytes``: the request line plus headers (HTTP/1.1, h11's incomplete-event
    limit) and the header list (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE); a client past it gets
    431/400 and the connection closes, so header memory is bounded per connection.
    ``header_timeout_s``: seconds a connection may stay open without a complete request (a
    slow-headers client is dropped), which is also the keep-alive idle timeout between requests.
    ``max_connections``: open connections at most; by default the process's file limit less a
    reserve, so accept() never runs out of descriptors because of idle clients. Connections
    past it are closed at once (one warning per ``warn_every_s``, never a traceback per accept).
    """

    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 30.0
    max_connections: int | None = None
    h2_max_concurrent_streams: int = 1000
    warn_every_s: float = 10.0

    def connection_cap(self) -> int:
        if self.max_connections is not None:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return 65536
        return max(16, soft - 64)


class _Throttled:
    """Logs one line per ``every_s`` for a recurring condition (counts the rest)."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._last = -1e9
        self._suppressed = 0

    def warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more since the last warning)" if self._suppressed else ""
        self._last, self._suppressed = now, 0
        log.warning("%s%s", message, more)


class Connection:
    """One accepted TCP connection, as the app sees it through :data:`CONNECTION_EXTENSION`."""

    def __init__(self, server: TCPServer, writer: asyncio.StreamWriter) -> None:
        self._server = server
        self._writer = writer

    @property
    def _h2(self) -> H2Protocol | None:
        wrapper = getattr(self._server, "protocol", None)
        inner = getattr(wrapper, "protocol", None)
        return inner if isinstance(inner, H2Protocol) else None

    @property
    def idle(self) -> bool:
        """No request in flight: between keep-alive requests, or still waiting for headers."""
        wrapper = getattr(self._server, "protocol", None)
        inner = getattr(wrapper, "protocol", None)
        if isinstance(inner, H2Protocol):
            return bool(inner.idle)
        return getattr(inner, "stream", None) is None

    def close(self) -> None:
        """Close the connection now (an idle one evicted to admit a new client)."""
        self._writer.transport.abort()

    @property
    def http_version(self) -> str:
        """``"2"`` once the connection speaks HTTP/2, else ``"1.1"``."""
        return "2" if self._h2 is not None else "1.1"

    def _stream_id(self, protocol: H2Protocol, scope: dict[str, Any]) -> int | None:
        for stream_id, stream in protocol.streams.items():
            if getattr(stream, "scope", None) is scope:
                return stream_id
        return None

    async def _flushed(self) -> None:
        """Wait (2 s at most) until what the app sent has left the process, so a reset comes
        after it; the transport has no event for an empty write buffer, hence the polling."""
        transport = self._writer.transport
        deadline = time.monotonic() + 2.0
        while transport.get_write_buffer_size() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    async def _reset_stream(self, protocol: H2Protocol, scope: dict[str, Any]) -> bool:
        stream_id = self._stream_id(protocol, scope)
        if stream_id is None:
            return False
        buffer = protocol.stream_buffers.get(stream_id)
        if buffer is not None:
            # what the app already sent goes out first, as a real server's DATA frames would
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await buffer.drain()
        with contextlib.suppress(Exception):  # the stream may be closed already
            protocol.connection.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            await protocol._flush()  # hypercorn's own flush of h2 frames
        buffer = protocol.stream_buffers.pop(stream_id, None)
        if buffer is not None:
            await buffer.close()
            with contextlib.suppress(Exception):
                protocol.priority.remove_stream(stream_id)
        return True

    def _abort(self) -> None:
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                # linger on with a zero timeout: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()

    async def reset(self, scope: dict[str, Any], *, whole: bool = False) -> None:
        """A reset: RST_STREAM under HTTP/2 (unless ``whole``), else a TCP RST."""
        protocol = self._h2
        if protocol is not None and not whole and await self._reset_stream(protocol, scope):
            return
        await self._flushed()
        self._abort()

    async def cut(self, scope: dict[str, Any]) -> None:
        """End the answer mid-body: RST_STREAM under HTTP/2, a FIN under HTTP/1.1."""
        protocol = self._h2
        if protocol is not None and await self._reset_stream(protocol, scope):
            return
        await self._flushed()
        self._writer.close()


def _keep_streams_after_goaway() -> None:
    """Patch :class:`H2Protocol` once: a peer's graceful GOAWAY lets open streams finish."""
    if getattr(H2Protocol, "_callproof_goaway_fix", False):
        return
    original = H2Protocol._handle_events

    async def handle_events(self: H2Protocol, events: list[h2.events.Event]) -> None:
        graceful = [
            e
            for e in events
            if isinstance(e, h2.events.ConnectionTerminated)
            and e.error_code == h2.errors.ErrorCodes.NO_ERROR
            and self.streams
        ]
        if graceful:
            # h2 closes its state machine on any GOAWAY and would refuse every later frame;
            # reopen it so the open streams can finish (the client opens no new ones, and
            # closes the connection once they have ended)
            machine = self.connection.state_machine
            if machine.state == h2.connection.ConnectionState.CLOSED:
                machine.state = h2.connection.ConnectionState.SERVER_OPEN
        await original(self, [e for e in events if e not in graceful])

    H2Protocol._handle_events = handle_events  # type: ignore[method-assign]
    H2Protocol._callproof_goaway_fix = True  # type: ignore[attr-defined]


_keep_streams_after_goaway()


def _send_reason_phrases() -> None:
    """Patch :class:`H11Protocol` once: a status line carries its reason phrase.

    hypercorn writes ``HTTP/1.1 200 `` (RFC 9112 lets the phrase be empty); AWS and OpenAI send
    ``HTTP/1.1 200 OK``, and some clients count a missing phrase as a failed response (h2load
    ``--h1`` does), so the emulator and the gateway send the standard phrase as the services do.
    """
    if getattr(H11Protocol, "_callproof_reason_fix", False):
        return
    original = H11Protocol._send_h11_event

    async def send_h11_event(self: H11Protocol, event: Any) -> None:
        if isinstance(event, h11.Response | h11.InformationalResponse) and not event.reason:
            with contextlib.suppress(ValueError):
                event = type(event)(
                    status_code=event.status_code,
                    headers=event.headers.raw_items(),
                    reason=HTTPStatus(event.status_code).phrase.encode("ascii"),
                )
        await original(self, event)

    H11Protocol._send_h11_event = send_h11_event  # type: ignore[method-assign]
    H11Protocol._callproof_reason_fix = True  # type: ignore[attr-defined]


_send_reason_phrases()


class _App(ASGIWrapper):
    """hypercorn's ASGI wrapper, adding each request's :class:`Connection` to its scope."""

    def __init__(self, app: Any, connections: dict[tuple[str, int], Connection]) -> None:
        super().__init__(app)
        self.connections = connections

    async def __call__(
        self, scope: Any, receive: Any, send: Any, sync_spawn: Callable[..., Any], call_soon: Any
    ) -> None:
        client = scope.get("client")
        connection = self.connections.get(tuple(client)) if client else None
        if connection is not None:
            scope.setdefault("extensions", {})[CONNECTION_EXTENSION] = connection
        await self.app(scope, receive, send)


class Front(typing.Protocol):
    """A front that serves some cleartext HTTP/1.1 requests before hypercorn sees them (the
    emulator's :class:`~callproof.emulator.fastfront.FastFront`): it makes one asyncio protocol
    per connection and hands a connection it does not serve to :meth:`_Hooks.hand_over`."""

    def factory(self, hooks: Any) -> Callable[[], asyncio.Protocol]: ...

    def end_hangs(self) -> None: ...

    @property
    def busy(self) -> int: ...

    def abort_all(self) -> None: ...


class _Hooks:
    """What a :class:`Front` may ask of its server: the limits, the connection cap, and handing
    a connection (with the bytes read so far) to hypercorn."""

    def __init__(
        self,
        limits: ServerLimits,
        admit: Callable[[tuple[str, int], Any], bool],
        connections: dict[tuple[str, int], Any],
        run_hypercorn: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
        app: Any = None,
    ) -> None:
        self.max_header_bytes = limits.max_header_bytes
        self.header_timeout_s = limits.header_timeout_s
        self.h2_max_concurrent_streams = limits.h2_max_concurrent_streams
        #: the ASGI app (a front that serves HTTP/2 itself runs it for the streams it does not)
        self.app = app
        self.admit = admit
        self._connections = connections
        self._run = run_hypercorn

    def adopt(self, key: tuple[str, int], connection: Any) -> None:
        """``connection`` now holds the admitted connection under ``key`` (the front's own
        protocol that takes it over, as hypercorn's ``Connection`` does on a hand-over)."""
        self._connections[key] = connection

    def forget(self, key: tuple[str, int], connection: Any) -> None:
        if self._connections.get(key) is connection:
            del self._connections[key]

    def hand_over(self, transport: asyncio.Transport, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**16, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, self._run, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)  # makes the writer and starts hypercorn's task
        if data:
            reader.feed_data(data)
        if not transport.is_reading():
            transport.resume_reading()


class HTTPServer:
    """An ASGI app on a real socket, served by hypercorn; see the module docstring."""

    #: Bind with ``SO_REUSEPORT``, so other processes may serve the same port.
    reuse_port = False

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        limits: ServerLimits | None = None,
        log_level: str = "warning",
        on_stop: Callable[[], None] | None = None,
        name: str = "callproof-http",
        front: Front | None = None,
    ) -> None:
        self.app = app
        self.front = front
        self.host = host
        self.port = port
        self.tls = tls
        self.limits = limits or ServerLimits()
        self.log_level = log_level
        self.on_stop = on_stop
        self.name = name
        self.ca_path: Path | None = None
        self._tmp: Path | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.connections: dict[tuple[str, int], Connection] = {}

    @property
    def url(self) -> str:
        """``http(s)://host:port`` (IPv6 hosts in brackets)."""
        scheme = "https" if self.tls else "http"
        host = self.host
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    def _ssl_context(self) -> ssl.SSLContext:
        import trustme

        self._tmp = Path(tempfile.mkdtemp(prefix="callproof-tls-"))
        ca = trustme.CA()
        names = list(dict.fromkeys([self.host, "127.0.0.1", "localhost", "::1"]))
        cert = ca.issue_cert(*names)
        self.ca_path = self._tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        context.set_alpn_protocols(["h2", "http/1.1"])
        return context

    def _config(self) -> Config:
        limits = self.limits
        config = Config()
        config.accesslog = None
        config.include_server_header = False  # the real services do not name their server
        error_log = logging.getLogger("callproof.http.hypercorn")
        error_log.setLevel(self.log_level.upper())
        config.errorlog = error_log
        config.h11_max_incomplete_size = limits.max_header_bytes
        config.h2_max_header_list_size = limits.max_header_bytes
        config.h2_max_concurrent_streams = limits.h2_max_concurrent_streams
        config.keep_alive_timeout = limits.header_timeout_s
        config.keep_alive_max_requests = 2**62
        config.ssl_handshake_timeout = limits.header_timeout_s
        config.graceful_timeout = 1.0
        return config

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto must be TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP, and without it every keep-alive request waits ~40 ms (delayed ACK)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.reuse_port:  # several processes on one port (callproof serve --workers)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.listen(2048)
        sock.setblocking(False)  # noqa: FBT003
        self.port = sock.getsockname()[1]
        return sock

    async def _serve(self, sock: socket.socket, context: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stopping = asyncio.Event()
        config = self._config()
        worker = WorkerContext(None)
        app = _App(self.app, self.connections)
        cap = self.limits.connection_cap()
        over_cap = _Throttled(self.limits.warn_every_s)
        out_of_fds = _Throttled(self.limits.warn_every_s)
        tasks: set[asyncio.Task[None]] = set()

        def exception_handler(loop: asyncio.AbstractEventLoop, ctx: dict[str, Any]) -> None:
            exc = ctx.get("exception")
            if isinstance(exc, OSError) and "out of system resource" in ctx.get("message", ""):
                # asyncio retries accept() after a second; say so once in a while, not per try
                out_of_fds.warn(f"accept() failed: {exc.strerror}; new connections wait")
                return
            if isinstance(exc, ConnectionError | ssl.SSLError):
                return  # a client went away mid-handshake: nothing to report
            loop.default_exception_handler(ctx)

        loop.set_exception_handler(exception_handler)

        def room() -> bool:
            if len(self.connections) < cap:
                return True
            # the oldest idle connection (keep-alive, or never sent its headers) gives way,
            # so idle clients cannot deny service; with none idle, the new one is refused
            oldest = next((k for k, c in self.connections.items() if c.idle), None)
            if oldest is not None:
                over_cap.warn(f"{cap} connections open (the cap); closing the oldest idle")
                self.connections.pop(oldest).close()
                return True
            over_cap.warn(f"{cap} connections open (the cap), none idle; refusing new")
            return False

        async def run_hypercorn(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, admitted: bool = True
        ) -> None:
            task = asyncio.current_task()
            if task is not None:
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            peer = writer.get_extra_info("peername")
            if not admitted and not room():
                writer.transport.abort()
                return
            if not peer:
                writer.transport.abort()
                return
            key = (str(peer[0]), int(peer[1]))
            server = TCPServer(app, loop, config, worker, {}, reader, writer)
            connection = Connection(server, writer)
            self.connections[key] = connection
            try:
                await server
            finally:
                if self.connections.get(key) is connection:
                    del self.connections[key]

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await run_hypercorn(reader, writer, admitted=False)

        def admit(key: tuple[str, int], connection: Any) -> bool:
            if not room():
                return False
            self.connections[key] = connection
            return True

        front = self.front if context is None else None
        if front is not None:
            hooks = _Hooks(self.limits, admit, self.connections, run_hypercorn, self.app)
            server = await loop.create_server(front.factory(hooks), sock=sock, backlog=2048)
        else:
            server = await asyncio.start_server(
                on_connect,
                sock=sock,
                ssl=context,
                backlog=2048,
                ssl_handshake_timeout=self.limits.header_timeout_s if context else None,
            )
        self._started.set()
        try:
            await self._stopping.wait()
        finally:
            await worker.terminated.set()
            server.close()
            if front is not None:
                # hung answers end now; the others get the grace period, like hypercorn's
                front.end_hangs()
                deadline = loop.time() + config.graceful_timeout
                while front.busy and loop.time() < deadline:  # noqa: ASYNC110 - no event
                    await asyncio.sleep(0.02)
                front.abort_all()
            # idle connections close on `terminated`; answers in flight get the grace period
            if tasks:
                _, pending = await asyncio.wait(list(tasks), timeout=config.graceful_timeout)
                for connection in list(self.connections.values()):
                    with contextlib.suppress(Exception):
                        connection._writer.close()
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=1.0)

    def start(self) -> HTTPServer:
        """Bind, start serving on a daemon thread, and return once listening."""
        sock = self._bind()
        context = self._ssl_context() if self.tls else None

        def run() -> None:
            try:
                asyncio.run(self._serve(sock, context))
            except BaseException as exc:  # noqa: BLE001 - surfaced by start()
                self._error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        while not self._started.is_set():
            if not self._thread.is_alive():
                raise RuntimeError(f"server failed to start: {self._error!r}")
            self._started.wait(0.01)
        return self

    def stop(self) -> None:
        """Stop serving: ``on_stop`` runs first (hung answers end), then hypercorn stops."""
        if self.on_stop is not None:
            self.on_stop()
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def wait(self) -> None:
        """Block until the server stops."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.2)

    def __enter__(self) -> HTTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
