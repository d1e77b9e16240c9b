"""The h2c fast path: HTTP/2 with prior knowledge on the fast front's bare asyncio Protocol.

Why: on HTTP/1.1 the fast front (:mod:`~callproof.emulator.fastfront`) costs about 70 us of
server CPU per 20-event ConverseStream stream, but an h2c connection went to hypercorn's h2
stack and Starlette, 480-630 us per stream (issue 14). The framing and HPACK stay the ``h2``
library's (the project never hand-writes what a well-kept library does); what this module
takes away is everything around it: hypercorn's per-stream tasks, buffers, priority tree and
events, and Starlette.

How: when :class:`~callproof.emulator.fastfront.FastProtocol` sees the HTTP/2 preface (``PRI *
HTTP/2.0``) it gives the connection, with every byte already read, to :meth:`H2Front.take`
instead of hypercorn. :class:`H2Protocol` drives a server-side ``h2.connection.H2Connection``
and decides per stream:

* a hot route (whatever :meth:`FastRoutes.wants` accepts: Bedrock Converse/ConverseStream,
  OpenAI chat completions and Responses) is served from the same plans
  (:class:`~callproof.emulator.plans.Answer`) as on HTTP/1.1, once its body has arrived:
  ``Headers`` is a HEADERS frame (the answer's headers and ``date``, as hypercorn sends them,
  less the connection-specific ones HTTP/2 forbids), ``Send`` DATA frames within the flow
  control windows (what they do not allow waits in the stream's outbox and goes on
  ``WindowUpdated``), ``Sleep``/delays/``Trickle`` are ``loop.call_later`` timers (no task
  when nothing waits), ``Hang`` parks the stream until the client resets it or the server
  stops (then it ends, or answers an empty 503 when no headers went), and ``Cut`` and
  ``Reset`` are RST_STREAM(INTERNAL_ERROR) after what was already sent, as
  :meth:`callproof.http_server.Connection.cut`/``reset`` do under hypercorn (``Reset(whole=
  True)``: a TCP reset of the connection). An answer that is a coroutine (an OpenAI request
  its plans do not cover) runs as one task per stream, like FastProtocol's.
* every other stream (other routes and methods, ``/health``, 404s, and a hot route whose body
  passes the body limit, or whose route declines it) runs the emulator's ASGI app through a
  minimal ASGI adapter (:mod:`~callproof.emulator.h2asgi`): the scope hypercorn gives, the
  body as it arrives (acknowledged to the client's flow control as the app reads it), then
  ``http.disconnect``; the protocol is the scope's :data:`~callproof.http_server.
  CONNECTION_EXTENSION`, so the routes' cut and reset work there too. So a connection may mix
  both kinds of stream freely (the per-stream choice, not a per-connection hand-off: the AWS
  SDK for JavaScript keeps one session for every call).

Limits, as the fast front and hypercorn honour them (:class:`~callproof.http_server.
ServerLimits`): SETTINGS_MAX_CONCURRENT_STREAMS and SETTINGS_MAX_HEADER_LIST_SIZE as hypercorn
advertised them (more streams, or a bigger header list, is the connection error h2 raises:
GOAWAY); the header/idle timeout closes a connection without a stream (GOAWAY NO_ERROR); a hot
stream's body has ``Limits.body_timeout_s`` (then the route's 408); the connection cap counts
the connection (:meth:`idle`, :meth:`close`). Inbound headers are validated by h2 (its
defaults, as under hypercorn: a malformed request is a protocol error, GOAWAY, never a
traceback); outbound validation is off, since every header sent is the emulator's own, filtered
here. A client that cancels streams faster than :data:`RESET_RATE` per second (past a burst of
:data:`RESET_BURST`, the 2023 "rapid reset" attack) gets GOAWAY(ENHANCE_YOUR_CALM), and a
client that does not read what is sent has its reading paused (``pause_writing``), so neither
PING floods nor unread answers grow memory. On server stop every connection gets GOAWAY (new
streams are refused), hung streams end, and the others finish within the grace period; a
client's graceful GOAWAY lets open streams finish (as :mod:`callproof.http_server`'s fix does
for hypercorn).

TLS connections are not in scope: ALPN h2 stays on hypercorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Protocol, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
from hyperframe.frame import Frame

from callproof.emulator.h2asgi import ASGICall, response_block
from callproof.emulator.plans import Answer
from callproof.emulator.streaming import (
    Cut,
    Hang,
    Headers,
    Reset,
    Send,
    Sleep,
    Step,
    Trickle,
)

if TYPE_CHECKING:
    from callproof.emulator.fastfront import FastFront

__all__ = ["PREFACE", "RESET_BURST", "RESET_RATE", "H2Front", "H2Hooks", "H2Protocol"]

log = logging.getLogger("callproof.emulator.h2front")

#: The first line of the HTTP/2 connection preface (RFC 9113 §3.4); h2 checks the rest.
PREFACE = b"PRI * HTTP/2.0\r\n\r\n"
#: Streams a client may cancel in a burst, and per second after it, before GOAWAY.
RESET_BURST = 400
RESET_RATE = 200.0
#: Seconds a cut or reset waits at most for what was sent to leave (the outbox, the socket).
_DRAIN_S = 2.0
_DRAIN_POLL_S = 0.005
_NO_ERROR = h2.errors.ErrorCodes.NO_ERROR
_INTERNAL = h2.errors.ErrorCodes.INTERNAL_ERROR
_REFUSED = h2.errors.ErrorCodes.REFUSED_STREAM
_CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


#: h2's connection state machine, except that receiving GOAWAY leaves a server open: RFC 9113
#: §6.8 lets the streams the GOAWAY covers finish, and the AWS SDK for JavaScript sends one
#: after the headers of every event stream, or together with its request (h2 as shipped moves
#: to CLOSED and refuses every later frame, even the ones read with the GOAWAY, before any
#: handler could undo it; :mod:`callproof.http_server` patches hypercorn for the same).
_GOAWAY_KEEPS_OPEN = {
    **h2.connection.H2ConnectionStateMachine._transitions,
    (h2.connection.ConnectionState.SERVER_OPEN, h2.connection.ConnectionInputs.RECV_GOAWAY): (
        None,
        h2.connection.ConnectionState.SERVER_OPEN,
    ),
}


class _Encoder(hpack.Encoder):
    """HPACK without Huffman coding: pure-Python Huffman costs about 9 us per answer (the
    unique request id), for some 10 bytes less per header block on loopback."""

    def encode(self, headers: Any, huffman: bool = False) -> bytes:
        return super().encode(headers, huffman=huffman)


class H2Hooks(Protocol):
    """What the h2c front needs from its server (``http_server._Hooks``)."""

    max_header_bytes: int
    header_timeout_s: float
    h2_max_concurrent_streams: int
    #: the ASGI app that serves the streams the hot routes do not
    app: Any

    def adopt(self, key: tuple[str, int], connection: Any) -> None: ...

    def forget(self, key: tuple[str, int], connection: Any) -> None: ...


class H2Front:
    """The h2c side of one :class:`~callproof.emulator.fastfront.FastFront`: its connections,
    its hung streams, and the server's stop (GOAWAY, hangs ended, the rest aborted)."""

    def __init__(self, front: FastFront) -> None:
        self.routes = front.routes
        self.date = front.date
        self.protocols: set[H2Protocol] = set()
        self.hung: set[_Play] = set()
        #: the tasks of ASGI streams and of answers being made (held here: the loop keeps only
        #: weak references to tasks)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stopping = False

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def take(self, transport: asyncio.Transport, data: bytes, hooks: Any) -> None:
        """Serve this connection (it opened with the preface; ``data``: every byte read)."""
        H2Protocol(self, cast("H2Hooks", hooks)).take(transport, data)

    def end_hangs(self) -> None:
        """The server stops: GOAWAY on every connection, and every parked stream ends."""
        self.stopping = True
        for protocol in list(self.protocols):
            protocol.go_away()
        for play in list(self.hung):
            play.end_hang()

    @property
    def busy(self) -> int:
        """Connections with a stream in flight."""
        return sum(1 for p in self.protocols if p.streams)

    def abort_all(self) -> None:
        for protocol in list(self.protocols):
            protocol.close()


