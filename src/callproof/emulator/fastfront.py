"""The fast HTTP/1.1 front: the emulator's hot Bedrock routes on a bare asyncio Protocol.

Why: per stream, hypercorn (h11), Starlette and StepResponse's anyio task group cost several
times what the emulator's own work does once its answers are planned
(:mod:`~callproof.emulator.plans`); a bare asyncio ``Protocol`` writing pre-encoded bytes is
the limit issue 14 measured (6-14 us per stream). So cleartext connections start here, and
:class:`FastProtocol` serves ``POST /model/<id>/converse[-stream]`` itself:

* a plain HTTP/1.1 request (request line, ``name: value`` headers, ``Content-Length`` body) is
  framed here by hand. The parsing is deliberately narrow, so every offset is exact: anything
  else - the HTTP/2 preface, another route or method, HTTP/1.0, ``Transfer-Encoding``,
  ``Expect``, ``Upgrade``, an odd header line, a head past ``ServerLimits.max_header_bytes``, a
  body past the emulator's body limit - hands the connection, with every byte already read, to
  hypercorn (:meth:`~callproof.http_server.HTTPServer` runs its per-connection server on a
  StreamReader fed with those bytes). hypercorn then answers exactly as it does without this
  front (431/400 for bad heads, 404s, other routes), for the rest of that connection; a
  connection that opens with the HTTP/2 preface goes to :mod:`~callproof.emulator.h2front`
  instead (``h2c=False``: to hypercorn too). httptools was the brief's choice; a hand-off
  needs the exact byte offset where the current request starts, which httptools' callbacks
  do not give, and the narrow parse costs a few microseconds per request.
* the answer (:class:`~callproof.emulator.plans.Answer`) is played on the transport: one write
  for head and body when nothing waits; ``loop.call_later`` for sleeps, delays and the trickle
  of ``slow_body`` (no task, no task group, no watcher); a hang parks the stream until the
  client goes or the server stops; ``Cut`` closes the connection after what was sent, and
  ``Reset`` waits for the send buffer to drain, then closes with SO_LINGER 0 (a TCP RST).
* keep-alive and pipelining: requests are answered in order, one at a time; the header/idle
  timeout (``ServerLimits.header_timeout_s``) closes a connection that holds no complete
  request; the connection cap is the server's own (the oldest idle connection gives way).

OpenAI chat completions and Responses run on the front too: from their plans
(:mod:`~callproof.emulator.openai_plans`, synchronous like the Bedrock ones), else - bodies
the route must judge, faults the plans do not cover - through their own async handler as one
task per request (its steps are lazy generators, played as they come).

A held stream (a wait before its events) costs one timer and two writes, the headers at once
and the events after the wait: each turn of play (the request's, then each timer's) sends what
it wrote in one write, and the planned answers give the events after a wait as one step.

Measured (bench/emulator.py, h2load --h1, 20-event ConverseStream, 2 shared cores under load):
server CPU per stream is 72-110 us (741-1048 us on hypercorn and Starlette before), 0.23-0.34x
aimock's; 52-62 us since the lazy idle timer. h2c with prior knowledge is handed to
:mod:`~callproof.emulator.h2front` (``h2c=True``, the default: the same plans played as h2
frames, 170-250 us per stream against hypercorn's 380-600 us; ``h2c=False`` leaves it to
hypercorn). A planned streamed chat completion (20 events) costs 57-62 us (about 500 us
unplanned; 69-74 us before ids were drawn with ``randbytes``), 0.26-0.34x aimock's. A held
stream costs 1.2-1.4x an instant one at the same offered rate (1.4-2.0x when each runs as
fast as it can, at very different rates); see bench/emulator.py for why the first is the one
the target is judged on. Rounding timer deadlines up to the millisecond, so that streams due
together share a wake-up, gave no gain that stood out of the noise, and was left out.

The bytes are hypercorn's: the same headers in the same order, ``date``, chunked framing with
one chunk per flush, ``0\\r\\n\\r\\n`` at the end; the one difference is a reason phrase on the
status line (``HTTP/1.1 200 OK``; h11 sends none, and h2load's parser counts such answers as
failures).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse

from callproof.emulator.bedrock import bedrock_error_response
from callproof.emulator.bedrock_validation import BedrockError
from callproof.emulator.faults import ATTEMPT_KEY_HEADER, CURRENT_ATTEMPT_KEY
from callproof.emulator.plans import Answer, BedrockPlanner, split_path
from callproof.emulator.player import StepPlayer
from callproof.emulator.streaming import (
    Cut,
    Reset,
    StepResponse,
    instant_body,
)

if TYPE_CHECKING:
    from callproof.emulator.h2front import H2Front

__all__ = ["FastFront", "FastProtocol", "FastRoutes", "FrontHooks", "answer_of"]

log = logging.getLogger("callproof.emulator.fastfront")

#: Bytes a connection may buffer ahead (pipelined requests) before reading pauses.
_READ_AHEAD = 1 << 20
#: Seconds a reset waits at most for what was sent to leave the process, and its poll.
_DRAIN_S = 2.0
_DRAIN_POLL_S = 0.005
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class FrontHooks(Protocol):
    """What the front needs from its server (:class:`~callproof.http_server.HTTPServer`)."""

    max_header_bytes: int
    header_timeout_s: float

    def admit(self, key: tuple[str, int], connection: Any) -> bool: ...

    def forget(self, key: tuple[str, int], connection: Any) -> None: ...

    def hand_over(self, transport: asyncio.Transport, data: bytes) -> None: ...


#: ``openai_routes._handle``: (state, request, *, responses) -> a Starlette response
OpenAIHandler = Callable[..., Awaitable[Any]]
_OPENAI_PATHS = {b"/v1/chat/completions": False, b"/v1/responses": True}
_SERVER_ERROR = {
    "message": "The server had an error while processing your request.",
    "type": "server_error",
    "param": None,
    "code": None,
}


def answer_of(response: Any) -> Answer:
    """A route's response (a :class:`StepResponse` or a complete Starlette one) as an answer."""
    if isinstance(response, StepResponse):
        steps = response.steps
        return Answer(
            response.status,
            response.headers,
            steps,  # type: ignore[arg-type]  # a lazy iterable is played lazily
            instant_body(steps),
            response.on_close,
        )
    return Answer.from_response(response)


