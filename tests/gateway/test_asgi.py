"""The gateway's lean ASGI pieces (callproof.gateway.asgi), driven as an ASGI server would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from callproof.gateway.asgi import GatewayApp, StreamBody


def _scope(method: str = "POST", path: str = "/model/m/converse-stream") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.1"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "state": {},
        "extensions": {},
    }


class _Peer:
    """The server side of one request: what the app sent, and a disconnect on demand."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


async def test_stream_body_sends_headers_chunks_and_the_end() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"one"
        await asyncio.sleep(0)
        yield b"two"

    peer = _Peer()
    body = StreamBody(chunks(), headers={"X-Callproof-Attempts": "1"}, media_type="text/x")
    await body(_scope(), peer.receive, peer.send)
    start, *rest = peer.sent
    assert start["type"] == "http.response.start"
    assert start["status"] == 200
    assert (b"content-type", b"text/x") in start["headers"]
    assert (b"x-callproof-attempts", b"1") in start["headers"]
    assert [m["body"] for m in rest] == [b"one", b"two", b""]
    assert [m["more_body"] for m in rest] == [True, True, False]


async def test_a_disconnect_mid_stream_stops_the_body_and_ends_quietly() -> None:
    peer = _Peer()
    held = asyncio.Event()
    closed: list[str] = []

    async def chunks() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            held.set()
            await asyncio.Event().wait()  # an upstream that never sends again
            yield b"never"
        finally:
            closed.append("finally")  # where stream_wire stops the upstream

    body = StreamBody(chunks(), headers={}, media_type="text/x")
    serving = asyncio.ensure_future(body(_scope(), peer.receive, peer.send))
    await held.wait()
    await peer.inbox.put({"type": "http.disconnect"})
    async with asyncio.timeout(10):
        await serving  # returns (no CancelledError escapes to the server)
    assert closed == ["finally"]
    assert [m.get("body") for m in peer.sent[1:]] == [b"first"]
    assert not serving.cancelled()
    assert serving.cancelling() == 0  # our own cancel was taken back


async def test_a_disconnect_during_the_last_send_cancels_nothing() -> None:
    peer = _Peer()
    plain_send = peer.send

    async def send(message: dict[str, Any]) -> None:
        await plain_send(message)
        if message.get("more_body") is False:  # the client goes right after the end
            await peer.inbox.put({"type": "http.disconnect"})
            for _ in range(3):
                await asyncio.sleep(0)  # the watcher sees it now

    async def chunks() -> AsyncIterator[bytes]:
        yield b"all"

    body = StreamBody(chunks(), headers={}, media_type="text/x")
    serving = asyncio.ensure_future(body(_scope(), peer.receive, send))
    async with asyncio.timeout(10):
        await serving
    assert serving.cancelling() == 0
    assert peer.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_the_app_serves_hot_posts_directly_and_the_rest_through_starlette() -> None:
    seen: list[str] = []

    async def fast(request: Request) -> Response:
        seen.append(f"fast {request.url.path} {request.app is app}")
        return PlainTextResponse("fast")

    async def routed(request: Request) -> Response:
        seen.append(f"routed {request.method}")
        return PlainTextResponse("routed")

    app = GatewayApp(
        routes=[
            Route("/model/{rest:path}", routed, methods=["GET", "POST"]),
            Route("/v1/chat/completions", routed, methods=["POST"]),
        ],
        fast={"/v1/chat/completions": fast},
        fast_prefix=("/model/", fast),
    )
    for method, path in [
        ("POST", "/model/m/converse-stream"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/model/m/converse-stream"),
    ]:
        peer = _Peer()
        await app(_scope(method, path), peer.receive, peer.send)
        assert peer.sent[0]["status"] == 200
    peer = _Peer()
    await app(_scope("POST", "/elsewhere"), peer.receive, peer.send)
    assert peer.sent[0]["status"] == 404  # Starlette's own answer
    assert seen == [
        "fast /model/m/converse-stream True",
        "fast /v1/chat/completions True",
        "routed GET",
    ]