class H2Protocol(asyncio.Protocol):
    """One h2c connection; see the module docstring. It is also the connection the ASGI
    routes see (:data:`~callproof.http_server.CONNECTION_EXTENSION`): ``reset``, ``cut``,
    ``http_version``, and ``idle``/``close`` for the connection cap."""

    http_version = "2"

    def __init__(self, side: H2Front, hooks: H2Hooks) -> None:
        self.side = side
        self.hooks = hooks
        self.routes = side.routes
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,  # the emulator's own headers, filtered here
            normalize_outbound_headers=False,
        )
        conn = h2.connection.H2Connection(config=config)
        codes = h2.settings.SettingCodes
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                codes.MAX_CONCURRENT_STREAMS: hooks.h2_max_concurrent_streams,
                codes.MAX_HEADER_LIST_SIZE: hooks.max_header_bytes,
            },
        )
        conn.decoder.max_header_list_size = hooks.max_header_bytes  # before the client's ACK
        conn.encoder = _Encoder()
        # a client's GOAWAY leaves this side open, so the streams it covers can finish
        conn.state_machine._transitions = _GOAWAY_KEEPS_OPEN
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.key: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.streams: dict[int, H2Stream] = {}
        #: streams whose outbox waits for the flow control windows
        self.blocked: dict[int, H2Stream] = {}
        self.closed = False
        #: no new streams (GOAWAY sent, or the client's graceful GOAWAY received)
        self.refusing = False
        self.goaway_sent = False
        self.idle_since = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._reset_tokens = float(RESET_BURST)
        self._reset_at = time.monotonic()

    # -- the server's view ---------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self.streams

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def take(self, transport: asyncio.Transport, data: bytes) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if peer:
            self.key = self.client = (str(peer[0]), int(peer[1]))
            self.hooks.adopt(self.key, self)  # the connection cap counts it as this protocol
        sock = transport.get_extra_info("sockname")
        if sock:
            self.server = (str(sock[0]), int(sock[1]))
        self.side.protocols.add(self)
        transport.set_protocol(self)
        loop = asyncio.get_running_loop()
        self.idle_since = loop.time()
        self._idle_timer = loop.call_later(self.hooks.header_timeout_s, self._idle_check)
        self.conn.initiate_connection()
        self.flush()  # the server's SETTINGS first (h2 drops what is unsent on a GOAWAY)
        if self.side.stopping:
            self.go_away()
        self.data_received(data)
        if not transport.is_closing() and not transport.is_reading():
            transport.resume_reading()

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued its GOAWAY (PROTOCOL_ERROR, ENHANCE_YOUR_CALM, ...): send it, close
            log.debug("h2c client %s: protocol error: %s", self.client, exc)
            self.flush()
            self._shut()
            return
        except Exception as exc:  # noqa: BLE001 - hostile bytes past h2's checks: closed too
            log.warning("h2c client %s: unreadable input (%s): closing", self.client, exc)
            self._shut()
            return
        if self._oversized():
            self.conn.close_connection(h2.errors.ErrorCodes.FRAME_SIZE_ERROR)
            self.flush()
            self._shut()
            return
        try:
            for event in events:
                handler = _HANDLERS.get(type(event))
                if handler is not None:
                    handler(self, event)
        except Exception:  # a bug must close this connection, never the server
            log.exception("h2c front bug (client %s)", self.client)
            self.close()
            return
        self.flush()

    def _oversized(self) -> bool:
        """Whether the incomplete frame h2 holds declares a length past
        SETTINGS_MAX_FRAME_SIZE: h2 checks the length only once the whole frame is in, so
        it would buffer up to 16 MiB per connection first (hypercorn does). What h2 keeps
        between reads is at most one incomplete frame; its header is read with hyperframe."""
        pending = getattr(self.conn.incoming_buffer, "_data", None)
        if not isinstance(pending, bytearray) or len(pending) < 9:
            return False
        try:
            _, length = Frame.parse_frame_header(memoryview(bytes(pending[:9])))
        except Exception:  # noqa: BLE001 - h2 reports a bad header itself, on the next read
            return False
        return length > self.conn.max_inbound_frame_size

    def eof_received(self) -> bool:
        return False  # the client is gone: the transport closes, connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        for stream in list(self.streams.values()):
            stream.finish()
        self.side.protocols.discard(self)
        if self.key is not None:
            self.hooks.forget(self.key, self)
            self.key = None

    def pause_writing(self) -> None:
        # the client does not read what it is sent: read nothing more from it meanwhile
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- sending -------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what h2 has framed (each entry point ends with one write)."""
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _shut(self) -> None:
        """Close after what was written (and end every stream)."""
        if self.transport is not None:
            self.transport.close()
        self.connection_lost(None)

    def go_away(self) -> None:
        """The server stops: new streams are refused (REFUSED_STREAM); GOAWAY(NO_ERROR) and
        the close come once the open streams have ended (at once with none open), as
        hypercorn does: a client on h2 (httpx) reads nothing more after a GOAWAY."""
        if self.closed:
            return
        self.refusing = True
        if not self.streams:
            self._goodbye()

    def _goodbye(self) -> None:
        """GOAWAY(NO_ERROR), then close after what was written."""
        if not self.goaway_sent:
            self.goaway_sent = True
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.conn.close_connection()
        self.flush()
        self._shut()

    def _idle_check(self) -> None:
        """The header/idle timeout: a connection without a stream that long closes."""
        self._idle_timer = None
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        wait = self.hooks.header_timeout_s
        if not self.streams:
            wait = self.idle_since + wait - loop.time()
            if wait <= 0:
                self._goodbye()
                return
        self._idle_timer = loop.call_later(wait, self._idle_check)

    def stream_done(self, stream: H2Stream) -> None:
        """A stream ended (either side): forget it; a stopping connection may close now."""
        self.streams.pop(stream.sid, None)
        self.blocked.pop(stream.sid, None)
        if self.streams or self.closed:
            return
        self.idle_since = asyncio.get_running_loop().time()
        if self.refusing:
            self._goodbye()  # stopping, or the client's GOAWAY: the last stream has ended

    def tcp_reset(self, deadline: float | None = None) -> None:
        """``Reset(whole=True)``: what was sent leaves first (2 s at most), then a TCP RST."""
        transport = self.transport
        if transport is None or self.closed:
            return
        self.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _DRAIN_S if deadline is None else deadline
        if transport.get_write_buffer_size() and loop.time() < deadline:
            loop.call_later(_DRAIN_POLL_S, self.tcp_reset, deadline)
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                # linger on with a zero timeout: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    # -- the ASGI routes' connection (CONNECTION_EXTENSION) --------------------------------------

    def _stream_of(self, scope: dict[str, Any]) -> H2Stream | None:
        for stream in self.streams.values():
            if stream.call is not None and stream.call.scope is scope:
                return stream
        return None

    async def reset(self, scope: dict[str, Any], *, whole: bool = False) -> None:
        """RST_STREAM(INTERNAL_ERROR) on the scope's stream after what it sent; a TCP reset
        with ``whole`` (or when the stream is gone)."""
        stream = self._stream_of(scope)
        if whole or stream is None:
            self.tcp_reset()
            return
        stream.reset_after_sent(_INTERNAL)
        self.flush()

    async def cut(self, scope: dict[str, Any]) -> None:
        """Under HTTP/2 a cut is RST_STREAM, as under hypercorn."""
        await self.reset(scope)

    # -- events --------------------------------------------------------------------------------

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        if self.refusing:
            self.conn.reset_stream(sid, _REFUSED)
            return
        method = path = authority = None
        host = b""
        raw: list[tuple[bytes, bytes]] = [(b"host", b"")]  # hypercorn's order: host first
        for name, value in event.headers:
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
            elif name == b"host":
                host = value
            else:
                raw.append((name, value))
        raw[0] = (b"host", authority if authority is not None else host)
        stream = H2Stream(self, sid, method or b"", path or b"", raw)
        self.streams[sid] = stream
        routes = self.routes
        if path is None or method is None:  # CONNECT: no extended CONNECT is offered
            stream.plain(405)
            return
        if routes.wants(method, path):
            declared = stream.declared()
            if declared is None or declared <= routes.max_body_bytes:
                stream.hot = True
                if event.stream_ended is None:
                    stream.body_deadline(routes.body_timeout_s)
                return
        stream.to_app()

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        size = event.flow_controlled_length or 0
        if stream is None or not stream.take_data(event.data or b"", size):
            # nobody reads it (the stream is over): its window comes back at once
            self.conn.acknowledge_received_data(size, event.stream_id)

    def _on_end(self, event: h2.events.StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.body_end()

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        stream.done = True  # h2 has closed it: nothing more may be sent on it
        stream.finish()
        if event.remote_reset:
            self._count_reset()

    def _count_reset(self) -> None:
        now = time.monotonic()
        tokens = min(float(RESET_BURST), self._reset_tokens + (now - self._reset_at) * RESET_RATE)
        self._reset_at = now
        self._reset_tokens = tokens - 1
        if self._reset_tokens < 0 and not self.closed:
            log.warning("h2c client %s cancels streams too fast: GOAWAY", self.client)
            self.conn.close_connection(_CALM)
            self.flush()
            self._shut()

    def _on_window(self, event: h2.events.WindowUpdated) -> None:
        if event.stream_id == 0:
            self._unblock_all()
            return
        stream = self.blocked.get(event.stream_id)
        if stream is not None:
            stream.pump()

    def _on_settings(self, event: h2.events.RemoteSettingsChanged) -> None:
        if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            self._unblock_all()

    def _unblock_all(self) -> None:
        for stream in list(self.blocked.values()):
            stream.pump()

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        if event.error_code == _NO_ERROR and self.streams:
            # RFC 9113 §6.8: the streams the client opened finish (``_GOAWAY_KEEPS_OPEN``);
            # no new one is taken, and the connection closes after the last
            self.refusing = True
            return
        self.flush()
        self._shut()


_HANDLERS: dict[type, Callable[[H2Protocol, Any], None]] = {
    h2.events.RequestReceived: H2Protocol._on_request,
    h2.events.DataReceived: H2Protocol._on_data,
    h2.events.StreamEnded: H2Protocol._on_end,
    h2.events.StreamReset: H2Protocol._on_reset,
    h2.events.WindowUpdated: H2Protocol._on_window,
    h2.events.RemoteSettingsChanged: H2Protocol._on_settings,
    h2.events.ConnectionTerminated: H2Protocol._on_goaway,
}


class H2Stream:
    """One request stream: its body coming in, and what goes out within flow control."""

    __slots__ = (
        "body",
        "call",
        "conn",
        "done",
        "drained",
        "ending",
        "headers",
        "hot",
        "method",
        "outbox",
        "path",
        "play",
        "proto",
        "remote_open",
        "reset_code",
        "sid",
        "size",
        "task",
        "timer",
    )

    def __init__(
        self,
        proto: H2Protocol,
        sid: int,
        method: bytes,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self.proto = proto
        self.conn = proto.conn
        self.sid = sid
        self.method = method
        self.path = path
        self.headers = headers
        self.hot = False
        self.body: list[bytes] = []
        self.size = 0
        self.remote_open = True
        #: nothing more goes out on this stream (ended, reset, or reset by the client)
        self.done = False
        self.outbox = bytearray()
        #: END_STREAM goes when the outbox has gone
        self.ending = False
        #: RST_STREAM with this code goes when the outbox has gone
        self.reset_code: int | None = None
        self.play: _Play | None = None
        self.call: ASGICall | None = None
        self.task: asyncio.Task[Answer] | None = None
        #: the body deadline, or the deadline of a reset waiting for its outbox
        self.timer: asyncio.TimerHandle | None = None
        #: futures waiting for the outbox to go (the ASGI app's back-pressure)
        self.drained: list[asyncio.Future[None]] = []

    # -- the request ---------------------------------------------------------------------------

    def declared(self) -> int | None:
        for name, value in self.headers:
            if name == b"content-length":
                return int(value) if value.isdigit() else None
        return 0

    def body_deadline(self, seconds: float) -> None:
        self.timer = asyncio.get_running_loop().call_later(seconds, self._body_late)

    def _body_late(self) -> None:
        """The body did not arrive in time: the route's 408 (then RST_STREAM NO_ERROR)."""
        self.timer = None
        if self.done or not self.hot or not self.remote_open:
            return
        self.hot = False
        self.body.clear()
        self._play(self.proto.routes.body_timeout(self.path))
        self.proto.flush()

    def take_data(self, data: bytes, size: int) -> bool:
        """A DATA frame; False when nobody will read it (its window comes back at once)."""
        if self.call is not None:
            if self.done:
                return False
            self.call.feed(data, size)
            return True
        if not self.hot:
            return False
        self.body.append(data)
        self.size += len(data)
        self.conn.acknowledge_received_data(size, self.sid)
        if self.size > self.proto.routes.max_body_bytes:
            self.to_app()  # the route answers a body past the limit (413), as under hypercorn
        return True

    def body_end(self) -> None:
        self.remote_open = False
        if self.call is not None:
            self.call.end()
        elif self.hot:
            self.hot = False
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self._serve()

    def _serve(self) -> None:
        routes = self.proto.routes
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body = []
        headers: dict[str, str] = {}
        for name, value in self.headers:
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        answer = routes.serve(self.path, headers, self.headers, body)
        if answer is None:
            self.to_app([body] if body else [])
        elif isinstance(answer, Answer):
            self._play(answer)
        else:
            self.task = self.proto.side.spawn(answer)
            self.task.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Task[Answer]) -> None:
        self.task = None
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:  # FastRoutes answers its own errors: this is a bug
            log.error("h2c front: an answer failed", exc_info=error)
            self.reset_after_sent(_INTERNAL)
            self.proto.flush()
            return
        answer = task.result()
        if self.done:
            if answer.on_close is not None:
                answer.on_close()  # the client left while the answer was being made
            return
        self._play(answer)
        self.proto.flush()

    def _play(self, answer: Answer) -> None:
        play = _Play(self, answer)
        self.play = play
        play.run()

    def to_app(self, received: list[bytes] | None = None) -> None:
        """Serve this stream with the ASGI app (the body so far is already acknowledged)."""
        self.hot = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        chunks, self.body = (self.body if received is None else received), []
        self.call = ASGICall(self, chunks, ended=not self.remote_open)
        self.call.start(self.proto.hooks.app)

    def plain(self, status: int) -> None:
        """An empty answer with this status (a request the emulator does not serve at all)."""
        block = response_block(status, [(b"content-length", b"0")], self.proto.side.date())
        self.head(block, end=True)

    # -- the answer ----------------------------------------------------------------------------

    def head(self, block: list[tuple[bytes, bytes]], *, end: bool = False) -> None:
        if self.done:
            return
        try:
            self.conn.send_headers(self.sid, block, end_stream=end)
        except h2.exceptions.ProtocolError:
            self._lost()
            return
        if end:
            self._sent_end()

    def write(self, data: bytes, *, end: bool = False) -> None:
        """Send ``data`` (and END_STREAM) as the flow control windows allow; the rest waits."""
        if self.done or self.ending or self.reset_code is not None:
            return
        if end:
            self.ending = True
        if self.outbox:
            self.outbox += data
            return
        conn = self.conn
        size = len(data)
        try:
            if size <= conn.local_flow_control_window(self.sid) and (
                size <= conn.max_outbound_frame_size
            ):
                if size or end:
                    conn.send_data(self.sid, data, end_stream=end)
                if end:
                    self._sent_end()
                return
        except h2.exceptions.ProtocolError:
            self._lost()
            return
        self.outbox += data
        self.pump()

    def pump(self) -> None:
        """Send what the windows allow from the outbox; END_STREAM or RST_STREAM after it."""
        if self.done:
            return
        conn, outbox, sid = self.conn, self.outbox, self.sid
        try:
            window = conn.local_flow_control_window(sid)
            most = conn.max_outbound_frame_size
            while outbox and window > 0:
                size = min(window, most, len(outbox))
                chunk = bytes(outbox[:size])
                del outbox[:size]
                last = not outbox and self.ending and self.reset_code is None
                conn.send_data(sid, chunk, end_stream=last)
                window -= size
                if last:
                    self._sent_end()
                    return
        except h2.exceptions.ProtocolError:
            self._lost()
            return
        if outbox:
            self.proto.blocked[sid] = self
            return
        self.proto.blocked.pop(sid, None)
        if self.reset_code is not None:
            self.reset(self.reset_code)
        elif self.ending:
            try:
                conn.end_stream(sid)
            except h2.exceptions.ProtocolError:
                self._lost()
                return
            self._sent_end()
        self._wake_drained()

    def wait_sent(self) -> asyncio.Future[None] | None:
        """A future for the outbox to have gone (None when it has)."""
        if not self.outbox or self.done:
            return None
        future = asyncio.get_running_loop().create_future()
        self.drained.append(future)
        return future

    def _wake_drained(self) -> None:
        waiters, self.drained = self.drained, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    def reset_after_sent(self, code: int) -> None:
        """RST_STREAM once the outbox has gone (``_DRAIN_S`` at most): what was sent first."""
        if self.done:
            return
        if not self.outbox:
            self.reset(code)
            return
        self.reset_code = code
        if self.timer is None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(_DRAIN_S, self._reset_late, code)

    def _reset_late(self, code: int) -> None:
        self.timer = None
        self.reset(code)
        self.proto.flush()

    def reset(self, code: int) -> None:
        if self.done:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.reset_stream(self.sid, code)
        self.done = True
        self.finish()

    def _sent_end(self) -> None:
        """END_STREAM went: the answer is complete (a client still sending is told to stop,
        RFC 9113 §8.1: RST_STREAM NO_ERROR after a complete response)."""
        if self.remote_open:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.conn.reset_stream(self.sid, _NO_ERROR)
        self.done = True
        self.finish()

    def _lost(self) -> None:
        """h2 refused to send on this stream (it was closed under it): it is over."""
        self.done = True
        self.finish()

    def finish(self) -> None:
        """The stream is over, whichever side ended it: timers off, slot released, app told."""
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.play is not None:
            self.play.stop()
        if self.call is not None:
            self.call.gone()
        self.outbox.clear()
        self._wake_drained()
        self.proto.stream_done(self)


