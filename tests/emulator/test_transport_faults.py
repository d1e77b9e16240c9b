"""Faults at the transport: real TCP resets and RST_STREAM, cuts, trickles, over HTTP/1.1 and
HTTP/2 (issue 9 items 1 and 5, G6).

Sources: RFC 9113 §6.4 (RST_STREAM ends one stream; the connection lives on) and §3.4 (the
client preface on cleartext, "prior knowledge"); a TCP reset is what Linux sends when a socket
closes with SO_LINGER {on, 0} (socket(7)), and the peer's recv() then fails with ECONNRESET;
botocore surfaces a cut Converse body as IncompleteRead/ConnectionClosedError (issue 9 G6).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from callproof.emulator import EmulatorServer

from .conftest import FIRST_TURN, BedrockFactory

STREAM_PATH = "/model/amazon.nova-pro-v1%3A0/converse-stream"
CONVERSE_PATH = "/model/amazon.nova-pro-v1%3A0/converse"
BODY = json.dumps({"messages": FIRST_TURN}).encode()


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(preset="fast", seed=2) as running:
        yield running


def raw_http1(server: EmulatorServer, path: str, fault: str) -> tuple[bytes, BaseException | None]:
    """Send one HTTP/1.1 request on a bare socket; (bytes read, the error that ended it)."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"x-callproof-fault: {fault}\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode()
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + BODY)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError as exc:
            return received, exc
    return received, None


@pytest.mark.parametrize("path", [STREAM_PATH, CONVERSE_PATH], ids=["stream", "converse"])
def test_reset_mid_body_is_a_real_tcp_reset(server: EmulatorServer, path: str) -> None:
    received, error = raw_http1(server, path, "reset_mid_body")
    assert isinstance(error, ConnectionResetError)  # RST, not FIN: recv() fails with ECONNRESET
    assert received.startswith(b"HTTP/1.1 200")
    assert len(received.split(b"\r\n\r\n", 1)[1]) > 0  # some of the body came first


@pytest.mark.parametrize("path", [STREAM_PATH, CONVERSE_PATH], ids=["stream", "converse"])
def test_reset_before_headers_sends_nothing_then_resets(server: EmulatorServer, path: str) -> None:
    received, error = raw_http1(server, path, "reset_before_headers")
    assert isinstance(error, ConnectionResetError)
    assert received == b""


def test_truncated_converse_is_a_cut_under_a_full_content_length(server: EmulatorServer) -> None:
    received, error = raw_http1(server, CONVERSE_PATH, "truncate_frame")
    assert error is None  # a FIN: the connection closes cleanly, but the body is short
    head, _, body = received.partition(b"\r\n\r\n")
    declared = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
                   .split(b":")[1])  # fmt: skip
    assert 0 < len(body) < declared


@pytest.mark.parametrize("fault", ["reset_mid_body", "reset_before_headers"])
def test_boto3_sees_a_reset_converse_as_connection_closed(
    server: EmulatorServer, bedrock: BedrockFactory, fault: str
) -> None:
    client = bedrock(server, fault=fault)
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        client.converse(modelId="amazon.nova-pro-v1:0", messages=FIRST_TURN)


def test_httpx_sees_a_truncated_converse_as_an_incomplete_body(server: EmulatorServer) -> None:
    # httpx (h11) enforces Content-Length: the cut is a RemoteProtocolError, not bad JSON
    with (
        httpx.Client(base_url=server.url, timeout=10) as client,
        pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|closed"),
    ):
        client.post(CONVERSE_PATH, content=BODY, headers={"x-callproof-fault": "truncate_frame"})


def h2_request(server: EmulatorServer, path: str, fault: str) -> list[Any]:
    """One HTTP/2 request with prior knowledge (RFC 9113 §3.4); the h2 events until the end."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    events: list[Any] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        headers = [
            (":method", "POST"), (":path", path), (":scheme", "http"),
            (":authority", "127.0.0.1"), ("content-type", "application/json"),
            ("x-callproof-fault", fault), ("content-length", str(len(BODY))),
        ]  # fmt: skip
        conn.send_headers(1, headers)
        conn.send_data(1, BODY, end_stream=True)
        sock.sendall(conn.data_to_send())
        while True:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                events.append(event)
                if isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
            sock.sendall(conn.data_to_send())
            if any(isinstance(e, h2.events.StreamReset | h2.events.StreamEnded) for e in events):
                # the connection is still alive after a stream reset: a PING is answered
                conn.ping(b"12345678")
                sock.sendall(conn.data_to_send())
                while not any(isinstance(e, h2.events.PingAckReceived) for e in events):
                    events.extend(conn.receive_data(sock.recv(65536)))
                break
    return events


@pytest.mark.parametrize(
    ("fault", "path", "data"),
    [
        ("reset_mid_body", STREAM_PATH, True),
        ("reset_mid_body", CONVERSE_PATH, True),
        ("reset_before_headers", STREAM_PATH, False),
        ("truncate_frame", CONVERSE_PATH, True),
    ],
)
def test_http2_faults_reset_the_stream_not_the_connection(
    server: EmulatorServer, fault: str, path: str, data: bool
) -> None:
    events = h2_request(server, path, fault)
    resets = [e for e in events if isinstance(e, h2.events.StreamReset)]
    assert len(resets) == 1
    assert resets[0].error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
    assert not any(isinstance(e, h2.events.StreamEnded) for e in events)
    got_headers = any(isinstance(e, h2.events.ResponseReceived) for e in events)
    assert got_headers is data
    assert any(isinstance(e, h2.events.DataReceived) for e in events) is data
    assert any(isinstance(e, h2.events.PingAckReceived) for e in events)


def test_http2_healthy_stream_ends_normally(server: EmulatorServer) -> None:
    events = h2_request(server, STREAM_PATH, "latency:0")
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)
    assert not any(isinstance(e, h2.events.StreamReset) for e in events)


def test_slow_body_trickles(server: EmulatorServer) -> None:
    rate = 1000
    with httpx.Client(base_url=server.url, timeout=30) as client:
        started = time.monotonic()
        chunks = []
        with client.stream(
            "POST", CONVERSE_PATH, content=BODY, headers={"x-callproof-fault": f"slow_body:{rate}"}
        ) as response:
            chunks = list(response.iter_raw())
        elapsed = time.monotonic() - started
    body = b"".join(chunks)
    assert json.loads(body)["stopReason"] == "end_turn"
    # a lower bound only (a loaded machine can only make it slower): len/rate seconds at least
    assert elapsed >= 0.8 * len(body) / rate
    assert len(chunks) >= len(body) // (rate // 10) // 2
