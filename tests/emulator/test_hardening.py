"""The emulator under hostile connections (issue 10 item 11): bounded header memory, header and
idle timeouts, connection exhaustion without log floods, lone surrogates, the output cap.

Sources: the reproducers of issue 10 (4 connections with endless header values: 635 MB; 1,100
idle sockets at a 1,024-fd limit: denial of service and 17 MB of EMFILE tracebacks; "\\ud800"
in Bedrock text: a 500; 19,100 output tokens of tool calls with no maxTokens). RFC 9110 §15.5.20
(431 Request Header Fields Too Large); h11's max_incomplete_event_size is the bound.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from callproof.emulator import EmulatorServer
from callproof.http_server import ServerLimits

from .conftest import FIRST_TURN

CONVERSE = "/model/amazon.nova-pro-v1%3A0/converse"


@pytest.fixture
def small() -> Iterator[EmulatorServer]:
    limits = ServerLimits(max_header_bytes=8 * 1024, header_timeout_s=1.0, max_connections=8)
    with EmulatorServer(preset="fast", limits=limits) as server:
        yield server


def healthy(server: EmulatorServer) -> bool:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        return client.post(CONVERSE, json={"messages": FIRST_TURN}).status_code == 200


def test_endless_header_values_are_cut_off(small: EmulatorServer) -> None:
    with socket.create_connection(("127.0.0.1", small.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        answer = b""
        try:
            for _ in range(200):  # 200 x 4 KiB, far past the 8 KiB limit
                sock.sendall(b"a" * 4096)
        except OSError:
            pass  # the server closed: the header never grows past the limit
        with contextlib.suppress(OSError):
            answer = sock.recv(65536)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431")
    assert healthy(small)


def test_a_connection_without_a_request_is_closed_after_the_header_timeout(
    small: EmulatorServer,
) -> None:
    with socket.create_connection(("127.0.0.1", small.port), timeout=30) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # headers never finish (slowloris)
        started = time.monotonic()
        data = sock.recv(1024)  # blocks until the server gives up on the headers
        waited = time.monotonic() - started
    assert data == b"" or data.startswith(b"HTTP/1.1 4")
    assert waited >= 0.9  # the 1 s timeout, not earlier
    assert waited < 25


def test_idle_clients_cannot_deny_service(
    small: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="callproof.http")
    idle = [socket.create_connection(("127.0.0.1", small.port)) for _ in range(40)]
    try:
        assert healthy(small)  # the oldest idle connections gave way
    finally:
        for sock in idle:
            sock.close()
    warnings = [r for r in caplog.records if r.name == "callproof.http"]
    assert 1 <= len(warnings) <= 2  # one line per 10 s, however many connections
    assert "Traceback" not in caplog.text


def test_lone_surrogate_is_a_400_not_a_500(small: EmulatorServer) -> None:
    body = b'{"messages":[{"role":"user","content":[{"text":"What is \\ud800?"}]}]}'
    with httpx.Client(base_url=small.url, timeout=10) as client:
        for op in ("converse", "converse-stream"):
            response = client.post(f"/model/amazon.nova-pro-v1%3A0/{op}", content=body)
            assert response.status_code == 400
            assert response.headers["x-amzn-errortype"].startswith("ValidationException")
        chat = client.post(
            "/v1/chat/completions",
            content=b'{"model":"moonshotai/kimi-k2.5",'
            b'"messages":[{"role":"user","content":"What is \\ud800?"}]}',
        )
        assert chat.status_code == 400
        # a real surrogate pair is fine
        pair = b'{"messages":[{"role":"user","content":[{"text":"What is \\ud83d\\ude00?"}]}]}'
        assert client.post(CONVERSE, content=pair).status_code == 200


def test_the_output_cap_holds_for_tool_calls(small: EmulatorServer) -> None:
    cities = " and ".join(f"City{i}" for i in range(3000))
    tools = {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "inputSchema": {
                        "json": {"type": "object", "properties": {"city": {"type": "string"}}}
                    },
                }
            }
        ]
    }
    messages = [{"role": "user", "content": [{"text": f"Weather for {cities}?"}]}]
    with httpx.Client(base_url=small.url, timeout=30) as client:
        data = client.post(
            CONVERSE,
            content=json.dumps(
                {"messages": messages, "toolConfig": tools, "inferenceConfig": {"maxTokens": 200}}
            ),
        ).json()
    assert data["usage"]["outputTokens"] <= 200
    assert data["stopReason"] in ("max_tokens", "tool_use")
    calls = [b for b in data["output"]["message"]["content"] if "toolUse" in b]
    assert len(calls) <= 128


def test_http2_continuation_flood_is_cut_off(small: EmulatorServer) -> None:
    # the HTTP/2 form of endless headers: HEADERS without END_HEADERS, then CONTINUATION
    # frames forever (RFC 9113 §6.10; the 2024 "CONTINUATION flood" class of CVEs). The
    # header list is bounded, so the server closes the connection long before 48 MB arrive.
    from hyperframe.frame import ContinuationFrame, HeadersFrame, SettingsFrame

    sent = 0
    with socket.create_connection(("127.0.0.1", small.port), timeout=10) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize())
        headers = HeadersFrame(1)
        headers.data = b"\x82"  # :method GET (HPACK static table)
        sock.sendall(headers.serialize())
        with contextlib.suppress(OSError):
            for _ in range(3000):
                frame = ContinuationFrame(1)
                frame.data = b"\x40\x01a\x7f" + b"a" * 16000  # one huge literal header
                sock.sendall(frame.serialize())
                sent += 1
    assert sent < 3000
    assert healthy(small)
