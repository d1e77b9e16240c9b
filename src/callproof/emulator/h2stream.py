"""One stream of the h2c front (:mod:`.h2front`): its request body coming in, its answer going
out within HTTP/2 flow control, and the player of a planned answer's steps.

:class:`H2Stream` collects a hot route's body (acknowledged to flow control at once, bounded
by the body limit and deadline), asks the routes for the answer, and sends it: ``head``
(HEADERS), ``write`` (DATA: what the stream and connection windows do not allow waits in the
outbox until ``WindowUpdated``; END_STREAM after the outbox), ``reset_after_sent``
(RST_STREAM once the outbox has gone, 2 s at most, as hypercorn's reset drains its stream
buffer first). A stream whose answer is complete while the client still sends its body is
told to stop with RST_STREAM(NO_ERROR) (RFC 9113 §8.1). Anything else goes to the ASGI app
(:class:`~callproof.emulator.h2asgi.ASGICall`).

:class:`H2Player` plays a planned answer's steps with the fast front's semantics
(:class:`~callproof.emulator.player.StepPlayer`: no task, ``loop.call_later`` for every wait);
the caller writes what a turn of play framed (``H2Protocol.flush``) in one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import h2.errors
import h2.exceptions

from callproof.emulator.h2asgi import ASGICall, response_block
from callproof.emulator.plans import Answer
from callproof.emulator.player import StepPlayer
from callproof.emulator.streaming import Cut, Reset

if TYPE_CHECKING:
    from callproof.emulator.h2front import H2Protocol

__all__ = ["DRAIN_S", "H2Player", "H2Stream"]

log = logging.getLogger("callproof.emulator.h2front")

#: Seconds a cut or reset waits at most for what was sent to leave (the outbox, the socket).
DRAIN_S = 2.0
_NO_ERROR = h2.errors.ErrorCodes.NO_ERROR
_INTERNAL = h2.errors.ErrorCodes.INTERNAL_ERROR


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
        self.method: bytes = method
        self.path: bytes = path
        #: hypercorn's order: ``host`` (from ``:authority``) first, then the regular headers
        self.headers: list[tuple[bytes, bytes]] = headers
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
        self.play: H2Player | None = None
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
            answer.release()  # the client left while the answer was being made
            return
        self._play(answer)
        self.proto.flush()

    def _play(self, answer: Answer) -> None:
        play = H2Player(self, answer)
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
        """RST_STREAM once the outbox has gone (``DRAIN_S`` at most): what was sent first."""
        if self.done:
            return
        if not self.outbox:
            self.reset(code)
            return
        self.reset_code = code
        if self.timer is None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(DRAIN_S, self._reset_late, code)

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


class H2Player(StepPlayer):
    """Plays one answer's steps on a stream (:class:`~callproof.emulator.player.StepPlayer`,
    the same step semantics as the fast front's HTTP/1.1 player): HEADERS and DATA frames;
    the caller flushes what a turn framed, a timer's turn flushes itself."""

    __slots__ = ("stream",)

    def __init__(self, stream: H2Stream, answer: Answer) -> None:
        super().__init__(answer)
        self.stream = stream

    def _send_head(self) -> None:
        answer = self.answer
        items = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()
        ]
        block = response_block(answer.status, items, self.stream.proto.side.date())
        self.stream.head(block)

    def _data(self, data: bytes) -> None:
        self.stream.write(data)

    def _last(self, data: bytes) -> None:
        self.stream.write(data, end=True)

    def _break(self, step: Cut | Reset) -> None:
        if isinstance(step, Cut):
            self._start()
        self._close()
        if isinstance(step, Reset) and step.whole:
            self.stream.proto.tcp_reset()
        else:
            self.stream.reset_after_sent(_INTERNAL)

    def _flush_out(self) -> None:
        self.stream.proto.flush()

    def _after_turn(self, ended: bool) -> None:
        self.stream.proto.flush()

    def _hung(self) -> set[StepPlayer]:
        return self.stream.proto.side.hung

    def _closing(self) -> bool:
        return self.stream.proto.routes.closing.is_set()

    def _empty_503(self) -> None:
        self.answer.status, self.answer.headers = 503, {}
