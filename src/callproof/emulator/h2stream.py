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

:class:`H2Player` is the HTTP/2 twin of the fast front's player, with the same step semantics
(:mod:`~callproof.emulator.streaming`): no task, ``loop.call_later`` for every wait; the
caller writes what a turn of play framed (``H2Protocol.flush``) in one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import h2.errors
import h2.exceptions

from callproof.emulator.h2asgi import ASGICall, response_block
from callproof.emulator.plans import Answer
from callproof.emulator.streaming import Cut, Hang, Headers, Reset, Send, Sleep, Step, Trickle

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
            if answer.on_close is not None:
                answer.on_close()  # the client left while the answer was being made
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


class H2Player:
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
