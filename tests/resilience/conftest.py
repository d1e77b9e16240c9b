"""Fixtures for the resilience tests: the real emulator on loopback and targets on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from callproof.targets import Endpoint, Target, Timeouts

#: Clocks short enough for tests, long enough for a loaded CI machine.
SHORT = Timeouts(connect=2.0, first_event=1.0, idle=0.5, deadline=10.0)


@pytest.fixture(scope="session")
def emulator() -> Iterator[Any]:
    """The emulator with the ``fast`` preset (no latency, no faults unless forced)."""
    from callproof.emulator import EmulatorServer

    with EmulatorServer(preset="fast", seed=11) as server:
        yield server


class ScriptedFaults(httpx.AsyncBaseTransport):
    """A real loopback transport that adds ``x-callproof-fault`` to requests in order:
    ``faults[i]`` goes on the i-th request (``None``: none); later requests get none."""

    def __init__(self, faults: list[str | None]) -> None:
        self.faults = list(faults)
        self.sent: list[str | None] = []
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.faults.pop(0) if self.faults else None
        if fault is not None and "x-callproof-fault" not in request.headers:
            request.headers["x-callproof-fault"] = fault
        self.sent.append(request.headers.get("x-callproof-fault"))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture
def make_target(emulator: Any) -> Callable[..., Target]:
    """``make_target(name, model=..., api=..., fault=..., timeouts=...)`` on the emulator."""

    def make(
        name: str,
        model: str = "amazon.nova-pro-v1:0",
        *,
        api: str = "bedrock-converse-stream",
        fault: str | None = None,
        timeouts: Timeouts = SHORT,
    ) -> Target:
        base = emulator.url if api.startswith("bedrock") else emulator.url + "/v1"
        headers = {"x-callproof-fault": fault} if fault else {}
        return Target(
            name=name,
            api=api,  # type: ignore[arg-type]
            model=model,
            endpoint=Endpoint(base_url=base, region="us-east-1", headers=headers),
            timeouts=timeouts,
        )

    return make


async def wait_for_streams_closed(emulator: Any, within: float = 2.0) -> int:
    """Poll the emulator until no stream is open (or ``within`` s); returns the count left."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    # the counter lives on the emulator's thread: polling is the only way to watch it
    while emulator.state.active_streams and loop.time() < end:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    return int(emulator.state.active_streams)
