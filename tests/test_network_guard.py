"""The suite's own network guard."""

from __future__ import annotations

import socket

import pytest


def test_network_guard_blocks_non_loopback() -> None:
    """A public address is refused before any packet leaves."""
    s = socket.socket()
    try:
        with pytest.raises(OSError, match="loopback"):
            s.connect(("192.0.2.1", 443))
    finally:
        s.close()


def test_network_guard_allows_loopback() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.socket()
    try:
        client.connect(server.getsockname())
    finally:
        client.close()
        server.close()
