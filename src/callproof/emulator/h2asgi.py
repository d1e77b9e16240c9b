"""A minimal ASGI adapter for one HTTP/2 stream of the h2c front (:mod:`.h2front`).

The h2c front serves the hot routes from their plans; every other stream (``/health``, 404s,
the other routes, a body past the limit) runs the emulator's ASGI app through
:class:`ASGICall`, which gives the app what hypercorn's h2 stack gave it, and no more:

* the scope: ``http_version`` ``"2"``, the method, ``path`` (percent-decoded), ``raw_path``
  and ``query_string`` split at ``?``, the headers with ``host`` first (from ``:authority``,
  hypercorn's order), ``scheme`` ``http``, ``client`` and ``server``, an empty ``state``, and
  the connection under :data:`~callproof.http_server.CONNECTION_EXTENSION` (the h2c protocol:
  ``reset``/``cut`` of this stream, as :class:`~callproof.http_server.Connection` under
  hypercorn);
* ``receive()``: the body as it arrives (``more_body`` on each piece, then an empty last one,
  as hypercorn sends it), each piece acknowledged to the client's flow control only when the
  app reads it (so a client can never make it buffer more than its stream window), then
  ``http.disconnect`` once the stream is over (answered, reset, or the connection gone);
* ``send()``: ``http.response.start`` is a HEADERS frame at once (names lowercased and values
  stripped, connection-specific headers dropped, ``date`` last, as hypercorn does),
  ``http.response.body`` DATA within the flow control windows, END_STREAM with the last
  (``more_body`` false); it waits while more than :data:`HIGH_WATER` bytes wait for a window.
  No body for HEAD, 1xx, 204 and 304. After the stream is gone, sends are dropped (hypercorn's
  behaviour; the routes see ``http.disconnect``).

An app that fails, or returns without finishing its answer, gets the hypercorn outcome: a 500
with an empty body when nothing was sent, else RST_STREAM(INTERNAL_ERROR) (a body cut short
must not look complete). The error is logged with its traceback, like hypercorn's "Error in
ASGI Framework".
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import h2.errors
from hpack import NeverIndexedHeaderTuple

from callproof.http_server import CONNECTION_EXTENSION

if TYPE_CHECKING:
    from callproof.emulator.h2stream import H2Stream

__all__ = ["HIGH_WATER", "ASGICall", "response_block"]

log = logging.getLogger("callproof.emulator.h2front")

#: Bytes of an app's answer that may wait for a flow control window before send() waits.
HIGH_WATER = 64 * 1024
#: Headers HTTP/2 forbids in a response (RFC 9113 §8.2.2).
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
#: Headers whose value is new in every answer.
_UNIQUE = frozenset({b"x-amzn-requestid", b"x-request-id"})


def response_block(
    status: int, headers: list[tuple[bytes, bytes]], date: bytes
) -> list[tuple[bytes, bytes]]:
    """A response's header block: ``:status``, the headers (lowercase names) less the
    connection-specific and pseudo ones, then ``date`` - the order hypercorn sends. A request
    id is sent never-indexed: each is new, and indexing it would only churn the HPACK table
    (and make every later lookup in it longer)."""
    block: list[tuple[bytes, bytes]] = [(b":status", b"%d" % status)]
    for name, value in headers:
        if name in _UNIQUE:
            block.append(NeverIndexedHeaderTuple(name, value))
        elif name not in _CONNECTION_SPECIFIC and name[:1] != b":":
            block.append((name, value))
    block.append((b"date", date))
    return block


class ASGICall:
    """One stream served by the ASGI app; see the module docstring."""

    def __init__(self, stream: H2Stream, chunks: list[bytes], *, ended: bool) -> None:
        self.stream = stream
        self.proto = stream.proto
        #: (piece, its flow-controlled size still to acknowledge): the pieces read so far are
        #: acknowledged already
        self.chunks: deque[tuple[bytes, int]] = deque((chunk, 0) for chunk in chunks)
        self.ended = ended
        self.final = False
        self.closed = False
        self.started = False
        self.complete = False
        self.status = 0
        self._waiter: asyncio.Future[None] | None = None
        path, _, query = stream.path.partition(b"?")
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"spec_version": "2.1", "version": "3.0"},
            "http_version": "2",
            "method": stream.method.decode("latin-1").upper(),
            "scheme": "http",
            "path": unquote(path.decode("latin-1")),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": stream.headers,
            "client": self.proto.client,
            "server": self.proto.server,
            "state": {},
            "extensions": {CONNECTION_EXTENSION: self.proto},
        }

    def start(self, app: Any) -> None:
        self.proto.side.spawn(self._run(app))

    # -- the stream's side ---------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed(self, data: bytes, size: int) -> None:
        self.chunks.append((data, size))
        self._wake()

    def end(self) -> None:
        self.ended = True
        self._wake()

    def gone(self) -> None:
        """The stream is over: the app sees ``http.disconnect``; unread pieces give their
        window back (the connection's, which other streams share)."""
        if self.closed:
            return
        self.closed = True
        unread = sum(size for _, size in self.chunks)
        self.chunks.clear()
        if unread:
            self.proto.conn.acknowledge_received_data(unread, self.stream.sid)
        self._wake()

    # -- ASGI ----------------------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        while True:
            if self.chunks:
                data, size = self.chunks.popleft()
                if size:
                    self.proto.conn.acknowledge_received_data(size, self.stream.sid)
                    self.proto.flush()
                return {"type": "http.request", "body": data, "more_body": True}
            if self.ended and not self.final:
                self.final = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.closed:
                return {"type": "http.disconnect"}
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        stream = self.stream
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.status = int(message["status"])
            items = [
                (bytes(name).lower().strip(), bytes(value).strip())
                for name, value in message.get("headers", [])
            ]
            stream.head(response_block(self.status, items, self.proto.side.date()))
            self.proto.flush()
        elif kind == "http.response.body":
            if not self.started or self.complete:
                raise RuntimeError("http.response.body outside a response")
            body = bytes(message.get("body", b""))
            more = bool(message.get("more_body", False))
            status = self.status
            if stream.method == b"HEAD" or 100 <= status < 200 or status in (204, 304):
                body = b""
            self.complete = not more
            if body or not more:
                stream.write(body, end=not more)
                self.proto.flush()
            waiter = stream.wait_sent() if len(stream.outbox) > HIGH_WATER else None
            if waiter is not None:
                await waiter

    async def _run(self, app: Any) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except Exception:
            log.exception("error in the ASGI app serving %s", self.scope["path"][:200])
            self._abort()
        else:
            if not self.complete:
                self._abort()

    def _abort(self) -> None:
        """The app failed or left its answer unfinished."""
        stream = self.stream
        if stream.done:
            return
        if not self.started:
            self.started = self.complete = True
            empty = [(b"content-length", b"0")]
            stream.head(response_block(500, empty, self.proto.side.date()), end=True)
        elif not self.complete:
            stream.reset_after_sent(h2.errors.ErrorCodes.INTERNAL_ERROR)
        self.proto.flush()
