"""callproof.h1 against real servers on loopback: keep-alive reuse at message boundaries only,
every way a response can end (framed, until close, cut short, reset, malformed), 1xx skipped,
back-pressure, cancellation, and the client's direct path (no ``AsyncClient.send``)."""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from callproof import h1
from callproof.client import Client
from callproof.conversation import Conversation, UserMessage
from callproof.errors import IncompleteStreamError, TransportError
from callproof.h1 import H1Transport
from callproof.transport import make_transport
from tests.client.conftest import make_target
from tests.client.test_transport import keepalive_server

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """A server running ``handler`` per connection; yields its base URL."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` on the loop (5 s at most) for states that have no event."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":", 1)[1]))
    return head


def answer(raw: bytes, *, then: str = "close") -> Handler:
    """A handler writing ``raw`` after the request, then closing (FIN) or resetting."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _read_request(reader)
            writer.write(raw)
            await writer.drain()
            if then == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()  # with a zero linger: an RST, not a FIN
                return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return handle


async def _post(transport: H1Transport, url: str) -> tuple[httpx.Response, bytes]:
    request = httpx.Request("POST", url, content=b"{}")
    response = await transport.handle_async_request(request)
    try:
        body = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
    finally:
        await response.aclose()
    return response, body


def test_the_real_network_transport_is_h1() -> None:
    assert isinstance(make_transport(False), H1Transport)


async def test_sequential_requests_reuse_one_connection() -> None:
    transport = H1Transport(verify=False)
    async with keepalive_server() as srv:
        for _ in range(3):
            response, body = await _post(transport, srv.url)
            assert (response.status_code, body) == (200, b"hello")
        assert (srv.connections, srv.requests) == (1, 3)
        assert (transport.in_use, transport.idle) == (0, 1)
        await transport.aclose()
        assert transport.idle == 0
        with pytest.raises(httpx.ConnectError, match="closed"):
            await _post(transport, srv.url)


async def test_concurrent_requests_never_queue() -> None:
    transport = H1Transport(verify=False)
    async with keepalive_server(held=True) as srv:
        tasks = [asyncio.create_task(_post(transport, srv.url)) for _ in range(5)]
        await until(lambda: srv.requests == 5)
        assert transport.in_use == 5
        srv.gate.set()
        assert [body for _, body in await asyncio.gather(*tasks)] == [b"hello"] * 5
        assert transport.idle == 5
        await transport.aclose()


async def test_a_body_closed_early_drops_its_connection() -> None:
    transport = H1Transport(verify=False)
    async with keepalive_server(held=True) as srv:
        response = await transport.handle_async_request(httpx.Request("POST", srv.url))
        await response.aclose()  # before the body's end: the connection cannot be reused
        assert (transport.in_use, transport.idle) == (0, 0)
        srv.gate.set()
        await _post(transport, srv.url)
        assert srv.connections == 2


async def test_idle_connections_over_the_cap_or_past_the_expiry_are_closed() -> None:
    capped = H1Transport(verify=False, max_idle=2)
    async with keepalive_server(held=True) as srv:
        tasks = [asyncio.create_task(_post(capped, srv.url)) for _ in range(4)]
        await until(lambda: srv.requests == 4)
        srv.gate.set()
        await asyncio.gather(*tasks)
        assert capped.idle == 2
    expired = H1Transport(verify=False, keepalive_expiry=0.0)
    async with keepalive_server() as srv:
        await _post(expired, srv.url)
        await asyncio.sleep(0.01)
        await _post(expired, srv.url)
        assert srv.connections == 2


async def test_a_body_until_the_connection_closes_is_complete_and_not_reused() -> None:
    transport = H1Transport(verify=False)
    async with serve(answer(b"HTTP/1.1 200 OK\r\n\r\nall of it")) as url:
        _, body = await _post(transport, url)
        assert body == b"all of it"
        assert transport.idle == 0


async def test_bytes_past_the_answer_make_the_connection_unusable() -> None:
    one = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

    async def twice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(one + b"HTTP/1.1 500 Nope\r\ncontent-length: 3\r\n\r\nbad")
        await writer.drain()
        await reader.read()

    transport = H1Transport(verify=False)
    async with serve(twice) as url:
        response, body = await _post(transport, url)
        assert (response.status_code, body) == (200, b"ok")
        assert list(response.headers.items()) == [("content-length", "2")]
        assert transport.idle == 0


async def test_informational_responses_are_skipped() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok"
    transport = H1Transport(verify=False)
    async with serve(answer(raw)) as url:
        response, body = await _post(transport, url)
        assert (response.status_code, body) == (201, b"ok")


@pytest.mark.parametrize(
    ("raw", "then", "error", "match"),
    [
        (b"", "close", httpx.RemoteProtocolError, "without sending a response"),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
            "close",
            httpx.RemoteProtocolError,
            "complete message body",
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
            "close",
            httpx.RemoteProtocolError,
            "complete message body",
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", "reset", httpx.ReadError, "reset"),
        (b"NOT HTTP AT ALL\r\n\r\n", "close", httpx.RemoteProtocolError, "malformed"),
    ],
)
async def test_every_broken_ending_keeps_httpx_names(
    raw: bytes, then: str, error: type[Exception], match: str
) -> None:
    transport = H1Transport(verify=False)
    async with serve(answer(raw, then=then)) as url:
        with pytest.raises(error, match=match):
            await _post(transport, url)
        assert (transport.in_use, transport.idle) == (0, 0)


