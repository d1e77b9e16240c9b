"""Errors are typed at one boundary, carry context and the partial response; closing a stream
closes its connection (a real server sees the disconnect)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest

from callproof.client import Client
from callproof.conversation import Conversation, UserMessage
from callproof.dialects.base import WireRequest
from callproof.errors import (
    ChecksumMismatch,
    HTTPStatusError,
    IncompleteStreamError,
    InvalidEventError,
    ProtocolError,
    TransportError,
)
from callproof.targets import Timeouts
from tests.client.conftest import make_target
from tests.client.rawserver import Script, raw_server
from tests.client.streams import bedrock_frames, chat_frames

CONV = Conversation(messages=(UserMessage.text("hi"),))
ES = {"content-type": "application/vnd.amazon.eventstream", "x-amzn-requestid": "rid-1"}
T = Timeouts(first_event=1.0, idle=1.0, deadline=5.0)


async def test_breaking_out_closes_the_connection() -> None:
    frames = bedrock_frames(" ".join(["w"] * 20))
    script = Script(ES, [(0, frames[0]), (0, frames[1])], then="hang")
    async with raw_server(script) as (url, seen):
        target = make_target("bedrock-converse-stream", base_url=url)
        async with Client() as client:
            async with client.stream(target, CONV, timeouts=T) as stream:
                async for _event in stream:
                    break
            await asyncio.wait_for(seen.disconnected.wait(), 2.0)
            assert seen.disconnected.is_set()
            assert stream.response.timings.first_event_s is not None


async def test_aclose_midstream_closes_the_connection() -> None:
    frames = chat_frames()
    async with (
        raw_server(
            Script({"content-type": "text/event-stream"}, [(0, frames[0])], then="hang")
        ) as (url, seen),
        Client() as client,
        client.stream(
            make_target("openai-completions", base_url=url + "/v1"), CONV, timeouts=T
        ) as s,
    ):
        await anext(s)
        await s.aclose()
        await asyncio.wait_for(seen.disconnected.wait(), 2.0)


async def test_task_cancellation_closes_the_connection() -> None:
    async with raw_server(Script(ES, [], then="hang")) as (url, seen), Client() as client:
        task = asyncio.create_task(
            client.complete(
                make_target("bedrock-converse-stream", base_url=url),
                CONV,
                timeouts=Timeouts(first_event=30, idle=30, deadline=30),
            )
        )
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(seen.disconnected.wait(), 2.0)


async def test_connection_dropped_mid_body_is_incomplete_stream() -> None:
    frames = bedrock_frames()
    script = Script(ES, [(0, frames[0]), (0, frames[1][:10])], then="close")
    async with raw_server(script) as (url, _seen), Client() as client:
        with pytest.raises(IncompleteStreamError) as info:
            await client.complete(
                make_target("bedrock-converse-stream", base_url=url), CONV, timeouts=T
            )
    err = info.value
    assert err.outcome == "incomplete_stream"
    assert err.request_id == "rid-1"
    assert err.response is not None
    assert err.response.timings.first_event_s is not None
    assert isinstance(err.__cause__, httpx.RemoteProtocolError)


async def test_clean_end_without_terminal_event_is_incomplete() -> None:
    frames = bedrock_frames()
    script = Script(ES, [(0, f) for f in frames[:3]])
    async with raw_server(script) as (url, _), Client() as client:
        with pytest.raises(IncompleteStreamError):
            await client.complete(
                make_target("bedrock-converse-stream", base_url=url), CONV, timeouts=T
            )


async def test_corrupt_crc_is_a_protocol_error() -> None:
    frames = bedrock_frames()
    bad = bytearray(frames[1])
    bad[-1] ^= 0xFF
    script = Script(ES, [(0, frames[0]), (0, bytes(bad))])
    async with raw_server(script) as (url, _), Client() as client:
        with pytest.raises(ProtocolError) as info:
            await client.complete(
                make_target("bedrock-converse-stream", base_url=url), CONV, timeouts=T
            )
    assert isinstance(info.value, ChecksumMismatch)
    assert info.value.outcome == "protocol_error"
    assert info.value.target == "t-bedrock-converse-stream"


async def test_connection_refused_is_a_transport_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    async with Client() as client:
        with pytest.raises(TransportError) as info:
            await client.complete(
                make_target("openai-completions", base_url=f"http://127.0.0.1:{port}/v1"),
                CONV,
                timeouts=T,
            )
    assert info.value.outcome == "transport_error"
    assert info.value.retryable
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert info.value.response is not None
    assert info.value.response.timings.headers_s is None


async def test_tls_failure_is_a_transport_error() -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(plain, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Client() as client:
            target = make_target("bedrock-converse-stream", base_url=f"https://127.0.0.1:{port}")
            with pytest.raises(TransportError, match=r"TLS|SSL"):
                await client.complete(target, CONV, timeouts=T)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("api", "headers", "body", "etype", "retry_after"),
    [
        (
            "bedrock-converse-stream",
            {
                "x-amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
                "x-amzn-requestid": "req-429",
                "Retry-After": "2",
            },
            b'{"message":"Too many requests, please wait before trying again."}',
            "ThrottlingException",
            2.0,
        ),
        (
            "openai-completions",
            {"x-request-id": "req-429", "retry-after": "3"},
            b'{"error":{"code":429,"message":"Rate limit exceeded","type":"rate_limit_exceeded"}}',
            None,
            3.0,
        ),
    ],
)
async def test_http_errors_are_typed(
    api: str, headers: dict[str, str], body: bytes, etype: str | None, retry_after: float
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, headers={"content-type": "application/json", **headers}, content=body
        )

    async with Client(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(HTTPStatusError) as info:
            async with client.stream(make_target(api), CONV, timeouts=T):
                pytest.fail("a 429 must raise on entry")
    err = info.value
    assert err.status == 429
    assert err.outcome == "http_error"
    assert err.retryable
    assert err.retry_after_s == retry_after
    assert err.request_id == "req-429"
    if etype:
        assert err.error_type == etype
    assert err.to_dict()["status"] == 429
    assert err.response is not None
    assert err.response.timings.headers_s is not None
    assert err.target == f"t-{api}"
    assert err.model == "test-model"


async def test_injected_http_client_is_left_open() -> None:
    frames = chat_frames("ok")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=b"".join(frames)
        )

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with Client(http=http) as client:
        resp = await client.complete(make_target("openai-completions"), CONV)
    assert resp.text.strip() == "ok"
    assert not http.is_closed
    await http.aclose()


class _BuggyDecoder:
    keepalives = 0
    record_raw = True

    def feed(self, data: bytes) -> list[Any]:
        raise KeyError("delta")

    def close(self) -> list[Any]:
        return []

    def raw_items(self) -> list[Any]:
        return []


class _BuggyDialect:
    name = "openai-completions"
    streaming = True

    def encode_request(self, model: str, conversation: Any, *, extra: Any = None) -> WireRequest:
        return WireRequest("POST", "/x", b"{}")

    def stream_decoder(self) -> _BuggyDecoder:
        return _BuggyDecoder()

    def decode_error(self, status: int, headers: Any, body: bytes) -> HTTPStatusError:
        return HTTPStatusError("bad", status=status)


async def test_a_decoder_bug_is_still_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import callproof.client

    monkeypatch.setattr(callproof.client, "get_dialect", lambda api: _BuggyDialect())

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"data: {}\n\n")

    async with Client(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(InvalidEventError) as info:
            await client.complete(make_target("openai-completions"), CONV)
    assert isinstance(info.value.__cause__, KeyError)
    assert info.value.outcome == "protocol_error"
    assert info.value.target == "t-openai-completions"


async def test_an_error_body_that_never_ends_is_still_the_http_error() -> None:
    from tests.client.conftest import FAST, Paced

    body = Paced([(0, b'{"message":"Too many')], hang=True)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            503,
            headers={"x-amzn-ErrorType": "ServiceUnavailableException:http://x/"},
            stream=body,
        )

    async with Client(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(HTTPStatusError) as info:
            await client.complete(make_target("bedrock-converse-stream"), CONV, timeouts=FAST)
    assert info.value.status == 503
    assert info.value.error_type == "ServiceUnavailableException"
    assert info.value.outcome == "http_error"
    assert body.closed


async def test_a_missing_ca_bundle_is_a_config_error(tmp_path: Any) -> None:
    from dataclasses import replace

    from callproof.errors import ConfigError

    target = make_target("openai-completions", base_url="https://127.0.0.1:9/v1")
    target = replace(target, endpoint=replace(target.endpoint, verify=str(tmp_path / "no.pem")))
    async with Client() as client:
        with pytest.raises(ConfigError, match="CA bundle"):
            await client.complete(target, CONV)


async def test_raw_units_are_built_only_for_a_capture(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import callproof.dialects.bedrock_events as be

    built: list[object] = []
    original = be.frame_dict

    def counting(*args: Any) -> dict[str, Any]:
        built.append(args)
        return original(*args)

    monkeypatch.setattr(be, "frame_dict", counting)
    frames = bedrock_frames()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=ES, content=b"".join(frames))

    async with Client(transport=httpx.MockTransport(handler)) as client:
        plain = await client.complete(make_target("bedrock-converse-stream"), CONV, timeouts=T)
        assert built == []  # nobody records them: no work per frame
        path = tmp_path / "c.jsonl"
        captured = await client.complete(
            make_target("bedrock-converse-stream"), CONV, timeouts=T, capture=path
        )
    assert len(built) == len(frames)
    assert plain.text == captured.text
    assert path.read_text().count('"type":"raw"') == len(frames)


@pytest.mark.parametrize("api", ["bedrock-converse-stream", "openai-completions"])
async def test_a_body_held_open_after_the_terminal_event_is_still_a_finished_answer(
    api: str,
) -> None:
    # The whole answer, terminal event included, then the server never ends the body (a
    # provider bug): the answer is complete, so it is not a stall, and the connection is closed.
    if api == "bedrock-converse-stream":
        frames, headers, base = bedrock_frames("It is 22 degrees."), ES, ""
    else:
        frames, headers, base = chat_frames(), {"content-type": "text/event-stream"}, "/v1"
    script = Script(headers, [(0, f) for f in frames], then="hang")
    async with raw_server(script) as (url, seen), Client() as client:
        target = make_target(api, base_url=url + base)
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await client.complete(
            target, CONV, timeouts=Timeouts(first_event=5, idle=3, deadline=10)
        )
        assert loop.time() - started < 2.0  # the grace period, not the 3 s idle timeout
        assert response.stop_reason in ("end_turn", "tool_use")
        assert response.text or response.tool_calls
        assert response.timings.total_s is not None
        assert response.timings.total_s < 0.5  # measured at the terminal event
        await asyncio.wait_for(seen.disconnected.wait(), 2.0)