class FastRoutes:
    """The hot routes the front serves: Bedrock Converse and ConverseStream from plans, and
    (with ``openai``) OpenAI chat completions and Responses through their own handler, run as
    one task per request with the body in hand (no Starlette routing, no hypercorn)."""

    def __init__(self, planner: BedrockPlanner, openai: OpenAIHandler | None = None) -> None:
        self.planner = planner
        self.state = planner.state
        self.openai = openai
        self.chat_planner: Any = None
        if openai is not None:  # the OpenAI routes are present (app.py imports them so)
            from callproof.emulator.openai_plans import OpenAIPlanner

            self.chat_planner = OpenAIPlanner(self.state)

    @property
    def max_body_bytes(self) -> int:
        return self.state.limits.max_body_bytes

    @property
    def closing(self) -> threading.Event:
        return self.state.closing

    async def _openai(
        self,
        target: bytes,
        headers: dict[str, str],
        raw_headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> Answer:
        assert self.openai is not None
        path = target.decode("latin-1")
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": target,
            "query_string": b"",
            "root_path": "",
            "headers": raw_headers,
            "server": None,
            "client": None,
            "extensions": {},
        }
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.get_running_loop().create_future()  # the front sees disconnects
            raise AssertionError("unreachable")

        key = headers.get(ATTEMPT_KEY_HEADER)
        CURRENT_ATTEMPT_KEY.set(key[:512] if key else None)  # this task's own context
        try:
            response = await self.openai(
                self.state, Request(scope, receive), responses=_OPENAI_PATHS[target]
            )
        except Exception:  # a bug must answer 500, never kill the connection
            log.exception("emulator bug serving %s", path)
            response = JSONResponse({"error": _SERVER_ERROR}, status_code=500)
        return answer_of(response)

    @property
    def body_timeout_s(self) -> float:
        return self.state.limits.body_timeout_s

    def body_timeout(self, target: bytes) -> Answer:
        """The answer to a body that did not arrive within ``Limits.body_timeout_s``."""
        request_id = self.state.fresh_request_id()
        seconds = self.state.limits.body_timeout_s
        error = BedrockError(
            408,
            "RequestTimeoutException",
            f"The request body was not received within {seconds:g} s.",
        )
        return Answer.from_response(bedrock_error_response(error, request_id))

    def wants(self, method: bytes, target: bytes) -> bool:
        if method != b"POST":
            return False
        return target.startswith(b"/model/") or (
            self.openai is not None and target in _OPENAI_PATHS
        )

    def _planned(self, headers: dict[str, str], body: bytes, *, responses: bool) -> Answer | None:
        """An OpenAI answer from its plan (None: the async route judges the request)."""
        key = headers.get(ATTEMPT_KEY_HEADER)
        token = CURRENT_ATTEMPT_KEY.set(key[:512] if key else None)
        try:
            planned = self.chat_planner.answer(headers, body, responses=responses)
        except Exception:  # a bug must answer 500, never kill the connection
            log.exception("emulator bug serving an OpenAI request")
            return Answer.from_response(JSONResponse({"error": _SERVER_ERROR}, status_code=500))
        finally:
            CURRENT_ATTEMPT_KEY.reset(token)
        if planned is None or isinstance(planned, Answer):
            return planned
        return answer_of(planned)

    def serve(
        self,
        target: bytes,
        headers: dict[str, str],
        raw_headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> Answer | Coroutine[Any, Any, Answer] | None:
        """The answer (or a coroutine for it), or None to leave the request to hypercorn."""
        if target in _OPENAI_PATHS:
            if self.chat_planner is not None:
                planned = self._planned(headers, body, responses=_OPENAI_PATHS[target])
                if planned is not None:
                    return planned
            return self._openai(target, headers, raw_headers, body)
        parts = split_path(target)
        if parts is None:
            return None
        model_id, operation = parts
        planner = self.planner
        request_id = self.state.fresh_request_id()
        key = headers.get(ATTEMPT_KEY_HEADER)
        token = CURRENT_ATTEMPT_KEY.set(key[:512] if key else None)
        try:
            return planner.answer(
                method="POST",
                raw_path=target,
                model_id=model_id,
                operation=operation,
                scheme="http",
                headers=headers,
                body=body,
                request_id=request_id,
            )
        except BedrockError as error:
            return Answer.from_response(bedrock_error_response(error, request_id))
        except Exception:  # a bug must answer 500, never kill the connection
            log.exception("emulator bug serving %s", target[:200])
            internal = planner.internal_error()
            return Answer.from_response(bedrock_error_response(internal, request_id))
        finally:
            CURRENT_ATTEMPT_KEY.reset(token)


class _Date:
    """The ``date`` header value, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode()
        return self._value


class FastFront:
    """The front of one server: its routes, its hooks and the streams parked in a hang."""

    def __init__(self, routes: FastRoutes, *, h2c: bool = True) -> None:
        self.routes = routes
        self.date = _Date()
        self.hung: set[StepPlayer] = set()
        self.protocols: set[FastProtocol] = set()
        self.hooks: FrontHooks | None = None
        #: the h2c fast path (:mod:`~callproof.emulator.h2front`), which takes the connections
        #: that open with the HTTP/2 preface; None (``h2c=False``): they go to hypercorn
        self.h2: H2Front | None = None
        if h2c:
            from callproof.emulator.h2front import H2Front

            self.h2 = H2Front(self)

    def factory(self, hooks: FrontHooks) -> Callable[[], FastProtocol]:
        self.hooks = hooks
        return lambda: FastProtocol(self, hooks)

    def end_hangs(self) -> None:
        """The server stops: every parked stream ends now (on the loop's thread)."""
        for player in list(self.hung):
            player.end_hang()
        if self.h2 is not None:
            self.h2.end_hangs()

    @property
    def busy(self) -> int:
        """Connections with an answer in flight."""
        busy = sum(1 for p in self.protocols if p.player is not None or p.task is not None)
        return busy + (self.h2.busy if self.h2 is not None else 0)

    def abort_all(self) -> None:
        for protocol in list(self.protocols):
            protocol.close()
        if self.h2 is not None:
            self.h2.abort_all()


class FastProtocol(asyncio.Protocol):
    """One client connection on the fast front; see the module docstring."""

    def __init__(self, front: FastFront, hooks: FrontHooks) -> None:
        self.front = front
        self.hooks = hooks
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.player: _Player | None = None
        self.key: tuple[str, int] | None = None
        self.closed = False
        self.keep_alive = True
        self._timer: asyncio.TimerHandle | None = None
        #: the header/idle clock: when it started, and whether a request stops it now
        self._idle_since = 0.0
        self._busy = False
        self._paused = False
        self._body_timer: asyncio.TimerHandle | None = None
        #: the task making an answer (the OpenAI routes), while it runs
        self.task: asyncio.Task[Answer] | None = None

    # -- the server's view (the connection cap) ------------------------------------------------

    @property
    def idle(self) -> bool:
        return self.player is None and self.task is None and not self.buffer

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if not peer:
            self.closed = True
            transport.abort()
            return
        self.key = (str(peer[0]), int(peer[1]))
        if not self.hooks.admit(self.key, self):
            self.closed = True
            transport.abort()
            return
        self.front.protocols.add(self)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.buffer = self.buffer + data if self.buffer else data
        if self.player is None and self.task is None:
            self._pump()
        elif len(self.buffer) > _READ_AHEAD and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        # the client is gone (as hypercorn sees it: http.disconnect): the answer in flight
        # stops and its slot is freed when the transport closes
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone()

    # -- requests ----------------------------------------------------------------------------

    def _gone(self) -> None:
        if self.closed and self.key is None:
            return
        self.closed = True
        self._cancel_timer()
        self._body_done()
        if self.player is not None:
            self.player.stop()
            self.player = None
        self.front.protocols.discard(self)
        if self.key is not None:
            self.hooks.forget(self.key, self)
            self.key = None

    def _arm(self) -> None:
        """Start the header/idle clock: no complete request for ``header_timeout_s`` closes
        the connection. The timer is lazy: one stays armed per connection, and a request
        only moves the clock's start (a float), so keep-alive requests cost no timer-heap
        push and cancel each; the timer checks the clock when it fires and sets itself for
        the rest of the wait."""
        self._idle_since, self._busy = time.monotonic(), False
        if self._timer is None and self.transport is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.hooks.header_timeout_s, self._expire)

    def _disarm(self) -> None:
        """A request is in hand: the clock stops (the armed timer finds the connection busy)."""
        self._busy = True

    def _cancel_timer(self) -> None:
        self._busy = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self.closed or self.transport is None:
            return
        loop = asyncio.get_running_loop()
        timeout = self.hooks.header_timeout_s
        if self._busy or self.player is not None or self.task is not None:
            self._timer = loop.call_later(timeout, self._expire)  # look again later
            return
        left = self._idle_since + timeout - time.monotonic()
        if left > 0:
            self._timer = loop.call_later(left, self._expire)
            return
        self.transport.close()  # no complete request within the header timeout

    def _pump(self) -> None:
        """Answer the complete requests buffered, in order, while each finishes at once."""
        while not self.closed and self.player is None and self.task is None and self.buffer:
            if not self._one():
                return
        if self.closed or self.player is not None or self.task is not None:
            return
        if not self.keep_alive:
            if self.transport is not None:
                self.transport.close()
            return
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def _hand_over(self) -> None:
        transport, data = self.transport, self.buffer
        self.buffer = b""
        self._cancel_timer()
        self._body_done()
        self.front.protocols.discard(self)
        self.closed = True
        self.key = None  # the hypercorn side registers the connection under the same key
        if transport is not None:
            if self.front.h2 is not None and data.startswith(b"PRI * HTTP/2.0\r\n"):
                self.front.h2.take(transport, data, self.hooks)  # the h2c preface
                return
            self.hooks.hand_over(transport, data)

    def _one(self) -> bool:
        """Frame one request from the buffer; False when it is incomplete or handed over."""
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        limit = self.hooks.max_header_bytes
        if end < 0:
            if len(buffer) > limit:
                self._hand_over()  # hypercorn answers an oversized head (431)
            return False
        if end + 4 > limit:
            self._hand_over()
            return False
        lines = buffer[:end].split(b"\r\n")
        request_line = lines[0].split(b" ")
        routes = self.front.routes
        if (
            len(request_line) != 3
            or request_line[2] != b"HTTP/1.1"
            or not routes.wants(request_line[0], request_line[1])
        ):
            self._hand_over()
            return False
        headers: dict[str, str] = {}
        raw_headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name.strip(b" \t") != name or b" " in name:
                self._hand_over()  # an odd header line: h11 judges it
                return False
            lowered, value = name.lower(), value.strip(b" \t")
            raw_headers.append((lowered, value))
            headers.setdefault(lowered.decode("latin-1"), value.decode("latin-1"))
        if "transfer-encoding" in headers or "expect" in headers or "upgrade" in headers:
            self._hand_over()
            return False
        declared = headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > routes.max_body_bytes:
            self._hand_over()  # hypercorn and the route answer these as they always have
            return False
        total = end + 4 + int(declared)
        if len(buffer) < total:
            if self._body_timer is None:  # the body is still arriving, against its deadline
                loop = asyncio.get_running_loop()
                wait = routes.body_timeout_s
                self._body_timer = loop.call_later(wait, self._body_late, request_line[1])
            return False
        self._body_done()
        answer = routes.serve(request_line[1], headers, raw_headers, buffer[end + 4 : total])
        if answer is None:
            self._hand_over()
            return False
        self.buffer = buffer[total:]
        self._disarm()
        self.keep_alive = headers.get("connection", "").lower() != "close"
        if not isinstance(answer, Answer):
            self.task = asyncio.get_running_loop().create_task(answer)
            self.task.add_done_callback(self._answered)
            return False
        player = _Player(self, answer)
        self.player = player
        if player.run():
            self.player = None
            self._arm()
            return True
        return False

    def _answered(self, task: asyncio.Task[Answer]) -> None:
        self.task = None
        if task.cancelled():
            return
        answer = task.result()
        if self.closed:
            answer.release()  # the client left while the answer was being made
            return
        player = _Player(self, answer)
        self.player = player
        if player.run():
            self.finished()

    def _body_done(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_late(self, target: bytes) -> None:
        """The body did not arrive in time: the route's 408, and the connection closes."""
        self._body_timer = None
        if self.closed or self.player is not None or self.task is not None:
            return
        self.buffer = b""
        self._disarm()
        self.keep_alive = False
        player = _Player(self, self.front.routes.body_timeout(target))
        self.player = player
        if player.run():
            self.finished()

    def finished(self) -> None:
        """The answer in flight ended (from a timer): on to the next request."""
        self.player = None
        if self.closed:
            return
        self._arm()
        self._pump()


class _Player(StepPlayer):
    """Plays one answer's steps on the connection (:class:`~callproof.emulator.player.
    StepPlayer`): HTTP/1.1 framing, each turn of play sent in one write."""

    __slots__ = ("chunked", "front", "out", "protocol", "transport")

    def __init__(self, protocol: FastProtocol, answer: Answer) -> None:
        super().__init__(answer)
        self.protocol = protocol
        self.front = protocol.front
        assert protocol.transport is not None
        self.transport = protocol.transport
        self.chunked = "content-length" not in answer.headers
        #: bytes written during this turn of play, sent in one write when it ends
        self.out: list[bytes] = []

    def _head(self) -> bytes:
        answer = self.answer
        status = answer.status
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))]
        parts.extend(
            b"%s: %s\r\n" % (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in answer.headers.items()
        )
        parts.append(b"date: %s\r\n" % self.front.date())
        if self.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        if not self.protocol.keep_alive and "connection" not in answer.headers:
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def _framed(self, data: bytes) -> bytes:
        if not self.chunked or not data:
            return data
        return b"%x\r\n%s\r\n" % (len(data), data)

    def _push(self) -> None:
        """Send what this turn of play wrote, in one write (the same bytes at the same time:
        a turn runs without yielding to the loop)."""
        out = self.out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        if not self.transport.is_closing():
            self.transport.write(data)

    def run(self) -> bool:
        """Play on from the current step; True when the answer ended right now."""
        try:
            return super().run()
        finally:
            self._push()

    # -- StepPlayer's transport hooks ----------------------------------------------------------

    def _send_head(self) -> None:
        self.out.append(self._head())

    def _data(self, data: bytes) -> None:
        self.out.append(self._framed(data))

    def _last(self, data: bytes) -> None:
        end = b"0\r\n\r\n" if self.chunked else b""
        self.out.append(self._framed(data) + end)

    def _break(self, step: Cut | Reset) -> None:
        if isinstance(step, Cut):
            self._start()
            self._close()
            self._push()
            self.transport.close()
        else:
            self._reset(asyncio.get_running_loop().time() + _DRAIN_S)

    def _flush_out(self) -> None:
        self._push()

    def _after_turn(self, ended: bool) -> None:
        if ended:
            self.protocol.finished()

    def _hung(self) -> set[StepPlayer]:
        return self.front.hung

    def _closing(self) -> bool:
        return self.front.routes.closing.is_set()

    def _empty_503(self) -> None:
        self.answer.status, self.answer.headers = 503, {"connection": "close"}
        self.chunked = True
        self.protocol.keep_alive = False

    def _reset(self, deadline: float) -> None:
        self._push()  # what was sent before the reset goes first
        transport = self.transport
        loop = asyncio.get_running_loop()
        if transport.get_write_buffer_size() and loop.time() < deadline:
            self.timer = loop.call_later(_DRAIN_POLL_S, self._reset, deadline)
            return
        self.timer = None
        self._close()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                # linger on with a zero timeout: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
