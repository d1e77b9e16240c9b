"""The h2c fast path (callproof.emulator.h2front) against HTTP/1.1 and against hypercorn's h2:
the same bytes for the same seed, the same fault outcomes, mixed connections (hot and ASGI
streams on one connection), flow control, limits, stop, and hostile input.

Sources: RFC 9113 §3.4 (prior knowledge), §5.1.2 (SETTINGS_MAX_CONCURRENT_STREAMS), §6.4
(RST_STREAM ends one stream), §6.8 (GOAWAY), §6.9 (flow control), §8.1 (RST_STREAM NO_ERROR after
a complete answer); CVE-2023-44487 ("rapid reset").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import httpx
import pytest

from callproof.emulator import EmulatorServer
from callproof.emulator.app import create_app
from callproof.emulator.fastfront import FastFront
from callproof.emulator.h2front import RESET_BURST, H2Protocol
from callproof.emulator.state import Limits
from callproof.http_server import HTTPServer, ServerLimits
from callproof.wire.eventstream import EventStreamDecoder

from .conftest import FIRST_TURN, TOOL_RESULT_TURN, WEATHER_TOOL_CONFIG

STREAM = "/model/amazon.nova-pro-v1%3A0/converse-stream"
CONVERSE = "/model/amazon.nova-pro-v1%3A0/converse"
CHAT = "/v1/chat/completions"
BODY = json.dumps({"messages": FIRST_TURN}).encode()
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@pytest.fixture(scope="module")
def trio() -> Iterator[tuple[EmulatorServer, EmulatorServer, EmulatorServer]]:
    """The same emulator three times, same seed: the h2c front (HTTP/2 requests), the fast
    front (HTTP/1.1 requests), and hypercorn alone (HTTP/2 requests, the old h2 path)."""
    with (
        EmulatorServer(preset="healthy", seed=4321) as h2front,
        EmulatorServer(preset="healthy", seed=4321) as h1front,
        EmulatorServer(preset="healthy", seed=4321, fast=False) as hypercorn,
    ):
        yield h2front, h1front, hypercorn


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The server's log; a test using it fails on any traceback or error logged."""
    caplog.set_level(logging.WARNING)
    yield caplog
    errors = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def post(url: str, path: str, body: bytes, headers: dict[str, str], *, h2: bool) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(http1=not h2, http2=h2, base_url=url, timeout=30) as client:
            response = await client.post(path, content=body, headers=headers)
            assert response.http_version == ("HTTP/2" if h2 else "HTTP/1.1")
            return response

    return asyncio.run(go())


