"""The transport seam (callproof.transport) against a real keep-alive server on loopback; the
free list's own behaviour is pinned in test_h1.py, which shares :func:`keepalive_server`."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from callproof.h1 import H1Transport
from callproof.transport import make_transport, raise_fd_limit


@dataclass
class Server:
    url: str = ""
    connections: int = 0
    requests: int = 0
    open_now: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


@asynccontextmanager
async def keepalive_server(*, held: bool = False) -> AsyncIterator[Server]:
    """HTTP/1.1 with keep-alive: each request gets a 5-byte body. ``held``: the body's end
    waits for ``server.gate``, so requests stay in flight together."""
    srv = Server()
    if not held:
        srv.gate.set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        srv.connections += 1
        srv.open_now += 1
        srv.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                srv.requests += 1
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":", 1)[1]))
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhe\r\n")
                await writer.drain()
                await srv.gate.wait()
                writer.write(b"3\r\nllo\r\n0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            srv.open_now -= 1
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    srv.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield srv
    finally:
        for writer in srv.writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def _get(http: httpx.AsyncClient, url: str) -> bytes:
    async with http.stream("POST", url, content=b"{}") as resp:
        return await resp.aread()


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    transport = H1Transport(verify=False)
    async with keepalive_server() as srv, httpx.AsyncClient(transport=transport) as http:
        assert await _get(http, srv.url) == b"hello"
        assert transport.idle == 1
        for writer in srv.writers:
            writer.close()
        for _ in range(200):
            if srv.open_now == 0:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert await _get(http, srv.url) == b"hello"
        assert srv.connections == 2


async def test_close_closes_every_connection_and_refuses_more() -> None:
    transport = H1Transport(verify=False)
    async with keepalive_server() as srv:
        http = httpx.AsyncClient(transport=transport)
        await asyncio.gather(*(_get(http, srv.url) for _ in range(4)))
        await http.aclose()
        for _ in range(200):
            if srv.open_now == 0:
                break
            await asyncio.sleep(0.01)
        assert srv.open_now == 0
        with pytest.raises(RuntimeError):  # httpx: the client has been closed
            await _get(http, srv.url)
        with pytest.raises(httpx.ConnectError, match="closed"):
            await transport.handle_async_request(httpx.Request("GET", srv.url))


async def test_errors_keep_httpx_names() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with httpx.AsyncClient(transport=make_transport(False)) as http:
        with pytest.raises(httpx.ConnectError):
            await _get(http, f"http://127.0.0.1:{port}/")
        with pytest.raises(httpx.UnsupportedProtocol):
            await http.get("ftp://127.0.0.1/")


def test_raise_fd_limit_never_lowers() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert raise_fd_limit(1) == soft
    assert raise_fd_limit(soft) == soft
