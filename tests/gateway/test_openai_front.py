"""The OpenAI fronts with the unmodified openai SDK: chat completions and Responses, streamed
and not, tool-use loops, models, the real 404/400 errors, and translation from a Bedrock
upstream (reasoning, tool ids, usage, finish reasons)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from callproof.gateway.server import GatewayServer
from tests.gateway.conftest import OPENAI_TOOLS, RESPONSES_TOOLS, GatewayFactory


def _client(gw: GatewayServer, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gw.url + "/v1",
        api_key="sk-test",
        max_retries=0,
        timeout=60,
        default_headers=headers or None,
    )


QUESTION = [{"role": "user", "content": "Weather for Tokyo?"}]


def _chat_loop(client: openai.OpenAI, model: str, *, stream: bool) -> tuple[Any, str]:
    """One tool-use loop: (the first turn's raw response, the final answer's text)."""
    messages: list[dict[str, Any]] = list(QUESTION)
    if stream:
        raw = client.chat.completions.with_raw_response.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            tools=OPENAI_TOOLS,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        calls: dict[int, dict[str, Any]] = {}
        finish = None
        usage = None
        for chunk in raw.parse():
            usage = chunk.usage or usage
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for tc in choice.delta.tool_calls or []:
                    call = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                    call["id"] = tc.id or call["id"]
                    if tc.function is not None:
                        call["name"] = tc.function.name or call["name"]
                        call["arguments"] += tc.function.arguments or ""
        assert finish == "tool_calls"
        assert usage is not None
        assert usage.total_tokens > 0
        tool_calls = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for _, c in sorted(calls.items())
        ]
    else:
        raw = client.chat.completions.with_raw_response.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            tools=OPENAI_TOOLS,  # type: ignore[arg-type]
        )
        completion = raw.parse()
        assert completion.choices[0].finish_reason == "tool_calls"
        tool_calls = [tc.model_dump() for tc in completion.choices[0].message.tool_calls or []]
    assert tool_calls
    assert json.loads(tool_calls[0]["function"]["arguments"]) == {"city": "Tokyo"}
    messages.append({"role": "assistant", "content": None, "tool_calls": tool_calls})
    for tc in tool_calls:
        messages.append({"role": "tool", "tool_call_id": tc["id"], "content": '{"temp": 22}'})
    answer = client.chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]
        tools=OPENAI_TOOLS,  # type: ignore[arg-type]
    )
    assert answer.choices[0].finish_reason == "stop"
    return raw, answer.choices[0].message.content or ""


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "chat-stream"])
def test_openai_chat_tool_loop(gateway: GatewayServer, stream: bool) -> None:
    raw, text = _chat_loop(_client(gateway), "moonshotai/kimi-k2.5", stream=stream)
    # route kimi serves it from its first target, Kimi on Bedrock: a Bedrock upstream
    assert raw.headers["x-callproof-served-by"] == "bedrock-kimi-k2.5"
    assert raw.headers["x-callproof-attempts"] == "1"
    assert "22" in text


def test_chat_model_field_and_reasoning_from_a_bedrock_upstream(gateway: GatewayServer) -> None:
    raw = _client(gateway).chat.completions.with_raw_response.create(
        model="moonshotai/kimi-k2.5",
        messages=QUESTION,  # type: ignore[arg-type]
    )
    completion = raw.parse()
    assert completion.model == "moonshotai.kimi-k2.5"  # the serving target's model
    message = completion.choices[0].message.model_dump()
    assert message.get("reasoning_content"), "Bedrock reasoning comes back as reasoning_content"
    assert raw.headers["x-callproof-raw-stop-reason"] == "end_turn"


@pytest.mark.parametrize("stream", [False, True], ids=["responses", "responses-stream"])
def test_openai_responses_tool_loop(gateway: GatewayServer, stream: bool) -> None:
    client = _client(gateway)
    first_input: list[dict[str, Any]] = [{"role": "user", "content": "Weather for Tokyo?"}]
    if stream:
        with client.responses.stream(
            model="moonshotai/kimi-k2.5",
            input=first_input,
            tools=RESPONSES_TOOLS,  # type: ignore[arg-type]
        ) as s:
            kinds = [event.type for event in s]
            first = s.get_final_response()
        assert kinds[0] == "response.created"
        assert "response.function_call_arguments.delta" in kinds
        assert kinds[-1] == "response.completed"
    else:
        first = client.responses.create(
            model="moonshotai/kimi-k2.5",
            input=first_input,
            tools=RESPONSES_TOOLS,  # type: ignore[arg-type]
        )
    assert first.status == "completed"
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls
    assert json.loads(calls[0].arguments) == {"city": "Tokyo"}
    assert first.usage is not None
    assert first.usage.total_tokens > 0
    follow = [
        *first_input,
        *[c.model_dump(exclude_none=True) for c in calls],
        *[
            {"type": "function_call_output", "call_id": c.call_id, "output": '{"temp": 22}'}
            for c in calls
        ],
    ]
    answer = client.responses.create(
        model="moonshotai/kimi-k2.5",
        input=follow,
        tools=RESPONSES_TOOLS,  # type: ignore[arg-type]
    )
    assert answer.status == "completed"
    assert "22" in answer.output_text


def test_models_lists_the_served_ids(gateway: GatewayServer) -> None:
    ids = [m.id for m in _client(gateway).models.list()]
    assert "moonshotai/kimi-k2.5" in ids
    assert "kimi" in ids


def test_unknown_model_is_openais_404(gateway: GatewayServer) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        _client(gateway).chat.completions.create(model="gpt-nope", messages=QUESTION)  # type: ignore[arg-type]
    body: Any = info.value.body
    assert body["code"] == "model_not_found"


def test_bad_request_is_openais_400(gateway: GatewayServer) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _client(gateway).chat.completions.create(
            model="moonshotai/kimi-k2.5",
            messages=[{"role": "wizard", "content": "hi"}],  # type: ignore[list-item]
        )
    assert info.value.status_code == 400


def test_tool_ids_are_valid_for_openai_and_map_back(make_gateway: GatewayFactory) -> None:
    # Kimi on Bedrock issues ids like functions.get_weather:0; OpenAI ids may not hold . or :
    gw = make_gateway()
    raw, text = _chat_loop(_client(gw), "moonshotai/kimi-k2.5", stream=False)
    completion = raw.parse()
    call_id = completion.choices[0].message.tool_calls[0].id
    assert all(c.isalnum() or c in "_-" for c in call_id)
    assert "22" in text
