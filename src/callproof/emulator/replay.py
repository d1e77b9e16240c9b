"""Replay of a capture over HTTP: ``callproof emulate --replay FILE``.

:func:`replay_app` is an ASGI app that answers every request with a capture's response: the
original status and headers, each body chunk at its original time, and the connection held
open where the original hung. Captures are written and read by :mod:`callproof.capture`; the
bytes are the scrubbed ones (:mod:`callproof.scrub_body`), which decode to the same outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from callproof.capture import read_capture
from callproof.errors import ConfigError

__all__ = ["replay_app"]

_HOP_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive"}
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def replay_app(
    path: Path, *, speed: float = 1.0
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app that answers every HTTP request with the captured response: the original
    status and headers, each body chunk at its original time (divided by ``speed``), and the
    connection held open where the original hung. ``callproof emulate --replay`` serves it."""
    cap = read_capture(path)
    if speed <= 0:
        raise ConfigError("replay speed must be positive")

    async def play(send: Send) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def at(t: float) -> None:
            delay = start + t / speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

        if cap.response is None:
            await asyncio.Event().wait()  # the original never answered
            return
        await at(float(cap.response["t"]))
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in cap.response["headers"]
            if k.lower() not in _HOP_HEADERS
        ]
        await send(
            {
                "type": "http.response.start",
                "status": int(cap.response["status"]),
                "headers": headers,
            }
        )
        for t, data in cap.chunks:
            await at(t)
            await send({"type": "http.response.body", "body": data, "more_body": True})
        if cap.eof:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await asyncio.Event().wait()  # the original stream hung here

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        while True:  # read the request body before answering
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        if message["type"] == "http.disconnect":
            return
        player = asyncio.create_task(play(send))

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            player.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await player
        except asyncio.CancelledError:
            if not watcher.done():  # cancelled from outside (server shutdown), not by the peer
                raise
        finally:
            watcher.cancel()
            player.cancel()

    return app
