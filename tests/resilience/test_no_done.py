"""An OpenAI chat stream that ends cleanly after its finish_reason without ``data: [DONE]``
is complete (a warning on the attempt, usage kept); one without a finish_reason is not. Real
client, real sockets: a raw loopback server plays the body, the emulator is the fallback."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from callproof.client import Client
from callproof.dialects.openai_chat import NO_DONE_WARNING
from callproof.errors import AllAttemptsFailed
from callproof.resilience import HedgePolicy, RoutePolicy, Router
from callproof.scenarios import tool_result
from callproof.targets import Endpoint, Target
from callproof.wire.sse import encode_event
from tests.client.rawserver import Script, raw_server

from .conftest import SHORT

CONV = tool_result().conversation
NO_HEDGE = RoutePolicy(hedge=HedgePolicy(mode="off"))
SSE = {"content-type": "text/event-stream"}


def chunk(delta: dict[str, Any], finish: str | None = None, **top: Any) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return encode_event(json.dumps({"id": "c1", "model": "m", "choices": [choice], **top}))


ANSWER = chunk({"role": "assistant", "content": "It is 22 degrees in Paris."})
FINISH = chunk({}, "stop")
USAGE = encode_event(
    json.dumps({"id": "c1", "choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 9}})
)


def raw_target(url: str) -> Target:
    return Target(
        name="no-done",
        api="openai-completions",
        model="m",
        endpoint=Endpoint(base_url=url + "/v1"),
        timeouts=SHORT,
    )


async def test_finish_reason_then_clean_close_is_complete_with_a_warning() -> None:
    script = Script(SSE, [(0, ANSWER), (0, FINISH), (0, USAGE)], then="end")
    # the raw server answers one request per connection: one client per call
    async with raw_server(script) as (url, _):
        async with Client() as client:
            router = Router("r", [raw_target(url)], client=client, policy=NO_HEDGE)
            resp = await router.complete(CONV)
        async with Client() as client:
            router = Router("r", [raw_target(url)], client=client, policy=NO_HEDGE)
            async with router.stream(CONV) as s:
                kinds = [event.kind async for event in s]
    assert resp.text == "It is 22 degrees in Paris."
    assert resp.stop_reason == "end_turn"
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (40, 9)
    [record] = resp.attempts
    assert (record["outcome"], record["warnings"]) == ("ok", [NO_DONE_WARNING])
    assert kinds[-1] == "stop"
    assert [(a["outcome"], a["warnings"]) for a in s.attempts] == [("ok", [NO_DONE_WARNING])]


async def test_a_stream_with_no_finish_reason_stays_incomplete_and_falls_over(
    make_target: Callable[..., Target],
) -> None:
    script = Script(SSE, [(0, ANSWER), (0, USAGE)], then="end")
    async with raw_server(script) as (url, _), Client() as client:
        fallback = make_target("emulator")
        router = Router("r", [raw_target(url), fallback], client=client, policy=NO_HEDGE)
        resp = await router.complete(CONV)
    assert [(a["target"], a["outcome"]) for a in resp.attempts] == [
        ("no-done", "incomplete_stream"),
        ("emulator", "ok"),
    ]
    assert "no finish_reason" in resp.attempts[0]["error"]["message"]
    assert resp.attempts[1]["warnings"] == []


async def test_a_cut_after_the_finish_reason_is_not_complete() -> None:
    # the socket drops mid-body (no terminating chunk): a broken connection, not a clean close
    script = Script(SSE, [(0, ANSWER), (0, FINISH), (0, USAGE)], then="close")
    async with raw_server(script) as (url, _), Client() as client:
        router = Router("r", [raw_target(url)], client=client, policy=NO_HEDGE)
        with pytest.raises(AllAttemptsFailed) as info:
            await router.complete(CONV)
    assert {e.outcome for e in info.value.exceptions} <= {"incomplete_stream", "transport_error"}
    assert all(a["outcome"] != "ok" for a in info.value.attempts)  # type: ignore[attr-defined]