async def test_connect_errors_keep_httpx_names() -> None:
    transport = H1Transport(verify=False)
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(httpx.ConnectError):
        await _post(transport, f"http://127.0.0.1:{port}")
    with pytest.raises(httpx.UnsupportedProtocol):
        await _post(transport, "ftp://127.0.0.1:1")
    bad = httpx.Request("POST", f"http://127.0.0.1:{port}", headers={"x-bad": "a\r\nb: c"})
    with pytest.raises(httpx.LocalProtocolError):
        await transport.handle_async_request(bad)


async def test_a_request_head_and_body_leave_in_one_write() -> None:
    reads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reads.append(await reader.read(65536))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async with serve(handle) as url:
        await _post(H1Transport(verify=False), url)
    assert len(reads) == 1
    assert reads[0].endswith(b"\r\n\r\n{}")


async def test_a_fast_sender_is_paused_and_taken_in_bounded_pieces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(h1, "HIGH_WATER", 1000)
    monkeypatch.setattr(h1, "TAKE_MAX", 5000)
    body = b"x" * 200_000
    raw = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    transport = H1Transport(verify=False)
    async with serve(answer(raw)) as url:
        response = await transport.handle_async_request(httpx.Request("POST", url))
        stream = response.stream
        assert isinstance(stream, h1.Body)
        connection = stream._connection
        assert connection is not None
        await stream.wait()
        assert connection.paused  # past the mark, nothing taken: the socket is not read
        got = bytearray()
        while (chunk := stream.take()) != b"":
            if chunk is None:
                await stream.wait()
            else:
                assert len(chunk) <= 5000  # what the decoder gets at once is bounded
                got += chunk
        await response.aclose()
        assert bytes(got) == body


async def test_a_request_cancelled_before_its_headers_closes_its_connection() -> None:
    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await reader.read()  # until the client goes

    transport = H1Transport(verify=False)
    async with serve(never_answers) as url:
        task = asyncio.create_task(_post(transport, url))
        await until(lambda: transport.in_use == 1)
        (connection,) = transport._busy
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (transport.in_use, transport.idle) == (0, 0)
        assert connection.transport is not None
        assert connection.transport.is_closing()


async def test_a_wait_with_a_delay_times_out() -> None:
    transport = H1Transport(verify=False)
    async with keepalive_server(held=True) as srv:
        response = await transport.handle_async_request(httpx.Request("POST", srv.url))
        stream = response.stream
        assert isinstance(stream, h1.Body)
        assert stream.take() == b"he"
        with pytest.raises(TimeoutError):
            await stream.wait(0.05)
        srv.gate.set()
        await stream.wait(5)
        assert stream.take() == b"llo"
        assert stream.take() == b""
        await response.aclose()
        assert transport.idle == 1
        with pytest.raises(httpx.StreamClosed):
            stream.take()


# -- the client's direct path ------------------------------------------------------------------

CONV = Conversation(messages=(UserMessage.text("hi"),))
SSE = (
    b'data: {"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,'
    b'"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)


def _sse_answer(body: bytes, extra: bytes = b"") -> Handler:
    raw = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        + extra
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await _read_request(reader)
                writer.write(raw)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return handle


async def test_the_client_hands_requests_straight_to_the_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_send(*args: object, **kwargs: object) -> None:
        raise AssertionError("AsyncClient.send was used")

    monkeypatch.setattr(httpx.AsyncClient, "send", no_send)
    async with serve(_sse_answer(SSE)) as url, Client() as client:
        target = make_target("openai-completions", base_url=url + "/v1")
        for _ in range(2):
            assert (await client.complete(target, CONV)).text == "hi"
        _, direct = client._http_for(target.endpoint.verify)
        assert direct is not None
        assert direct.idle == 1  # one connection, reused


async def test_an_injected_h1_transport_is_used_directly_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_send(*args: object, **kwargs: object) -> None:
        raise AssertionError("AsyncClient.send was used")

    monkeypatch.setattr(httpx.AsyncClient, "send", no_send)
    transport = H1Transport(verify=False)
    async with serve(_sse_answer(SSE)) as url, Client(transport=transport) as client:
        assert client.admission is None  # an injected transport: no gate unless given one
        target = make_target("openai-completions", base_url=url + "/v1")
        assert (await client.complete(target, CONV)).text == "hi"
        assert transport.idle == 1
    assert transport.idle == 0  # closed with the client


async def test_a_proxy_in_the_environment_keeps_send(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with serve(_sse_answer(SSE)) as url, Client() as client:
        target = make_target("openai-completions", base_url=url + "/v1")
        assert (await client.complete(target, CONV)).text == "hi"  # NO_PROXY honoured by httpx
        assert client._http_for(target.endpoint.verify)[1] is None


async def test_a_content_encoded_body_is_decoded_by_httpx() -> None:
    gzipped = _sse_answer(gzip.compress(SSE), b"content-encoding: gzip\r\n")
    async with serve(gzipped) as url, Client() as client:
        target = make_target("openai-completions", base_url=url + "/v1")
        assert (await client.complete(target, CONV)).text == "hi"


async def test_failures_through_the_direct_path_are_classified() -> None:
    cut = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 900\r\n\r\n"
    async with serve(answer(cut + SSE[:40])) as url, Client() as client:
        target = make_target("openai-completions", base_url=url + "/v1")
        with pytest.raises(IncompleteStreamError):
            await client.complete(target, CONV)
    async with serve(answer(b"garbage\r\n\r\n")) as url, Client() as client:
        target = make_target("openai-completions", base_url=url + "/v1")
        with pytest.raises(TransportError, match="broke the HTTP protocol"):
            await client.complete(target, CONV)
