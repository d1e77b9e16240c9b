"""The free-list transport (callproof.transport) against a real keep-alive server on loopback:
connections are reused, never queued, dropped when they cannot be reused, and closed."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpcore
import httpx
import pytest

from callproof.transport import (
    COALESCE_MAX_BYTES,
    CoalescingBackend,
    CoalescingStream,
    FreeListTransport,
    make_transport,
    raise_fd_limit,
)


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


async def test_sequential_requests_reuse_one_connection() -> None:
    transport = FreeListTransport(verify=False)
    async with keepalive_server() as srv, httpx.AsyncClient(transport=transport) as http:
        bodies = [await _get(http, srv.url) for _ in range(5)]
        assert bodies == [b"hello"] * 5
        assert srv.connections == 1
        assert srv.requests == 5
        assert (transport.pool.in_use, transport.pool.idle) == (0, 1)


async def test_concurrent_requests_never_queue_then_reuse() -> None:
    transport = FreeListTransport(verify=False)
    async with keepalive_server(held=True) as srv, httpx.AsyncClient(transport=transport) as http:
        tasks = [asyncio.create_task(_get(http, srv.url)) for _ in range(50)]
        for _ in range(500):  # every request in flight at once: one connection each
            if srv.requests == 50:
                break
            await asyncio.sleep(0.01)
        assert srv.requests == 50
        assert transport.pool.in_use == 50
        srv.gate.set()
        assert await asyncio.gather(*tasks) == [b"hello"] * 50
        assert (transport.pool.in_use, transport.pool.idle) == (0, 50)
        await asyncio.gather(*(_get(http, srv.url) for _ in range(50)))
        assert srv.connections == 50  # the second wave reused the first wave's connections


async def test_a_body_closed_early_drops_its_connection() -> None:
    transport = FreeListTransport(verify=False)
    async with keepalive_server(held=True) as srv, httpx.AsyncClient(transport=transport) as http:
        async with http.stream("POST", srv.url, content=b"{}") as resp:
            assert await anext(resp.aiter_bytes()) == b"he"
        assert (transport.pool.in_use, transport.pool.idle) == (0, 0)
        srv.gate.set()
        assert await _get(http, srv.url) == b"hello"
        assert srv.connections == 2


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    transport = FreeListTransport(verify=False)
    async with keepalive_server() as srv, httpx.AsyncClient(transport=transport) as http:
        assert await _get(http, srv.url) == b"hello"
        for writer in srv.writers:
            writer.close()
        for _ in range(200):
            if srv.open_now == 0:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert await _get(http, srv.url) == b"hello"
        assert srv.connections == 2


async def test_idle_connections_over_the_cap_are_closed() -> None:
    transport = FreeListTransport(verify=False, max_idle=3)
    async with keepalive_server(held=True) as srv, httpx.AsyncClient(transport=transport) as http:
        tasks = [asyncio.create_task(_get(http, srv.url)) for _ in range(8)]
        for _ in range(500):
            if srv.requests == 8:
                break
            await asyncio.sleep(0.01)
        srv.gate.set()
        await asyncio.gather(*tasks)
        assert transport.pool.idle == 3
        for _ in range(200):
            if srv.open_now == 3:
                break
            await asyncio.sleep(0.01)
        assert srv.open_now == 3


async def test_idle_connections_past_the_expiry_are_closed() -> None:
    transport = FreeListTransport(verify=False, keepalive_expiry=0.0)
    async with keepalive_server() as srv, httpx.AsyncClient(transport=transport) as http:
        await _get(http, srv.url)
        await asyncio.sleep(0.01)
        await _get(http, srv.url)
        assert srv.connections == 2


async def test_close_closes_every_connection_and_refuses_more() -> None:
    transport = FreeListTransport(verify=False)
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


class _Recording(httpcore.AsyncNetworkStream):
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return b"HTTP/1.1 200 OK\r\n"

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.writes.append(buffer)

    async def aclose(self) -> None:
        self.closed = True

    def get_extra_info(self, info: str) -> object:
        return f"info:{info}"


async def test_a_request_head_and_body_leave_in_one_write() -> None:
    inner = _Recording()
    stream = CoalescingStream(inner)
    await stream.write(b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n")
    await stream.write(b"{}")
    await stream.write(b"")
    assert inner.writes == []  # held until the response is read
    assert await stream.read(100) == b"HTTP/1.1 200 OK\r\n"
    assert inner.writes == [b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}"]
    await stream.read(100)
    assert len(inner.writes) == 1  # nothing more to send
    big = b"x" * COALESCE_MAX_BYTES
    await stream.write(big)
    assert inner.writes[-1] == big  # a large body is not held whole
    assert stream.get_extra_info("is_readable") == "info:is_readable"
    await stream.write(b"dropped")
    await stream.aclose()
    assert inner.closed
    assert inner.writes[-1] == big


async def test_real_requests_go_through_the_coalescing_backend() -> None:
    transport = FreeListTransport(verify=False)
    async with keepalive_server() as srv, httpx.AsyncClient(transport=transport) as http:
        assert await _get(http, srv.url) == b"hello"
        (conn,) = transport.pool.connections
        assert isinstance(conn._connection._network_stream, CoalescingStream)  # type: ignore[attr-defined]


async def test_a_connect_cancelled_midway_closes_the_socket_it_opens() -> None:
    backend = CoalescingBackend()
    opened = asyncio.Event()
    release = asyncio.Event()
    inner = _Recording()

    async def slow_connect(*args: object, **kwargs: object) -> httpcore.AsyncNetworkStream:
        opened.set()
        await release.wait()  # the socket connects only after the caller gave up
        return inner

    backend._inner.connect_tcp = slow_connect  # type: ignore[method-assign]
    caller = asyncio.create_task(backend.connect_tcp("127.0.0.1", 9))
    await opened.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    for _ in range(100):
        if inner.closed:
            break
        await asyncio.sleep(0.01)
    assert inner.closed


async def test_a_connect_that_completes_is_wrapped() -> None:
    backend = CoalescingBackend()
    inner = _Recording()

    async def connect(*args: object, **kwargs: object) -> httpcore.AsyncNetworkStream:
        return inner

    backend._inner.connect_tcp = connect  # type: ignore[method-assign]
    stream = await backend.connect_tcp("127.0.0.1", 9)
    assert isinstance(stream, CoalescingStream)
    assert not inner.closed
