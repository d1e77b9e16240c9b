"""What callproof's own client makes of the new faults on every wire API (issue 9 item 5), and
the seed's third hypothesis made testable: ``thinking-replay`` against a Kimi that rejects
replayed reasoning (the preset option ``seed:reject_reasoning_replay``).

Expected outcomes follow docs/outcomes (callproof.outcomes): a reset before headers is a
``transport_error``; a reset or cut mid-body is an ``incomplete_stream`` or, when the cut left
half a frame, a ``protocol_error``/``transport_error``; a trickle is still ``ok``; a rejected
replay is an ``http_error`` 400 with the validation category.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from callproof.attempt import Attempt, run_attempt
from callproof.client import Client
from callproof.emulator import EmulatorServer
from callproof.probe.scenarios import thinking_replay
from callproof.scenarios import tool_result
from callproof.targets import Timeouts
from tests.client.conftest import emulator_target

APIS = {
    "bedrock-converse-stream": "amazon.nova-pro-v1:0",
    "bedrock-converse": "amazon.nova-pro-v1:0",
    "openai-completions": "moonshotai/kimi-k2.5",
    "openai-responses": "moonshotai/kimi-k2.5",
}
RELAXED = Timeouts(connect=5, first_event=10, idle=10, deadline=30)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(preset="fast:reject_reasoning_replay", seed=8) as running:
        yield running


async def _one(
    server: EmulatorServer, api: str, model: str, fault: str | None, scenario: Any
) -> Attempt:
    async with Client() as client:
        target = emulator_target(server, api, model, fault=fault, timeouts=RELAXED)
        return await run_attempt(client, target, scenario)


@pytest.mark.parametrize("api", list(APIS))
def test_new_faults_have_outcomes(server: EmulatorServer, api: str) -> None:
    model = APIS[api]
    cases = ["reset_before_headers", "reset_mid_body", "slow_body:20000"]

    async def run() -> list[Attempt]:
        return list(
            await asyncio.gather(*(_one(server, api, model, f, tool_result()) for f in cases))
        )

    before, middle, slow = asyncio.run(run())
    assert before.outcome.value == "transport_error"
    assert middle.outcome.value in ("incomplete_stream", "transport_error", "protocol_error")
    assert middle.outcome.value != "ok"
    assert slow.outcome.value == "ok"
    assert "22" in slow.response.text  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("model", "outcome"),
    [("moonshotai.kimi-k2.5", "http_error"), ("mistral.mistral-large-3-675b-instruct", "ok")],
)
def test_thinking_replay_tests_the_third_hypothesis(
    server: EmulatorServer, model: str, outcome: str
) -> None:
    scenario = thinking_replay().scenario
    attempt = asyncio.run(_one(server, "bedrock-converse-stream", model, None, scenario))
    assert attempt.outcome.value == outcome
    if outcome == "http_error":
        assert attempt.error is not None
        assert attempt.error.status == 400
        assert attempt.error.error_type == "ValidationException"
        assert "reasoning content" in attempt.error.message
