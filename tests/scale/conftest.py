"""Fixtures for the scale tests: a real Redis server and the emulator on loopback.

``redis_server`` starts Debian's ``redis-server`` on a free loopback port, with persistence
off, in a temporary directory; it can be stopped and started again on the same port (the
"Redis killed mid-load" test). The tests that need it skip, saying why, only when no
``redis-server`` binary exists (``.ci/run`` installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from callproof.targets import Endpoint, Target, Timeouts
from tests.gateway.conftest import fast_toml

#: Clocks short enough for tests, long enough for a loaded CI machine.
SHORT = Timeouts(connect=2.0, first_event=0.6, idle=0.5, deadline=10.0)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A throwaway ``redis-server`` process on 127.0.0.1."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(16)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh Redis per test (each test's keys are its own)."""
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    server = RedisServer(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def emulator() -> Iterator[Any]:
    """The emulator with the ``fast`` preset (no latency, no faults unless forced)."""
    from callproof.emulator import EmulatorServer

    with EmulatorServer(preset="fast", seed=13) as server:
        yield server


@pytest.fixture
def make_target(emulator: Any) -> Callable[..., Target]:
    """``make_target(name, fault=..., timeouts=...)``: a Bedrock target on the emulator."""

    def make(
        name: str,
        model: str = "amazon.nova-pro-v1:0",
        *,
        fault: str | None = None,
        timeouts: Timeouts = SHORT,
    ) -> Target:
        headers = {"x-callproof-fault": fault} if fault else {}
        return Target(
            name=name,
            api="bedrock-converse-stream",
            model=model,
            endpoint=Endpoint(base_url=emulator.url, region="us-east-1", headers=headers),
            timeouts=timeouts,
        )

    return make


def gateway_toml(
    evidence: Path | str, *, route_extra: str = "", serve_extra: str = "", first_event: float = 2.0
) -> str:
    """The gateway tests' configuration (the seed's Kimi models on the fast preset, route kimi =
    [Bedrock Kimi, OpenRouter Kimi], short clocks) with the route's and [serve]'s extra lines."""
    return fast_toml(
        evidence, route_extra=route_extra, serve_extra=serve_extra, first_event=first_event
    )
