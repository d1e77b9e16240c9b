"""The Responses API against the running emulator with the real openai SDK: streamed events
(text, function calls, reasoning), the SDK's own stream accumulator, non-streamed, and faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from callproof.emulator.faults import FaultPlan
from callproof.emulator.server import EmulatorServer
from callproof.wire.sse import SSEDecoder, SSEEvent
from tests.emulator._openai import OpenAIClients

OPENAI = "gpt-4o"
ROUTER = "moonshotai/kimi-k2.5"

TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
AFTER_RESULT: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather for Tokyo?"},
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city": "Tokyo"}',
    },
    {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 22}'},
]
PLAN = FaultPlan.from_mapping(
    {
        "models": [
            {"id": OPENAI, "flavour": "openai", "first_event_s": 0, "tokens_per_s": 0, "jitter": 0}
        ]
    }
)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(preset="fast", faults=PLAN, seed=5) as running:
        yield running
    _CLIENTS.close()


_CLIENTS = OpenAIClients()


def _client(server: EmulatorServer, timeout: float = 3.0) -> Any:
    return _CLIENTS.get(server.url, timeout)


def _events(
    server: EmulatorServer,
    model: str,
    input: Any,
    *,
    fault: str | None = None,
    timeout: float = 3.0,
) -> list[Any]:
    headers = {"x-callproof-fault": fault} if fault else None
    stream = _client(server, timeout).responses.create(
        model=model,
        input=input,
        tools=[TOOL],
        stream=True,
        extra_headers=headers,
    )
    return list(stream)


@pytest.mark.parametrize("model", [OPENAI, ROUTER])
def test_streamed_function_call(server: EmulatorServer, model: str) -> None:
    events = _events(server, model, "Weather for Tokyo?")
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    added = [e.item for e in events if e.type == "response.output_item.added"]
    call = next(i for i in added if i.type == "function_call")
    assert call.name == "get_weather"
    assert call.arguments == ""
    arguments = "".join(
        e.delta for e in events if e.type == "response.function_call_arguments.delta"
    )
    assert json.loads(arguments) == {"city": "Tokyo"}
    final = events[-1].response
    assert final.status == "completed"
    assert final.usage is not None
    assert final.usage.total_tokens > 0
    assert any(item.type == "function_call" for item in final.output)


def test_streamed_parallel_function_calls(server: EmulatorServer) -> None:
    events = _events(server, OPENAI, "Weather for Tokyo and Paris?")
    calls = [
        e.item
        for e in events
        if e.type == "response.output_item.done" and e.item.type == "function_call"
    ]
    assert [json.loads(c.arguments)["city"] for c in calls] == ["Tokyo", "Paris"]
    assert len({c.call_id for c in calls}) == 2


def test_streamed_text_and_reasoning_with_the_sdk_accumulator(server: EmulatorServer) -> None:
    with _client(server).responses.stream(
        model=ROUTER,
        input=AFTER_RESULT,
        tools=[TOOL],
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.reasoning_summary_text.delta" in kinds
    assert "response.output_text.delta" in kinds
    assert "22" in final.output_text
    reasoning = next(item for item in final.output if item.type == "reasoning")
    assert reasoning.summary[0].text


def test_openai_flavour_sends_event_lines(server: EmulatorServer) -> None:
    body = {"model": OPENAI, "input": "Weather for Tokyo?", "tools": [TOOL], "stream": True}
    raw = httpx.post(server.url + "/v1/responses", json=body, timeout=3).content
    events = [e for e in SSEDecoder().feed(raw) if isinstance(e, SSEEvent)]
    assert all(e.event == json.loads(e.data)["type"] for e in events)
    router = httpx.post(
        server.url + "/v1/responses", json={**body, "model": ROUTER}, timeout=3
    ).content
    routed = [e for e in SSEDecoder().feed(router) if isinstance(e, SSEEvent)]
    assert {e.event for e in routed} == {"message"}  # OpenRouter sends data lines only
    assert routed[-1].data == "[DONE]"


@pytest.mark.parametrize("model", [OPENAI, ROUTER])
def test_non_streamed(server: EmulatorServer, model: str) -> None:
    client = _client(server)
    first = client.responses.create(model=model, input="Weather for Tokyo?", tools=[TOOL])
    assert first.status == "completed"
    call = next(item for item in first.output if item.type == "function_call")
    assert json.loads(call.arguments) == {"city": "Tokyo"}
    second = client.responses.create(model=model, input=AFTER_RESULT, tools=[TOOL])
    assert "22" in second.output_text


def test_instructions_and_validation(server: EmulatorServer) -> None:
    client = _client(server)
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=OPENAI, input=[])
    assert info.value.param == "input"
    ok = client.responses.create(model=OPENAI, input="hi", instructions="Be brief.")
    assert ok.instructions == "Be brief."


# -- faults ----------------------------------------------------------------------------------


def test_hangs_time_out(server: EmulatorServer) -> None:
    with pytest.raises(openai.APITimeoutError):
        _events(server, OPENAI, "Weather for Tokyo?", fault="hang_before_headers", timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        _events(server, OPENAI, "Weather for Tokyo?", fault="hang_no_events", timeout=0.3)


def test_stall_after(server: EmulatorServer) -> None:
    stream = _client(server, 0.3).responses.create(
        model=OPENAI,
        input="Weather for Tokyo?",
        stream=True,
        extra_headers={"x-callproof-fault": "stall_after:4"},
    )
    got = []
    with pytest.raises(openai.APITimeoutError):
        for event in stream:
            got.append(event)
    assert len(got) == 4


@pytest.mark.parametrize("model", [OPENAI, ROUTER])
def test_stream_exception_is_response_failed(server: EmulatorServer, model: str) -> None:
    events = _events(server, model, AFTER_RESULT, fault="stream_exception:throttlingException")
    last = events[-1]
    assert last.type == "response.failed"
    assert last.response.error.code == "rate_limit_exceeded"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "response.completed" not in [e.type for e in events]


def test_close_without_stop(server: EmulatorServer) -> None:
    events = _events(server, OPENAI, AFTER_RESULT, fault="close_without_stop")
    assert events
    assert all(e.type not in ("response.completed", "response.incomplete") for e in events)


def test_truncate_frame_and_corrupt_crc(server: EmulatorServer) -> None:
    events = _events(server, OPENAI, AFTER_RESULT, fault="truncate_frame")
    assert events
    assert events[-1].type != "response.completed"
    with pytest.raises(json.JSONDecodeError):
        _events(server, OPENAI, AFTER_RESULT, fault="corrupt_crc")


def test_http_error(server: EmulatorServer) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        _events(server, ROUTER, AFTER_RESULT, fault="http_error:429")
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.status_code == 429


def test_content_faults(server: EmulatorServer) -> None:
    incomplete = _events(server, OPENAI, AFTER_RESULT, fault="stop_reason:max_tokens")[-1]
    assert incomplete.type == "response.incomplete"
    assert incomplete.response.incomplete_details.reason == "max_output_tokens"
    empty = _events(server, OPENAI, AFTER_RESULT, fault="empty_response")[-1].response
    assert empty.output_text == ""
    markup = _events(server, OPENAI, "Weather for Tokyo?", fault="tool_call_in_text")[-1].response
    # a family without its own documented text form writes the Hermes/Qwen <tool_call>
    assert "<tool_call>" in markup.output_text
    assert not [i for i in markup.output if i.type == "function_call"]
    broken = _events(server, OPENAI, "Weather for Tokyo?", fault="malformed_tool_args")[-1]
    call = next(i for i in broken.response.output if i.type == "function_call")
    with pytest.raises(json.JSONDecodeError):
        json.loads(call.arguments)