class _Play:
    """Plays one answer's steps on a stream (no task: timers and plain calls); the HTTP/2
    twin of the fast front's player, with the same step semantics."""

    __slots__ = (
        "answer",
        "begun",
        "current",
        "pending",
        "rate",
        "started",
        "steps",
        "stopped",
        "stream",
        "timer",
        "trickle",
    )

    def __init__(self, stream: H2Stream, answer: Answer) -> None:
        self.stream = stream
        self.answer = answer
        self.steps: Iterator[Step] = iter(answer.steps)
        self.current: Step | None = None
        self.begun = False
        self.started = False
        self.stopped = False
        self.pending: list[bytes] = []
        self.rate = 0
        self.timer: asyncio.TimerHandle | None = None
        self.trickle: tuple[bytes, int] | None = None

    def _start(self) -> None:
        if not self.started:
            self.started = True
            answer = self.answer
            items = [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in answer.headers.items()
            ]
            block = response_block(answer.status, items, self.stream.proto.side.date())
            self.stream.head(block)

    def run(self) -> None:
        """Play on from the current step (the caller flushes)."""
        if self.stopped:
            return
        stream = self.stream
        answer = self.answer
        if not self.begun:
            self.begun = True
            if answer.body is not None:
                # nothing waits: HEADERS and DATA with END_STREAM, in one flush
                self._start()
                stream.write(answer.body, end=True)
                self._close()
                return
        self._steps()

    def _steps(self) -> None:  # noqa: C901, PLR0912 - one branch per step kind, as FastFront's
        stream = self.stream
        loop = asyncio.get_running_loop()
        while True:
            if self.stopped:
                return  # the stream ended under the answer
            step = self.current
            if step is None:
                step = self.current = next(self.steps, None)
                if step is None:
                    break
            if isinstance(step, Send):
                if step.delay > 0 and not self.pending:
                    self._start()
                    self.current = None
                    self.timer = loop.call_later(step.delay, self._after_delay, step.data)
                    return
                if step.delay > 0:
                    if not self._flush():
                        return
                    continue
                self.pending.append(step.data)
                self.current = None
                continue
            if not self._flush():
                return  # trickling: this step comes after the last piece
            self.current = None
            if isinstance(step, Cut | Reset):
                if isinstance(step, Cut):
                    self._start()
                self._close()
                if isinstance(step, Reset) and step.whole:
                    stream.proto.tcp_reset()
                else:
                    stream.reset_after_sent(_INTERNAL)
                return
            if isinstance(step, Trickle):
                self.rate = step.bytes_per_s
            elif isinstance(step, Headers):
                self._start()
            elif isinstance(step, Sleep):
                if step.seconds > 0:
                    self.timer = loop.call_later(step.seconds, self._resume)
                    return
            elif isinstance(step, Hang):
                if not stream.proto.routes.closing.is_set():
                    stream.proto.side.hung.add(self)
                    return
                if not self._hang_ended():
                    break
        if self.pending and not self.rate:
            self._start()
            data = b"".join(self.pending)
            self.pending.clear()
            stream.write(data, end=True)
            self._close()
            return
        if not self._flush():
            return  # the last sends trickle out first
        self._start()
        stream.write(b"", end=True)
        self._close()

    def _after_delay(self, data: bytes) -> None:
        self.timer = None
        self.pending.append(data)
        self._resume()

    def _resume(self) -> None:
        self.timer = None
        self.run()
        self.stream.proto.flush()

    def _hang_ended(self) -> bool:
        """After a hang: False (stop playing) when headers were never sent (an empty 503)."""
        if self.started:
            return True
        self.answer.status, self.answer.headers = 503, {}
        return False

    def end_hang(self) -> None:
        self.stream.proto.side.hung.discard(self)
        if self.stopped:
            return
        if not self._hang_ended():
            self.steps, self.current = iter(()), None
        self._resume()

    def _flush(self) -> bool:
        """Send what is pending; False when it goes out as a trickle (play resumes after)."""
        if not self.pending:
            return True
        self._start()
        data = b"".join(self.pending)
        self.pending.clear()
        if not self.rate:
            self.stream.write(data)
            return True
        self.trickle = (data, 0)
        self._piece()
        return False

    def _piece(self) -> None:
        assert self.trickle is not None
        data, offset = self.trickle
        piece = data[offset : offset + max(1, self.rate // 10)]
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(len(piece) / self.rate, self._send_piece, piece)

    def _send_piece(self, piece: bytes) -> None:
        self.timer = None
        assert self.trickle is not None
        data, offset = self.trickle
        self.stream.write(piece)
        self.stream.proto.flush()
        offset += len(piece)
        if offset < len(data):
            self.trickle = (data, offset)
            self._piece()
            return
        self.trickle = None
        self._resume()

    def _close(self) -> None:
        """The answer is over (its slot released once)."""
        self.stopped = True
        callback, self.answer.on_close = self.answer.on_close, None
        if callback is not None:
            callback()

    def stop(self) -> None:
        """The stream ended under the answer: timers off, slot released."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.stream.proto.side.hung.discard(self)
        self._close()
