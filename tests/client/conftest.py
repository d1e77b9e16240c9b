"""Fixtures for the client tests: awkward-chunk mock transports, targets, and the emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from callproof.targets import Auth, Endpoint, Target, Timeouts

#: Clocks short enough for tests, long enough for a loaded CI machine.
#: Healthy answers must fit with two CPU hogs running; stalls cost this long to detect.
FAST = Timeouts(connect=5.0, first_event=2.0, idle=2.0, deadline=10.0)


async def awkward(body: bytes, *, delay: float = 0.0) -> AsyncIterator[bytes]:
    """``body`` in 1..7-byte pieces (a cycle), optionally paced."""
    pos, size = 0, 1
    while pos < len(body):
        yield body[pos : pos + size]
        pos += size
        size = size % 7 + 1
        if delay:
            await asyncio.sleep(delay)


class Paced(httpx.AsyncByteStream):
    """A response body played as (delay, bytes) steps; ``hang`` at the end never finishes."""

    def __init__(self, steps: list[tuple[float, bytes]], *, hang: bool = False) -> None:
        self.steps = steps
        self.hang = hang
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for delay, data in self.steps:
            if delay:
                await asyncio.sleep(delay)
            if data:
                yield data
        if self.hang:
            await asyncio.sleep(3600)

    async def aclose(self) -> None:
        self.closed = True


def make_target(
    api: str,
    model: str = "test-model",
    *,
    base_url: str | None = None,
    auth: Auth | None = None,
    headers: dict[str, str] | None = None,
    timeouts: Timeouts = FAST,
) -> Target:
    if base_url is None:
        base_url = "http://mock" if api.startswith("bedrock") else "http://mock/v1"
    return Target(
        name=f"t-{api}",
        api=api,  # type: ignore[arg-type]
        model=model,
        endpoint=Endpoint(base_url=base_url, auth=auth or Auth(), headers=headers or {}),
        timeouts=timeouts,
    )


@pytest.fixture
def target() -> Callable[..., Target]:
    return make_target


@pytest.fixture(scope="session")
def emulator() -> Iterator[Any]:
    """The real emulator (seed preset) on loopback, shared by the session."""
    from callproof.emulator import EmulatorServer

    with EmulatorServer(preset="seed", seed=7) as server:
        yield server


def emulator_target(
    server: Any, api: str, model: str, *, fault: str | None = None, timeouts: Timeouts = FAST
) -> Target:
    base = str(server.url).rstrip("/")
    return make_target(
        api,
        model,
        base_url=base if api.startswith("bedrock") else base + "/v1",
        headers={"x-callproof-fault": fault} if fault else {},
        timeouts=timeouts,
    )
