"""End to end: callproof's own client against the emulator's OpenAI-compatible routes classifies
every fault as the outcome it stands for (both wire APIs, the seed's OpenRouter Kimi)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from callproof.attempt import run_attempt
from callproof.client import Client
from callproof.emulator.server import EmulatorServer
from callproof.scenarios import tool_call, tool_result
from callproof.targets import Endpoint, Target, Timeouts

MODEL = "moonshotai/kimi-k2.5"
#: Budgets that hold on a loaded machine (0.4 s did not: a max_tokens answer was judged
#: stall_before_headers under two CPU hogs); a fault that stalls waits out the budget it
#: trips, so that one is shorter, and only for the faults that trip it.
TIMEOUTS = Timeouts(connect=5, first_event=5, idle=5, deadline=20)
STALLS = {
    "hang_before_headers": Timeouts(connect=5, first_event=0.4, idle=5, deadline=20),
    "hang_no_events": Timeouts(connect=5, first_event=1.5, idle=5, deadline=20),
    "stall_after:3": Timeouts(connect=5, first_event=5, idle=1.5, deadline=20),
}


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(preset="fast", seed=9) as running:
        yield running


def _target(server: EmulatorServer, api: str, fault: str | None = None) -> Target:
    headers = {"x-callproof-fault": fault} if fault else {}
    endpoint = Endpoint(base_url=server.url + "/v1", headers=headers)
    return Target(name="emulated", api=api, model=MODEL, endpoint=endpoint)  # type: ignore[arg-type]


@pytest.mark.parametrize("api", ["openai-completions", "openai-responses"])
async def test_healthy_scenarios_pass(server: EmulatorServer, api: str) -> None:
    async with Client() as client:
        for scenario in (tool_call(), tool_result()):
            attempt = await run_attempt(client, _target(server, api), scenario, timeouts=TIMEOUTS)
            assert attempt.outcome == "ok", attempt.detail
    async with Client() as client:
        answered = await run_attempt(client, _target(server, api), tool_result(), timeouts=TIMEOUTS)
    assert answered.response is not None
    assert "22" in answered.response.text


@pytest.mark.parametrize("api", ["openai-completions", "openai-responses"])
@pytest.mark.parametrize(
    ("fault", "outcomes"),
    [
        ("hang_before_headers", {"stall_before_headers"}),
        ("hang_no_events", {"stall_no_events"}),
        ("stall_after:3", {"stall_mid_stream"}),
        ("close_without_stop", {"incomplete_stream"}),
        ("truncate_frame", {"incomplete_stream", "protocol_error"}),
        ("corrupt_crc", {"protocol_error"}),
        ("stream_exception:throttlingException", {"stream_exception"}),
        ("http_error:429", {"http_error"}),
        ("http_error:503", {"http_error"}),
        ("empty_response", {"empty_response"}),
        ("stop_reason:max_tokens", {"abnormal_stop"}),
        ("malformed_tool_args", {"tool_call_malformed"}),
        ("tool_call_in_text", {"tool_call_in_text"}),
        ("latency:0.1", {"ok"}),
    ],
)
async def test_each_fault_is_classified(
    server: EmulatorServer, api: str, fault: str, outcomes: set[str]
) -> None:
    async with Client() as client:
        attempt = await run_attempt(
            client, _target(server, api, fault), tool_call(), timeouts=STALLS.get(fault, TIMEOUTS)
        )
    assert attempt.outcome in outcomes, (fault, attempt.outcome, attempt.detail)