def normalised(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body without what differs by design: the date, the request id
    (salted per process), the framing headers of HTTP/1.1, the clock's second in bodies."""
    skip = {"date", "x-amzn-requestid", "x-request-id", "transfer-encoding", "connection"}
    headers = [
        (k.lower(), re.sub(r"gen-\d+-", "gen-0-", v))  # OpenRouter ids hold the second too
        for k, v in response.headers.multi_items()
        if k.lower() not in skip
    ]
    body = re.sub(rb'"(created|created_at|completed_at)":\s*\d+', rb'"\1":0', response.content)
    return response.status_code, headers, re.sub(rb"gen-\d+-", b"gen-0-", body)


def is_h2front(server: EmulatorServer) -> bool:
    """Whether a connection of this server is on the h2c front right now."""
    connections = server._http.connections.values()
    return any(isinstance(c, H2Protocol) for c in connections)


# -- the same answers as HTTP/1.1 ---------------------------------------------------------------

FAULTS = [
    None,
    "latency:0.05",
    "close_without_stop",
    "corrupt_crc",
    "stream_exception:throttlingException",
    "http_error:429",
    "slow_body:40000",
    "empty_response",
    "stop_reason:max_tokens",
    "malformed_tool_args",
]


@pytest.mark.parametrize(
    ("path", "fault"),
    [
        (path, fault)
        for path in (STREAM, CONVERSE)
        for fault in FAULTS
        if not (path == CONVERSE and fault == "close_without_stop")  # a cut: see below
    ],
)
def test_h2c_answers_are_the_http1_answers(
    trio: tuple[EmulatorServer, EmulatorServer, EmulatorServer], path: str, fault: str | None
) -> None:
    h2front, h1front, _ = trio
    messages = TOOL_RESULT_TURN if fault is None else FIRST_TURN
    body = json.dumps({"messages": messages, "toolConfig": WEATHER_TOOL_CONFIG}).encode()
    headers = {"content-type": "application/json"}
    if fault is not None:
        headers["x-callproof-fault"] = fault
    over_h2 = post(h2front.url, path, body, headers, h2=True)
    over_h1 = post(h1front.url, path, body, headers, h2=False)
    assert normalised(over_h2) == normalised(over_h1)
    if path == STREAM and over_h2.status_code == 200 and fault != "corrupt_crc":
        events = list(EventStreamDecoder().feed(over_h2.content))
        assert len(events) >= 2  # decoded, byte for byte the HTTP/1.1 frames


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("path", [CHAT, "/v1/responses"])
@pytest.mark.parametrize("fault", [None, "latency:0.05", "http_error:429", "close_without_stop"])
def test_h2c_openai_answers_are_the_http1_answers(
    trio: tuple[EmulatorServer, EmulatorServer, EmulatorServer],
    path: str,
    fault: str | None,
    stream: bool,
) -> None:
    h2front, h1front, _ = trio
    payload: dict[str, object] = {"model": "moonshotai/kimi-k2.5", "stream": stream}
    if path == CHAT:
        payload["messages"] = [{"role": "user", "content": "Weather for Tokyo?"}]
    else:
        payload["input"] = "Weather for Tokyo?"
    headers = {"content-type": "application/json"}
    if fault is not None:
        headers["x-callproof-fault"] = fault
    body = json.dumps(payload).encode()
    over_h2 = post(h2front.url, path, body, headers, h2=True)
    over_h1 = post(h1front.url, path, body, headers, h2=False)
    assert normalised(over_h2) == normalised(over_h1)
    assert over_h2.status_code == (429 if fault == "http_error:429" else 200)


def test_h2c_connections_are_the_h2_fronts(fast_server: EmulatorServer) -> None:
    seen: list[bool] = []

    async def go() -> None:
        async with httpx.AsyncClient(http1=False, http2=True, base_url=fast_server.url) as c:
            assert (await c.post(STREAM, content=BODY)).status_code == 200
            seen.append(is_h2front(fast_server))

    asyncio.run(go())
    assert seen == [True]


def test_a_mixed_connection_serves_every_stream(
    trio: tuple[EmulatorServer, EmulatorServer, EmulatorServer],
) -> None:
    """Hot streams, ASGI streams (a GET route, a 404, a wrong method) and hot again, on one
    connection; the ASGI answers are hypercorn's."""
    h2front, _, hypercorn = trio

    async def go(url: str) -> list[tuple[int, bytes]]:
        async with httpx.AsyncClient(http1=False, http2=True, base_url=url, timeout=30) as c:
            answers = [await c.post(STREAM, content=BODY)]
            answers.append(await c.get("/v1/models"))
            answers.append(await c.get("/nowhere?x=1"))
            answers.append(await c.get(CONVERSE))
            answers.append(await c.post(CONVERSE, content=BODY))
            many = [c.post(STREAM, content=BODY) for _ in range(10)]
            many += [c.get("/v1/models") for _ in range(10)]
            answers += await asyncio.gather(*many)
            return [(r.status_code, r.content) for r in answers]

    ours, theirs = asyncio.run(go(h2front.url)), asyncio.run(go(hypercorn.url))
    assert [status for status, _ in ours] == [200, 200, 404, 404, 200] + [200] * 20
    assert [s for s, _ in ours] == [s for s, _ in theirs]
    for (_, mine), (_, old) in zip(ours[1:4], theirs[1:4], strict=True):
        assert mine == old  # the ASGI app's answers, through the adapter
    assert len(list(EventStreamDecoder().feed(ours[0][1]))) > 3


def test_a_large_answer_waits_for_the_clients_window(fast_server: EmulatorServer) -> None:
    """A client with a 1 KiB stream window still gets the whole answer (flow control: DATA
    waits for WINDOW_UPDATE)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1024}
    )
    conn.initiate_connection()
    body = json.dumps({"messages": TOOL_RESULT_TURN, "toolConfig": WEATHER_TOOL_CONFIG}).encode()
    received = b""
    with socket.create_connection(("127.0.0.1", fast_server.port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        conn.send_headers(1, request_headers(STREAM, len(body)))
        conn.send_data(1, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        ended = False
        while not ended:
            data = sock.recv(65536)
            assert data, "the server closed before the answer ended"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    assert len(event.data) <= 1024
                    received += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                ended = ended or isinstance(event, h2.events.StreamEnded)
            sock.sendall(conn.data_to_send())
    assert len(received) > 1024
    events = list(EventStreamDecoder().feed(received))
    assert json.loads(events[-1].payload)["usage"]  # the last event came whole


# -- faults: the outcomes hypercorn's h2 gave -----------------------------------------------------


def request_headers(path: str, length: int, **extra: str) -> list[tuple[str, str]]:
    return [
        (":method", "POST"), (":path", path), (":scheme", "http"),
        (":authority", "127.0.0.1"), ("content-type", "application/json"),
        ("content-length", str(length)), *extra.items(),
    ]  # fmt: skip


def outcome(server: EmulatorServer, path: str, fault: str) -> list[str]:
    """The kinds of h2 events one faulted request gives (data merged), then whether the
    connection still answers a PING."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    kinds: list[str] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        conn.send_headers(1, request_headers(path, len(BODY), **{"x-callproof-fault": fault}))
        conn.send_data(1, BODY, end_stream=True)
        sock.sendall(conn.data_to_send())
        while not kinds or not kinds[-1].startswith(("StreamEnded", "StreamReset", "closed")):
            data = sock.recv(65536)
            if not data:
                kinds.append("closed")
                break
            for event in conn.receive_data(data):
                name = type(event).__name__
                if isinstance(event, h2.events.StreamReset):
                    name += f"({h2.errors.ErrorCodes(event.error_code).name})"
                if isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                if getattr(event, "stream_id", None) == 1 and (not kinds or kinds[-1] != name):
                    kinds.append(name)
            sock.sendall(conn.data_to_send())
        conn.ping(b"12345678")
        sock.sendall(conn.data_to_send())
        while "ping" not in kinds:
            data = sock.recv(65536)
            if not data:
                break
            if any(isinstance(e, h2.events.PingAckReceived) for e in conn.receive_data(data)):
                kinds.append("ping")
    return kinds


@pytest.mark.parametrize(
    ("fault", "path"),
    [
        ("reset_mid_body", STREAM),
        ("reset_mid_body", CONVERSE),
        ("reset_before_headers", STREAM),
        ("truncate_frame", CONVERSE),
        ("truncate_frame", STREAM),
        ("close_without_stop", CONVERSE),
        ("latency:0.05", STREAM),
        ("slow_body:20000", CONVERSE),
    ],
)
def test_faults_end_streams_as_hypercorn_did(
    trio: tuple[EmulatorServer, EmulatorServer, EmulatorServer], fault: str, path: str
) -> None:
    h2front, _, hypercorn = trio
    ours = outcome(h2front, path, fault)
    assert ours == outcome(hypercorn, path, fault)
    assert ours[-1] == "ping"  # a stream's fault never ends the connection


def test_hang_holds_the_stream_until_the_client_cancels(fast_server: EmulatorServer) -> None:
    state = fast_server.state

    async def go() -> None:
        async with httpx.AsyncClient(http1=False, http2=True, base_url=fast_server.url) as c:
            for fault in ("hang_before_headers", "hang_no_events", "stall_after:2"):
                headers = {"x-callproof-fault": fault}
                with pytest.raises(httpx.ReadTimeout):
                    await c.post(STREAM, content=BODY, headers=headers, timeout=0.5)
            # the cancelled streams free their slots; the connection serves on
            assert (await c.post(STREAM, content=BODY)).status_code == 200

    asyncio.run(go())
    wait_for(lambda: state.active_streams == 0)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _events_across_stop(fault: str, *, ack: bool) -> list[Any]:
    """Open one ConverseStream with ``fault``, stop the server while it is in flight, and
    return every h2 event the client read until the server closed the connection. ``ack``:
    answer as it reads (window updates, so a held stream can finish); off where the server
    closes right after its last frame, so no write can meet the closed socket."""
    server = EmulatorServer(preset="fast").start()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    events: list[Any] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        conn.send_headers(1, request_headers(STREAM, len(BODY), **{"x-callproof-fault": fault}))
        conn.send_data(1, BODY, end_stream=True)
        sock.sendall(conn.data_to_send())
        wait_for(lambda: server.state.active_streams == 1)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        while data := sock.recv(65536):
            events.extend(conn.receive_data(data))
            if ack:
                sock.sendall(conn.data_to_send())
        stopper.join(20)
    return events


def test_stop_sends_goaway_and_ends_hangs() -> None:
    """A hung stream ends when the server stops (an empty 503 before headers, as HTTP/1.1
    gives), and the connection gets GOAWAY(NO_ERROR) after its last stream."""
    events = _events_across_stop("hang_before_headers", ack=False)
    kinds = [type(e).__name__ for e in events]
    response = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
    assert (b":status", b"503") in response.headers
    assert "StreamEnded" in kinds
    goaway = next(e for e in events if isinstance(e, h2.events.ConnectionTerminated))
    assert goaway.error_code == h2.errors.ErrorCodes.NO_ERROR


def test_stop_lets_a_stream_in_flight_finish() -> None:
    """Streams in flight get the grace period (``busy`` counts h2c streams): a held stream
    ends whole, then GOAWAY(NO_ERROR)."""
    events = _events_across_stop("latency:0.3", ack=True)
    kinds = [type(e).__name__ for e in events]
    assert "StreamEnded" in kinds
    assert kinds.index("StreamEnded") < kinds.index("ConnectionTerminated")
    data = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert len(list(EventStreamDecoder().feed(data))) > 3


def test_the_switch_off_leaves_h2c_to_hypercorn() -> None:
    app = create_app(preset="fast")
    front = FastFront(app.state.fast_routes, h2c=False)
    with HTTPServer(app, front=front) as server:

        async def go() -> None:
            async with httpx.AsyncClient(http1=False, http2=True, base_url=server.url) as c:
                assert (await c.post(STREAM, content=BODY)).status_code == 200
                assert not any(isinstance(x, H2Protocol) for x in server.connections.values())

        asyncio.run(go())


# -- limits ---------------------------------------------------------------------------------------


@pytest.fixture
def small() -> Iterator[EmulatorServer]:
    limits = ServerLimits(
        max_header_bytes=8 * 1024, header_timeout_s=1.0, max_connections=8,
        h2_max_concurrent_streams=50,
    )  # fmt: skip
    app = create_app(preset="fast", limits=Limits(max_body_bytes=4096, body_timeout_s=0.5))
    with EmulatorServer(app=app, limits=limits) as server:
        yield server


def healthy(server: EmulatorServer) -> bool:
    async def go() -> bool:
        async with httpx.AsyncClient(http1=False, http2=True, base_url=server.url) as c:
            response = await c.post(CONVERSE, json={"messages": FIRST_TURN}, timeout=10)
            return response.status_code == 200

    return asyncio.run(go())


def test_a_body_past_the_limit_is_the_routes_answer(small: EmulatorServer) -> None:
    """Past ``Limits.max_body_bytes`` the route answers (Bedrock's 400 "Input is too long"),
    through the ASGI app, as over HTTP/1.1."""
    big = json.dumps({"messages": FIRST_TURN, "pad": "x" * 8000}).encode()
    with httpx.Client(base_url=small.url, timeout=10) as h1:
        expected = h1.post(CONVERSE, content=big)
    assert expected.status_code == 400
    for declared in (True, False):  # with content-length, and without (counted as it comes)

        async def go(declared: bool = declared) -> httpx.Response:
            async with httpx.AsyncClient(http1=False, http2=True, base_url=small.url) as c:

                async def chunks() -> Any:
                    yield big

                content: Any = big if declared else chunks()
                return await c.post(CONVERSE, content=content, timeout=10)

        response = asyncio.run(go())
        assert response.status_code == expected.status_code
        assert response.content == expected.content
    assert healthy(small)


def test_a_body_that_never_comes_is_a_408(small: EmulatorServer) -> None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    events: list[Any] = []
    with socket.create_connection(("127.0.0.1", small.port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        conn.send_headers(1, request_headers(CONVERSE, len(BODY)))
        conn.send_data(1, BODY[:10])  # and the rest never
        sock.sendall(conn.data_to_send())
        while not any(isinstance(e, h2.events.StreamEnded) for e in events):
            data = sock.recv(65536)
            assert data
            events.extend(conn.receive_data(data))
    response = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
    assert (b":status", b"408") in response.headers


def test_an_idle_connection_is_closed_after_the_header_timeout(small: EmulatorServer) -> None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    events: list[Any] = []
    with socket.create_connection(("127.0.0.1", small.port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        started = time.monotonic()
        while data := sock.recv(65536):
            events.extend(conn.receive_data(data))
        assert time.monotonic() - started >= 0.9
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in events)


def client() -> h2.connection.H2Connection:
    """A client connection, its preface and SETTINGS framed (``data_to_send`` holds them)."""
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
        )
    )
    conn.initiate_connection()
    return conn


def hostile(server: EmulatorServer, payload: bytes) -> bytes:
    """Send ``payload`` (in one write, so the server reads it at once); everything the server
    sends until it closes."""
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(payload)
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                received += data
    return received


def goaway_code(received: bytes) -> h2.errors.ErrorCodes | int | None:
    """The error code of the GOAWAY among the server's frames (None: none was sent)."""
    conn = client()
    conn.data_to_send()
    with contextlib.suppress(h2.exceptions.ProtocolError):
        for event in conn.receive_data(received):
            if isinstance(event, h2.events.ConnectionTerminated):
                return event.error_code
    return None


def test_garbage_after_the_preface_is_a_protocol_error(
    small: EmulatorServer, logs: pytest.LogCaptureFixture
) -> None:
    settings = client().data_to_send()
    for garbage in (b"\x00\x00\x04\xff\x00" + b"x" * 300, b"not http/2 at all"):
        received = hostile(small, settings + garbage)
        assert goaway_code(received) == h2.errors.ErrorCodes.FRAME_SIZE_ERROR
    received = hostile(small, PREFACE[:-4] + b"XX\r\n\r\n")  # a broken preface
    assert b":status" not in received
    assert healthy(small)


@pytest.mark.parametrize(
    "headers",
    [
        [(":method", "POST"), (":scheme", "http"), (":authority", "x")],  # no :path
        [*request_headers(STREAM, 2), ("Upper-Case", "no")],
        [*request_headers(STREAM, 2), ("connection", "keep-alive")],
        [(":path", STREAM), *request_headers(STREAM, 2)],  # a pseudo-header twice
    ],
    ids=["no-path", "uppercase", "connection-header", "twice"],
)
def test_malformed_requests_are_protocol_errors(
    small: EmulatorServer, logs: pytest.LogCaptureFixture, headers: list[tuple[str, str]]
) -> None:
    conn = client()
    conn.send_headers(1, headers, end_stream=True)
    received = hostile(small, conn.data_to_send())
    assert goaway_code(received) == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert b":status" not in received
    assert healthy(small)


def test_oversized_headers_end_the_connection(
    small: EmulatorServer, logs: pytest.LogCaptureFixture
) -> None:
    conn = client()
    conn.send_headers(1, [*request_headers(STREAM, 2), ("x-big", "a" * 12000)])
    received = hostile(small, conn.data_to_send())
    assert goaway_code(received) is not None
    assert b":status" not in received  # no answer was made
    assert healthy(small)


def test_a_frame_declared_past_the_max_size_ends_the_connection_at_once(
    small: EmulatorServer, logs: pytest.LogCaptureFixture
) -> None:
    """h2 checks a frame's length only once the whole frame is in: the front reads the
    declared length of the frame h2 is holding (its private ``incoming_buffer._data``) and
    ends the connection before buffering 16 MiB. Should h2 rename that buffer, this fails."""
    conn = client()
    conn.send_headers(1, request_headers(STREAM, 100))
    data_frame = (2**24 - 1).to_bytes(3, "big") + b"\x00\x00" + (1).to_bytes(4, "big")
    received = hostile(small, conn.data_to_send() + data_frame + b"x" * 4000)
    assert goaway_code(received) == h2.errors.ErrorCodes.FRAME_SIZE_ERROR
    assert b":status" not in received
    assert healthy(small)


def test_a_flood_of_streams_is_refused(
    small: EmulatorServer, logs: pytest.LogCaptureFixture
) -> None:
    conn = client()
    for stream_id in range(1, 400, 2):  # 200 open streams (bodies never sent), 50 allowed
        conn.send_headers(stream_id, request_headers(STREAM, 100))
    assert goaway_code(hostile(small, conn.data_to_send())) == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert healthy(small)
    wait_for(lambda: small.state.active_streams == 0)


def test_rapid_reset_gets_enhance_your_calm(
    small: EmulatorServer, logs: pytest.LogCaptureFixture
) -> None:
    conn = client()
    for i in range(RESET_BURST * 2):
        stream_id = 2 * i + 1
        conn.send_headers(stream_id, request_headers(STREAM, 100))
        conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
    logs.set_level(logging.ERROR)  # the one warning it logs is expected
    received = hostile(small, conn.data_to_send())
    assert goaway_code(received) == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert healthy(small)


def test_a_client_goaway_lets_open_streams_finish(fast_server: EmulatorServer) -> None:
    """The AWS SDK for JavaScript's isolated session: GOAWAY(NO_ERROR) right after the
    request; the stream still finishes (RFC 9113 §6.8)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    events: list[Any] = []
    with socket.create_connection(("127.0.0.1", fast_server.port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        fault = {"x-callproof-fault": "latency:0.2"}
        conn.send_headers(1, request_headers(STREAM, len(BODY), **fault))
        conn.send_data(1, BODY, end_stream=True)
        sock.sendall(conn.data_to_send())
        conn.close_connection()
        sock.sendall(conn.data_to_send())
        conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN  # to read on
        while data := sock.recv(65536):
            for event in conn.receive_data(data):
                events.append(event)
                if isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
            sock.sendall(conn.data_to_send())
    data = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)
    assert len(list(EventStreamDecoder().feed(data))) > 3


def test_idle_h2c_connections_give_way_to_new_clients(
    small: EmulatorServer, logs: pytest.LogCaptureFixture
) -> None:
    """The connection cap counts h2c connections (8 here): idle ones are the ones closed."""
    idle = []
    try:
        for _ in range(12):
            sock = socket.create_connection(("127.0.0.1", small.port), timeout=10)
            sock.sendall(client().data_to_send())
            sock.recv(65536)  # the server's SETTINGS: the connection is the h2c front's
            idle.append(sock)
        logs.set_level(logging.ERROR)  # the cap's one warning is expected
        assert healthy(small)
    finally:
        for sock in idle:
            sock.close()


def test_random_bytes_after_the_preface_never_hurt_the_server(
    small: EmulatorServer, logs: pytest.LogCaptureFixture
) -> None:
    import random

    rng = random.Random(14)
    for _ in range(30):
        garbage = rng.randbytes(rng.randrange(1, 400))
        if rng.random() < 0.5:  # a plausible frame header first, then noise
            garbage = bytes([0, 0, rng.randrange(0, 40), rng.randrange(0, 10), 0, 0, 0, 0, 1])
            garbage += rng.randbytes(rng.randrange(0, 60))
        received = hostile(small, client().data_to_send() + garbage)
        assert b":status" not in received
    assert healthy(small)
    front: Any = small._http.front
    wait_for(lambda: not front.h2.protocols)  # every connection closed, none left hanging


# -- the ASGI adapter -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def odd_app_server() -> Iterator[HTTPServer]:
    """The emulator's hot routes, with an app that misbehaves on some paths (else the
    emulator's app): it raises, returns without answering, or streams a large body."""
    app = create_app(preset="fast")

    async def odd(scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if path == "/raise":
            raise RuntimeError("an app bug")
        if path == "/silent":
            return
        if path == "/big":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(20):
                await send({"type": "http.response.body", "body": b"x" * 50_000, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if path == "/echo":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            start = {"type": "http.response.start", "status": 201, "headers": [(b"X-Seen", b"1")]}
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    with HTTPServer(odd, front=FastFront(app.state.fast_routes)) as server:
        yield server


def test_the_adapter_answers_an_app_failure_as_hypercorn(
    odd_app_server: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def go() -> list[httpx.Response]:
        url = odd_app_server.url
        async with httpx.AsyncClient(http1=False, http2=True, base_url=url, timeout=30) as c:
            return [
                await c.get("/raise"),
                await c.get("/silent"),
                await c.post(STREAM, content=BODY),
            ]

    raised, silent, hot = asyncio.run(go())
    assert raised.status_code == silent.status_code == 500
    assert raised.content == silent.content == b""
    assert hot.status_code == 200  # the connection lives on
    assert any(r.exc_info and "an app bug" in str(r.exc_info[1]) for r in caplog.records)


def test_the_adapter_streams_and_reads_bodies(odd_app_server: HTTPServer) -> None:
    async def go() -> tuple[httpx.Response, httpx.Response]:
        url = odd_app_server.url
        async with httpx.AsyncClient(http1=False, http2=True, base_url=url, timeout=30) as c:
            big = await c.get("/big")
            sent = bytes(range(256)) * 1000  # past the stream's 64 KiB window: read as it comes
            echo = await c.post("/echo", content=sent)
            return big, echo

    big, echo = asyncio.run(go())
    assert big.content == b"x" * 1_000_000
    assert echo.status_code == 201
    assert echo.headers["x-seen"] == "1"
    assert echo.content == bytes(range(256)) * 1000
