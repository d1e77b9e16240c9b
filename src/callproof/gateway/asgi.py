"""The gateway's lean ASGI pieces: a streaming response without a task group, and an app that
sends the fronts' POST routes straight to their handlers.

Both exist for CPU per stream (bench/gateway.py, part ``load``). Starlette's
``StreamingResponse`` runs the body and a disconnect listener in an anyio task group on a
server that speaks ASGI below 2.4 (hypercorn says 2.1), with a cancel scope per response;
:class:`StreamBody` does the same job with one plain asyncio task. Starlette's middleware and
router (two exception middlewares, a regex per route) run on every request;
:class:`GatewayApp` skips them for ``POST /model/...``, ``POST /v1/chat/completions`` and
``POST /v1/responses``, whose handlers answer every error themselves (a bug is a 500), and
leaves everything else (``/healthz``, ``/metrics``, wrong methods, unknown paths) to Starlette.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["GatewayApp", "StreamBody"]

_Scope = dict[str, Any]
_Receive = Callable[[], Awaitable[dict[str, Any]]]
_Send = Callable[[dict[str, Any]], Awaitable[None]]


class StreamBody:
    """An ASGI response streaming ``chunks`` (each sent as it comes).

    When the client goes away (``http.disconnect``) while the body is still streaming, the
    serving task is cancelled, so the body generator's ``finally`` runs at once (the gateway's
    :func:`~callproof.gateway.core.stream_wire` then stops the upstream) and the response ends
    quietly, as Starlette's does.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        headers: Mapping[str, str],
        media_type: str,
        status_code: int = 200,
    ) -> None:
        self.chunks = chunks
        self.status_code = status_code
        raw = [(b"content-type", media_type.encode("latin-1"))]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.raw_headers = raw

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        streaming = True
        gone = False

        async def watch() -> None:
            nonlocal gone
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if streaming:
                        gone = True
                        task.cancel()
                    return

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            streaming = False
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()  # our own cancel: the client went away, nothing to answer
        finally:
            streaming = False
            watcher.cancel()
            aclose = getattr(self.chunks, "aclose", None)
            if aclose is not None:
                await aclose()


#: A front's request handler: a Starlette response or a :class:`StreamBody`.
Handler = Callable[[Request], Awaitable[Response | StreamBody]]


class GatewayApp(Starlette):
    """Starlette with the fronts' hot POST routes dispatched directly (module docstring)."""

    def __init__(
        self,
        *args: Any,
        fast: Mapping[str, Handler] | None = None,
        fast_prefix: tuple[str, Handler] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        #: Exact paths served directly (``POST`` only).
        self.fast = dict(fast or {})
        #: A path prefix served directly (``POST`` only): the Bedrock front's ``/model/``.
        self.fast_prefix = fast_prefix

    def _handler(self, path: str) -> Handler | None:
        found = self.fast.get(path)
        if found is None and self.fast_prefix is not None and path.startswith(self.fast_prefix[0]):
            found = self.fast_prefix[1]
        return found

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:  # type: ignore[override]
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            handler = self._handler(scope["path"])
            if handler is not None:
                scope["app"] = self
                response = await handler(Request(scope, receive))
                await response(scope, receive, send)  # type: ignore[arg-type]
                return
        await super().__call__(scope, receive, send)  # type: ignore[arg-type]
