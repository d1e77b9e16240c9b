"""Buffered mode: nothing reaches the caller until an attempt finished and passed, so a cut,
a stall, a malformed chunk, an empty answer or a tool call written as text falls back
invisibly. The emulator's forced faults, over the real client and wire, on both APIs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from callproof.client import Client
from callproof.conversation import Conversation, UserMessage
from callproof.errors import StallMidStream
from callproof.events import StreamStart
from callproof.resilience import HedgePolicy, RoutePolicy, Router
from callproof.scenarios import tool_result
from callproof.targets import Target

from .conftest import ScriptedFaults

CONV = tool_result().conversation
FIRST_TURN = Conversation(
    messages=(UserMessage.text("What is the weather in Paris?"),), tools=CONV.tools
)
NO_HEDGE = RoutePolicy(hedge=HedgePolicy(mode="off"))
MakeTarget = Callable[..., Target]

APIS = {
    "bedrock": ("bedrock-converse-stream", "amazon.nova-pro-v1:0"),
    "openai": ("openai-completions", "moonshotai/kimi-k2.5"),
}
#: fault -> the first attempt's outcome (per API where they differ)
FAULTS = {
    "stall_after:2": {"stall_mid_stream"},
    "truncate_frame": {"protocol_error", "incomplete_stream"},
    "corrupt_crc": {"protocol_error"},
    "close_without_stop": {"incomplete_stream"},
    "empty_response": {"empty_response"},
    "tool_call_in_text": {"tool_call_in_text"},
}


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("how", ["policy", "per_call"])
async def test_buffered_stream_falls_back_invisibly(
    make_target: MakeTarget, api: str, fault: str, how: str
) -> None:
    wire, model = APIS[api]
    transport = ScriptedFaults([fault, None])
    policy = NO_HEDGE.replace(buffered=how == "policy")
    conv = FIRST_TURN if fault == "empty_response" else CONV  # any turn, when buffered
    async with Client(transport=transport) as client:
        router = Router(
            "r",
            [make_target("a", model, api=wire), make_target("b", model, api=wire)],
            client=client,
            policy=policy,
        )
        seen_at_first_event: list[str] | None = None
        events = []
        stream = router.stream(conv, buffered=True if how == "per_call" else None)
        async with stream as s:
            async for event in s:
                if seen_at_first_event is None:
                    seen_at_first_event = [x["outcome"] for x in s.attempts]
                events.append(event)
    # the first event came only after the failed attempt was over and the second had passed
    assert seen_at_first_event is not None
    assert seen_at_first_event[0] in FAULTS[fault]
    assert seen_at_first_event[1:] == ["ok"]
    assert sum(isinstance(e, StreamStart) for e in events) == 1  # one attempt's events only
    assert events[-1].kind == "stop"
    assert s.response is not None
    assert s.response.text or s.response.tool_calls
    assert transport.sent == [fault, None]


async def test_unbuffered_stream_does_not_judge_a_first_turn_empty_answer(
    make_target: MakeTarget,
) -> None:
    transport = ScriptedFaults(["empty_response"])
    async with Client(transport=transport) as client:
        router = Router("r", [make_target("a"), make_target("b")], client=client, policy=NO_HEDGE)
        resp = await router.complete(FIRST_TURN)
    assert [x["outcome"] for x in resp.attempts] == ["empty_response"]
    assert transport.sent == ["empty_response"]


async def test_complete_with_buffered_judges_a_tool_call_written_as_text(
    make_target: MakeTarget,
) -> None:
    transport = ScriptedFaults(["tool_call_in_text", None])
    async with Client(transport=transport) as client:
        router = Router("r", [make_target("a"), make_target("b")], client=client, policy=NO_HEDGE)
        resp = await router.complete(CONV, buffered=True)
    assert [(x["target"], x["outcome"]) for x in resp.attempts] == [
        ("a", "tool_call_in_text"),
        ("b", "ok"),
    ]


async def test_the_same_stall_unbuffered_reaches_the_caller_as_an_error(
    make_target: MakeTarget,
) -> None:
    transport = ScriptedFaults(["stall_after:2"])
    async with Client(transport=transport) as client:
        router = Router("r", [make_target("a"), make_target("b")], client=client, policy=NO_HEDGE)
        with pytest.raises(StallMidStream):
            async with router.stream(CONV) as s:
                async for _ in s:
                    pass
    assert transport.sent == ["stall_after:2"]
