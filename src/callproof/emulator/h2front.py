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
PING floods nor unread answers grow memory; a frame declared past SETTINGS_MAX_FRAME_SIZE is
refused as soon as its header is in (h2 itself would first buffer up to 16 MiB of it). On
server stop new streams are refused (REFUSED_STREAM), hung streams end, the others finish
within the grace period, and each connection gets GOAWAY(NO_ERROR) once its last stream has
ended (as hypercorn does: a client on h2, httpx, reads nothing after a GOAWAY); a client's
graceful GOAWAY lets its open streams finish (as :mod:`callproof.http_server`'s fix does for
hypercorn). Streams and the player live in :mod:`~callproof.emulator.h2stream`.

Measured (bench/emulator.py, h2load's default h2c mode, 20-event ConverseStream, ``callproof
emulate``, 2 shared cores, load average 1.8-2.2, two runs): server CPU per stream 236-248 us
at c=1, 172-178 us at c=64, 170-224 us at c=512 (3,400-3,800, 5,500 and 4,300-5,700 streams/s).
In the same runs the same app with this front off (``FastFront(h2c=False)``, hypercorn's h2
and Starlette) costs 489-512, 379-402 and 441-603 us: 0.37-0.48x the CPU, 2.1-2.8x the
streams/s. HTTP/1.1 on the same server (h2load ``--h1``) costs 57-67 us, so HTTP/2 is
2.7-4.1x HTTP/1.1, not the issue's "within 20%"; against aimock's HTTP/1.1 (230-310 us) it
is 0.57-1.00x. In process, with no sockets (an h2 client's frames fed straight to the
protocol), a stream costs 150-170 us, about 85% of it in h2 and hpack: HPACK coding, h2's
frame and stream state machines, and its inbound header validation (10-15 us; turning it off
would save that much, and is not done: it is what makes a malformed request a protocol
error), against the planner's ~25 us, the same as on HTTP/1.1. That is the limit of the h2
library here. HPACK goes without Huffman coding (its pure-Python encoder cost ~9 us per
answer) and request ids are never indexed (each is new; indexing them churned the table);
remembering Huffman-decoded request paths (nghttp2 clients send ``:path`` as a Huffman literal
every time, ~6 us to decode) and silencing hpack's debug logging (~25 calls per stream) gave
nothing that stood out of the noise, and were left out.

TLS connections are not in scope: ALPN h2 stays on hypercorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
from hyperframe.frame import Frame

from callproof.emulator.h2stream import DRAIN_S, H2Stream

if TYPE_CHECKING:
    from callproof.emulator.fastfront import FastFront
    from callproof.emulator.player import StepPlayer

__all__ = ["PREFACE", "RESET_BURST", "RESET_RATE", "H2Front", "H2Hooks", "H2Protocol"]

log = logging.getLogger("callproof.emulator.h2front")

#: The first line of the HTTP/2 connection preface (RFC 9113 §3.4); h2 checks the rest.
PREFACE = b"PRI * HTTP/2.0\r\n\r\n"
#: Streams a client may cancel in a burst, and per second after it, before GOAWAY.
RESET_BURST = 400
RESET_RATE = 200.0
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
    its hung streams and tasks, and the server's stop (new streams refused, hangs ended,
    GOAWAY as each connection goes idle, the rest aborted after the grace period)."""

    def __init__(self, front: FastFront) -> None:
        self.routes = front.routes
        self.date = front.date
        self.protocols: set[H2Protocol] = set()
        self.hung: set[StepPlayer] = set()
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
        """The server stops: every connection refuses new streams (GOAWAY once its last
        stream has ended), and every parked stream ends now."""
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
        #: hot streams of this read whose body had not ended with their headers
        self._awaiting: list[H2Stream] = []
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
                    if self._ending():
                        return  # a handler ended the connection: the rest is moot
        except Exception:  # a bug must close this connection, never the server
            log.exception("h2c front bug (client %s)", self.client)
            self.close()
            return
        if self._awaiting:
            self._arm_bodies()
        self.flush()

    def _arm_bodies(self) -> None:
        """The body deadline of each hot stream whose body did not come with its headers (a
        client usually sends both in one write: then no timer is made at all)."""
        seconds = self.routes.body_timeout_s
        for stream in self._awaiting:
            if stream.hot and stream.remote_open and not stream.done:
                stream.body_deadline(seconds)
        self._awaiting.clear()

    def _ending(self) -> bool:
        return self.closed or self.transport is None or self.transport.is_closing()

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
        deadline = loop.time() + DRAIN_S if deadline is None else deadline
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
                    # its body's deadline, armed after this read if the body is not in it
                    self._awaiting.append(stream)
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
