"""An ASGI response that plays a list of steps with their timing, and notices disconnects.

Public API (stable; the Bedrock and OpenAI routes both build on it):

* Steps: :class:`Headers` (send the status line and headers now), :class:`Send` ``(data,
  delay=0.0)`` (wait ``delay`` seconds, then send ``data``), :class:`Sleep` ``(seconds)``,
  :class:`Hang` (hold the connection open sending nothing until the client disconnects or the
  server stops; the worker is free meanwhile, since it only awaits), :class:`Cut` (end the
  answer mid-body: HTTP/1.1 closes the connection, HTTP/2 resets the stream), :class:`Reset`
  (HTTP/1.1 a real TCP reset, SO_LINGER 0; HTTP/2 RST_STREAM, or a TCP reset with
  ``whole=True``), :class:`Trickle` ``(bytes_per_s)`` (later sends go out at that rate).
  Cut and Reset use the server's :class:`~callproof.http_server.Connection` from the ASGI scope;
  without one (``httpx.ASGITransport``) the body just stops without its end.
* :class:`StepResponse` ``(steps, *, status=200, headers=None, media_type=None,
  closing=None, on_close=None)``: headers go out at the first :class:`Headers` or
  :class:`Send` step (so ``[Hang()]`` hangs *before* headers, ``[Headers(), Hang()]`` after);
  the body ends when the steps run out. ``steps`` may be a lazy iterable. A watcher task reads
  ``http.disconnect`` and cancels the playback at once; ``closing`` (a ``threading.Event``)
  ends hangs when the server stops (a request still waiting for headers then gets an empty
  503); ``on_close`` runs exactly once at the end (slot release).
  Consecutive zero-delay sends are coalesced into one write; when nothing waits at all (a list
  of headers and zero-delay sends) the whole body goes in one message, with no watcher task.
* :func:`instant_body` ``(steps)``: that whole body, or None when something waits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

import anyio
from starlette.types import Message, Receive, Scope
from starlette.types import Send as ASGISend

from callproof.http_server import CONNECTION_EXTENSION

__all__ = [
    "Cut",
    "Hang",
    "Headers",
    "Reset",
    "Send",
    "Sleep",
    "Step",
    "StepResponse",
    "Trickle",
    "instant_body",
]


@dataclass(frozen=True, slots=True)
class Headers:
    """Send the status line and headers now."""


@dataclass(frozen=True, slots=True)
class Send:
    """Wait ``delay`` seconds, then send ``data``."""

    data: bytes
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Hang:
    """Send nothing more until the client goes away (or the server stops)."""


@dataclass(frozen=True, slots=True)
class Cut:
    """End the answer here, mid-body (a FIN under HTTP/1.1, RST_STREAM under HTTP/2)."""


@dataclass(frozen=True, slots=True)
class Reset:
    """A reset: TCP RST under HTTP/1.1 (and under HTTP/2 with ``whole``), else RST_STREAM."""

    whole: bool = False


@dataclass(frozen=True, slots=True)
class Trickle:
    """From here on, sends go out at ``bytes_per_s`` (in pieces of about a tenth of that)."""

    bytes_per_s: int


Step: TypeAlias = Headers | Send | Sleep | Hang | Cut | Reset | Trickle

_POLL_S = 0.2


def instant_body(steps: Iterable[Step]) -> bytes | None:
    """The whole body when ``steps`` (a list) only send at once: headers and zero-delay sends
    (and zero sleeps), no wait, hang, cut or rate. None otherwise (or for a lazy iterable)."""
    if not isinstance(steps, list):
        return None
    parts: list[bytes] = []
    for step in steps:
        if isinstance(step, Send):
            if step.delay > 0:
                return None
            parts.append(step.data)
        elif isinstance(step, Sleep):
            if step.seconds > 0:
                return None
        elif not isinstance(step, Headers):
            return None
    return b"".join(parts)


class StepResponse:
    """Plays ``steps``; see the module docstring."""

    def __init__(
        self,
        steps: Iterable[Step],
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        closing: threading.Event | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.steps = steps
        self.status = status
        self.headers = dict(headers or {})
        if media_type is not None:
            self.headers.setdefault("content-type", media_type)
        self.closing = closing
        self.on_close = on_close
        self._started = False
        self._scope: Scope = {}
        self._rate = 0
        #: set when the client went away before the steps ran out
        self.disconnected = False

    async def __call__(self, scope: Scope, receive: Receive, send: ASGISend) -> None:
        self._scope = scope
        body = instant_body(self.steps)
        if body is not None:
            # nothing waits: no watcher, no task group; the whole body in one message
            try:
                await self._start(send)
                await send({"type": "http.response.body", "body": body, "more_body": False})
            except OSError:
                self.disconnected = True
            finally:
                if self.on_close is not None:
                    callback, self.on_close = self.on_close, None
                    callback()
            return
        try:
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    while True:
                        message: Message = await receive()
                        if message["type"] == "http.disconnect":
                            self.disconnected = True
                            tg.cancel_scope.cancel()
                            return

                tg.start_soon(watch)
                try:
                    await self._play(send)
                except OSError:
                    self.disconnected = True
                tg.cancel_scope.cancel()
        finally:
            if self.on_close is not None:
                callback, self.on_close = self.on_close, None
                callback()

    async def _start(self, send: ASGISend) -> None:
        if self._started:
            return
        self._started = True
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": raw})

    async def _hang(self) -> None:
        # a threading.Event (set from the thread that stops the server) cannot be awaited
        while self.closing is None or not self.closing.is_set():  # noqa: ASYNC110
            await anyio.sleep(_POLL_S if self.closing is not None else 3600)

    async def _write(self, send: ASGISend, data: bytes) -> None:
        if not self._rate:
            await send({"type": "http.response.body", "body": data, "more_body": True})
            return
        size = max(1, self._rate // 10)
        for i in range(0, len(data), size):
            piece = data[i : i + size]
            await anyio.sleep(len(piece) / self._rate)  # before: the last byte is late too
            await send({"type": "http.response.body", "body": piece, "more_body": True})

    async def _end_abruptly(self, step: Cut | Reset) -> None:
        connection = self._scope.get("extensions", {}).get(CONNECTION_EXTENSION)
        if connection is None:
            return
        if isinstance(step, Reset):
            await connection.reset(self._scope, whole=step.whole)
        else:
            await connection.cut(self._scope)

    async def _play(self, send: ASGISend) -> None:
        pending: list[bytes] = []

        async def flush() -> None:
            if pending:
                await self._start(send)
                data = b"".join(pending)
                pending.clear()
                await self._write(send, data)

        for step in self.steps:
            if isinstance(step, Send):
                if step.delay > 0:
                    await flush()
                    await self._start(send)
                    await anyio.sleep(step.delay)
                pending.append(step.data)
                continue
            await flush()
            if isinstance(step, Cut | Reset):
                if isinstance(step, Cut):
                    await self._start(send)
                await self._end_abruptly(step)
                return  # no end of body: the answer is cut
            if isinstance(step, Trickle):
                self._rate = step.bytes_per_s
            elif isinstance(step, Headers):
                await self._start(send)
            elif isinstance(step, Sleep):
                await anyio.sleep(step.seconds)
            else:
                await self._hang()
                if not self._started:
                    # the server is stopping while this request still waits for headers
                    self.status, self.headers = 503, {"connection": "close"}
                    break
        await flush()
        await self._start(send)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
