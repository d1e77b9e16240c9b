"""Response plans (callproof.emulator.plans): memoised per body, bounded, and the same draws."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

from callproof.emulator.bedrock_auth import BedrockAuth
from callproof.emulator.bedrock_wire import frame_steps
from callproof.emulator.faults import Fault
from callproof.emulator.plans import CACHE_BYTES, MAX_PREPARED, Answer, BedrockPlanner, merged
from callproof.emulator.state import EmulatorState
from callproof.emulator.streaming import Headers, Send, Sleep, Step, StepResponse

from .conftest import FIRST_TURN, TOOL_RESULT_TURN, WEATHER_TOOL_CONFIG

MODEL = "amazon.nova-pro-v1:0"
PATH = b"/model/amazon.nova-pro-v1%3A0/converse-stream"


def ask(planner: BedrockPlanner, body: bytes, operation: str = "converse-stream") -> Answer:
    answer = planner.answer(
        method="POST",
        raw_path=PATH,
        model_id=MODEL,
        operation=operation,
        scheme="http",
        headers={"host": "127.0.0.1"},
        body=body,
        request_id="id",
    )
    if answer.on_close is not None:
        answer.on_close()
    return answer


def sent(answer: Answer) -> bytes:
    return b"".join(s.data for s in answer.steps if isinstance(s, Send))


def test_the_cache_is_bounded_and_gives_its_bytes_back() -> None:
    planner = BedrockPlanner(EmulatorState(preset="fast", seed=1), BedrockAuth())
    for i in range(3 * MAX_PREPARED):
        messages = [{"role": "user", "content": [{"text": f"Question number {i}?"}]}]
        ask(planner, json.dumps({"messages": messages}).encode())
    kept = list(planner._prepared.values())
    assert len(kept) == MAX_PREPARED
    held = sum(p.size + sum(s.size for s in p.streams.values()) for p in kept)
    assert CACHE_BYTES - planner.budget.left == held > 0


def test_large_bodies_are_never_kept() -> None:
    planner = BedrockPlanner(EmulatorState(preset="fast", seed=1), BedrockAuth())
    big = [{"role": "user", "content": [{"text": "x" * 100_000 + " Weather?"}]}]
    ask(planner, json.dumps({"messages": big}).encode())
    assert not planner._prepared


def test_plans_give_the_same_answers_as_a_fresh_planner_for_the_same_seed() -> None:
    """A warm cache and a cold one make the same draws: the same bytes, request by request
    (tool-call ids are drawn, so that turn is scripted per request)."""
    bodies = [
        json.dumps({"messages": TOOL_RESULT_TURN, "toolConfig": WEATHER_TOOL_CONFIG}).encode(),
        json.dumps({"messages": FIRST_TURN, "toolConfig": WEATHER_TOOL_CONFIG}).encode(),
    ]
    warm = BedrockPlanner(EmulatorState(preset="healthy", seed=9), BedrockAuth())
    answers = [sent(ask(warm, bodies[i % 2], "converse")) for i in range(6)]
    answers += [sent(ask(warm, bodies[i % 2])) for i in range(6)]
    cold_state = EmulatorState(preset="healthy", seed=9)
    again = []
    for i in range(12):
        cold = BedrockPlanner(cold_state, BedrockAuth())  # nothing cached, same state
        again.append(sent(ask(cold, bodies[i % 2], "converse" if i < 6 else "converse-stream")))
    assert answers == again
    assert len(set(answers[6:])) > 1  # paddings and ids differ from request to request


def played(steps: list[Step]) -> list[bytes]:
    """The body messages StepResponse sends for ``steps`` (one per write: the chunks)."""
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(10)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(dict(message))

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1"}
    asyncio.run(StepResponse(steps)(scope, receive, send))
    return [m["body"] for m in messages if m["type"] == "http.response.body" and m["body"]]


def test_merged_sends_are_the_same_chunks() -> None:
    steps: list[Step] = [
        Headers(),
        Send(b"a"),
        Send(b"b"),
        Sleep(0.001),
        Send(b"c", delay=0.001),
        Send(b"d"),
        Send(b"e", delay=0.002),
        Send(b"f"),
    ]
    assert played(merged(steps)) == played(steps) == [b"ab", b"cd", b"ef"]
    assert len(merged(steps)) == 5


def test_a_held_stream_plays_the_same_chunks_as_its_frame_steps() -> None:
    """The planned held stream (headers, the wait, one send) plays as frame_steps' twenty
    zero-delay sends after the wait did: the same bytes in the same chunks."""
    body = json.dumps({"messages": TOOL_RESULT_TURN, "toolConfig": WEATHER_TOOL_CONFIG}).encode()
    planner = BedrockPlanner(EmulatorState(preset="fast", seed=3), BedrockAuth())
    fault = Fault.parse("latency:0.001")
    answer = planner.answer(
        method="POST",
        raw_path=PATH,
        model_id=MODEL,
        operation="converse-stream",
        scheme="http",
        headers={"host": "127.0.0.1", "x-callproof-fault": str(fault)},
        body=body,
        request_id="id",
    )
    assert answer.on_close is not None
    answer.on_close()
    assert [type(s) for s in answer.steps] == [Headers, Sleep, Send]
    data = sent(answer)
    frames = []
    while data:  # eventstream frames: a 4-byte total length first
        size = int.from_bytes(data[:4], "big")
        frames.append(data[:size])
        data = data[size:]
    assert len(frames) > 5
    before = frame_steps(lambda: frames, [0.0] * len(frames), fault)
    assert len(before) == 2 + len(frames)
    assert played(answer.steps) == played(before) == [sent(answer)]
