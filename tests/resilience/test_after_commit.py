"""After commit (streaming, unbuffered): once content reached the caller, a failure is raised
to the caller as a typed CallError, never a clean end and never a hang, and nothing falls
over (the caller already holds part of one answer). The emulator's faults, real wire."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from callproof.client import Client
from callproof.errors import CallError, StallMidStream
from callproof.resilience import HedgePolicy, RoutePolicy, Router
from callproof.scenarios import tool_result
from callproof.targets import Target

from .conftest import SHORT, ScriptedFaults

CONV = tool_result().conversation
NO_HEDGE = RoutePolicy(hedge=HedgePolicy(mode="off"))
APIS = {
    "bedrock": ("bedrock-converse-stream", "amazon.nova-pro-v1:0"),
    "openai": ("openai-completions", "moonshotai/kimi-k2.5"),
}
#: fault -> the outcomes it may end in once content was sent
FAULTS = {
    "stall_after:3": {"stall_mid_stream"},
    "close_without_stop": {"incomplete_stream"},
    "truncate_frame": {"incomplete_stream", "protocol_error"},
    "stream_exception:modelStreamErrorException": {"stream_exception"},
}


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("fault", FAULTS)
async def test_a_failure_after_content_is_raised_typed_and_nothing_falls_over(
    make_target: Callable[..., Target], api: str, fault: str
) -> None:
    wire, model = APIS[api]
    transport = ScriptedFaults([fault])
    async with Client(transport=transport) as client:
        router = Router(
            "r",
            [make_target("a", model, api=wire), make_target("b", model, api=wire)],
            client=client,
            policy=NO_HEDGE,
        )
        kinds: list[str] = []
        with pytest.raises(CallError) as info:
            async with router.stream(CONV) as s:
                async for event in s:
                    kinds.append(event.kind)
    err = info.value
    assert err.outcome in FAULTS[fault]
    assert s.output_reached
    assert any(k in ("text_delta", "thinking_delta", "tool_call_start") for k in kinds)
    assert "stop" not in kinds  # never a clean stop on a truncated answer
    assert transport.sent == [fault]  # no fallback after commit
    assert err.response is not None
    assert [(x["target"], x["outcome"]) for x in err.response.attempts] == [("a", err.outcome)]
    if isinstance(err, StallMidStream):
        assert err.limit_s == SHORT.idle  # the idle clock ended it, not a deadline
