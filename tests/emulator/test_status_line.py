"""Every HTTP/1.1 status line carries its reason phrase (``HTTP/1.1 200 OK``), as AWS and OpenAI
send it, on the fast front and on hypercorn alike. Some clients count an empty phrase as a failed
response: h2load ``--h1`` did, so callproof could not be load-tested with it (RFC 9112 §4 allows
an empty phrase; the services do not send one).
"""

from __future__ import annotations

import socket

import pytest

from callproof.emulator import EmulatorServer


def status_line(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("fast", [True, False])
def test_status_lines_have_reason_phrases(fast: bool) -> None:
    with EmulatorServer(preset="fast", fast=fast) as server:
        models = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        missing = b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert status_line(server.port, models) == b"HTTP/1.1 200 OK"
        assert status_line(server.port, missing) == b"HTTP/1.1 404 Not Found"
