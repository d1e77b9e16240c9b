"""OpenAI-compatible request decoding: chat and Responses bodies -> Conversation, and the 400s
the real API gives for bad ones; hostile bodies over ASGI get 4xx, never a 500."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from callproof.conversation import (
    AssistantMessage,
    ImagePart,
    ThinkingPart,
    ToolCall,
    ToolResult,
    UserMessage,
)
from callproof.emulator.app import create_app
from callproof.emulator.openai_decode import OpenAIRequestError, decode_chat
from callproof.emulator.openai_responses import decode_responses
from callproof.emulator.openai_routes import openai_routes
from callproof.emulator.server import EmulatorServer
from callproof.emulator.state import EmulatorState, Limits
from tests.recordings import cassette

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def _chat(**fields: Any) -> bytes:
    body: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Weather for Tokyo?"}],
    }
    body.update(fields)
    return json.dumps(body).encode()


def _error(body: bytes, *, responses: bool = False) -> OpenAIRequestError:
    with pytest.raises(OpenAIRequestError) as info:
        (decode_responses if responses else decode_chat)(body)
    return info.value


def test_chat_tool_round_trip_becomes_the_neutral_conversation() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather for Tokyo and Paris?"},
        {
            "role": "assistant",
            "content": None,
            "reasoning": "Two cities.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp":22}'},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "18"}]},
    ]
    request = decode_chat(
        _chat(
            messages=messages,
            tools=[WEATHER],
            stream=True,
            stream_options={"include_usage": True},
            max_completion_tokens=100,
            temperature=0.5,
            stop="END",
            tool_choice="required",
            provider={"only": ["moonshotai"], "allow_fallbacks": False, "order": ["a"]},
        )
    )
    conv = request.conversation
    assert request.stream
    assert request.include_usage
    assert request.provider == {"only": ["moonshotai"], "allow_fallbacks": False, "order": ["a"]}
    assert conv.system == "Be brief."
    assert conv.tools[0].name == "get_weather"
    assert conv.settings.max_tokens == 100
    assert conv.settings.temperature == 0.5
    assert conv.settings.stop_sequences == ("END",)
    assert conv.settings.tool_choice == "any"
    user, assistant, results = conv.messages
    assert user == UserMessage.text("Weather for Tokyo and Paris?")
    assert isinstance(assistant, AssistantMessage)
    assert assistant.content[0] == ThinkingPart(text="Two cities.")
    assert [c.arguments for c in assistant.tool_calls] == [{"city": "Tokyo"}, {"city": "Paris"}]
    assert results == UserMessage(
        content=(
            ToolResult(tool_call_id="call_a", content='{"temp":22}'),
            ToolResult(tool_call_id="call_b", content="18"),
        )
    )


def test_chat_images_and_named_tool_choice() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    request = decode_chat(
        _chat(
            messages=[{"role": "user", "content": content}],
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
    )
    (user,) = request.conversation.messages
    assert isinstance(user.content[1], ImagePart)
    assert user.content[1].media_type == "image/png"
    assert request.conversation.settings.tool_choice == {"tool": "get_weather"}


def test_recorded_requests_decode() -> None:
    """Every real chat request body in the recordings is accepted."""
    seen = 0
    for name in ("llmor_tool_calls_chat_603cd08.yaml", "pa_temporal_complex_agent_run.yaml"):
        for interaction in cassette(name):
            request = interaction["request"]
            if not str(request.get("uri", "")).endswith("/chat/completions"):
                continue
            body = request.get("body")
            raw = body.encode() if isinstance(body, str) else json.dumps(request["parsed_body"])
            decoded = decode_chat(raw if isinstance(raw, bytes) else raw.encode())
            assert decoded.conversation.messages
            seen += 1
    assert seen >= 4


def test_recorded_responses_requests_decode() -> None:
    bodies = [
        i["request"]["body"]
        for i in cassette("llmor_tool_calls.yaml")
        if str(i["request"].get("uri", "")).endswith("/responses")
    ]
    assert len(bodies) == 2
    first = decode_responses(bodies[0].encode())
    assert first.conversation.tools[0].name == "llm_version"
    second = decode_responses(bodies[1].encode())
    _user, assistant, results = second.conversation.messages
    assert isinstance(assistant, AssistantMessage)
    assert assistant.tool_calls == [
        ToolCall(
            id="call_faKQ4JI18zZQE2oynAbvwip4", name="llm_version", arguments={}, arguments_raw="{}"
        )
    ]
    assert results == UserMessage(
        content=(ToolResult(tool_call_id="call_faKQ4JI18zZQE2oynAbvwip4", content="0.0+test"),)
    )


def test_responses_input_items_and_instructions() -> None:
    body = {
        "model": "gpt-4o",
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather for Tokyo?"}]},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Need a tool."}]},
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "get_weather",
                "arguments": '{"city":"Tokyo"}',
            },
            {"type": "function_call_output", "call_id": "c1", "output": '{"temp":22}'},
        ],
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
        "max_output_tokens": 64,
        "tool_choice": {"type": "function", "name": "get_weather"},
    }
    request = decode_responses(json.dumps(body).encode())
    conv = request.conversation
    assert conv.system == "Be brief."
    assert conv.settings.max_tokens == 64
    assert conv.settings.tool_choice == {"tool": "get_weather"}
    _, assistant, results = conv.messages
    assert isinstance(assistant, AssistantMessage)
    assert isinstance(assistant.content[0], ThinkingPart)
    assert assistant.tool_calls[0].id == "c1"
    assert isinstance(results.content[0], ToolResult)
    assert request.tools_raw[0]["name"] == "get_weather"


@pytest.mark.parametrize(
    ("body", "param", "code", "fragment"),
    [
        (b"{not json", None, None, "could not parse the JSON body"),
        (b"[1, 2]", None, "invalid_type", "expected an object"),
        (json.dumps({"messages": []}).encode(), None, None, "you must provide a model"),
        (_chat(messages=None), "messages", "missing_required_parameter", "'messages'"),
        (_chat(messages=[]), "messages", "empty_array", "empty array"),
        (_chat(messages=["hi"]), "messages[0]", "invalid_type", "expected an object"),
        (
            _chat(messages=[{"role": "bot", "content": "x"}]),
            "messages[0].role",
            "invalid_value",
            "'bot'",
        ),
        (
            _chat(
                messages=[
                    {"role": "user", "content": "q"},
                    {"role": "tool", "tool_call_id": "x", "content": "r"},
                ]
            ),
            "messages.[1].role",
            None,
            "must be a response to a preceeding message",
        ),
        (
            _chat(
                messages=[
                    {"role": "user", "content": "q"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}"},
                            }
                        ],
                    },
                    {"role": "user", "content": "again"},
                ]
            ),
            "messages.[1].role",
            None,
            "did not have response messages: call_1",
        ),
        (_chat(temperature=3), "temperature", "decimal_above_max_value", "<= 2"),
        (_chat(temperature="hot"), "temperature", "invalid_type", "expected a number"),
        (_chat(max_tokens=0), "max_tokens", "integer_below_min_value", ">= 1"),
        (_chat(max_tokens=True), "max_tokens", "invalid_type", "got a boolean"),
        (
            _chat(tools=[{"type": "function", "function": {"name": "bad name!"}}]),
            "tools[0].function.name",
            "invalid_value",
            "does not match pattern",
        ),
        (_chat(tool_choice="required"), "tool_choice", None, "only allowed when 'tools'"),
        (
            _chat(stream_options={"include_usage": True}),
            "stream_options",
            None,
            "only allowed when 'stream' is enabled",
        ),
        (
            _chat(provider={"only": "moonshotai"}),
            "provider.only",
            "invalid_type",
            "expected an array",
        ),
        (
            _chat(stop=["a", "b", "c", "d", "e"]),
            "stop",
            "array_above_max_length",
            "maximum length 4",
        ),
    ],
)
def test_chat_validation_errors(
    body: bytes, param: str | None, code: str | None, fragment: str
) -> None:
    error = _error(body)
    assert error.status == 400
    assert error.param == param
    assert error.code == code
    assert fragment in error.message
    assert error.body()["error"]["type"] == "invalid_request_error"
    assert set(error.body()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"model": "m"}, "input", "Missing required parameter"),
        ({"model": "m", "input": []}, "input", "empty array"),
        (
            {
                "model": "m",
                "input": [{"type": "function_call_output", "call_id": "x", "output": "r"}],
            },
            "input",
            "No tool call found",
        ),
        ({"model": "m", "input": "hi", "max_output_tokens": 8}, "max_output_tokens", ">= 16"),
        ({"model": "m", "input": [{"type": "nonsense"}]}, "input[0].type", "'nonsense'"),
        (
            {"model": "m", "input": "hi", "tools": [{"type": "function"}]},
            "tools[0].name",
            "Missing required parameter",
        ),
    ],
)
def test_responses_validation_errors(body: dict[str, Any], param: str, fragment: str) -> None:
    error = _error(json.dumps(body).encode(), responses=True)
    assert error.status == 400
    assert error.param == param
    assert fragment in error.message


# -- hostile bodies over ASGI --------------------------------------------------------------

_APP = create_app(preset="fast", seed=7)

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "model",
                    "messages",
                    "role",
                    "content",
                    "tool_calls",
                    "tools",
                    "function",
                    "name",
                    "arguments",
                    "id",
                    "tool_call_id",
                    "type",
                    "input",
                    "call_id",
                    "output",
                    "stream",
                    "max_tokens",
                    "temperature",
                    "provider",
                    "stream_options",
                    "text",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


def _mutated() -> st.SearchStrategy[dict[str, Any]]:
    """Near-valid requests with one field swapped for arbitrary JSON."""
    base = {
        "model": "moonshotai/kimi-k2.5",
        "messages": [{"role": "user", "content": "Weather for Tokyo?"}],
        "input": "Weather for Tokyo?",
        "tools": [WEATHER],
    }
    return st.builds(
        lambda key, value: {**base, key: value},
        st.sampled_from(
            [
                "model",
                "messages",
                "input",
                "tools",
                "tool_choice",
                "stream",
                "max_tokens",
                "temperature",
                "provider",
                "stop",
                "reasoning",
            ]
        ),
        _json,
    )


async def _post(path: str, content: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=_APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
        return await client.post(
            path, content=content, headers={"content-type": "application/json"}
        )


def _assert_clean(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str)
        assert error["message"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(["/v1/chat/completions", "/v1/responses"]),
    body=st.one_of(_json.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64)),
)
async def test_hostile_bodies_get_4xx_not_5xx(path: str, body: bytes) -> None:
    _assert_clean(await _post(path, body))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(["/v1/chat/completions", "/v1/responses"]), body=_mutated())
async def test_near_valid_bodies_get_4xx_or_an_answer(path: str, body: dict[str, Any]) -> None:
    _assert_clean(await _post(path, json.dumps(body).encode()))


async def test_oversized_body_gets_413() -> None:
    state = EmulatorState(preset="fast", seed=1, limits=Limits(max_body_bytes=100))
    app = Starlette(routes=openai_routes(state))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
        response = await client.post("/v1/chat/completions", content=_chat(pad="x" * 500))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def test_unknown_model_is_404_model_not_found() -> None:
    response = await _post("/v1/chat/completions", _chat(model="nope/never"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


async def test_bad_fault_header_is_400() -> None:
    transport = httpx.ASGITransport(app=_APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
        response = await client.post(
            "/v1/chat/completions",
            content=_chat(model="moonshotai/kimi-k2.5"),
            headers={"x-callproof-fault": "explode"},
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-callproof-fault"


def test_stream_slots_are_bounded_and_released() -> None:
    """A hung stream holds a slot; the next request gets a 429; the slot frees on disconnect."""
    app = create_app(preset="fast", seed=1, limits=Limits(max_streams=1))
    body = json.loads(_chat(model="moonshotai/kimi-k2.5", stream=True))
    with EmulatorServer(app=app) as server:
        url = server.url + "/v1/chat/completions"
        with (
            httpx.Client(timeout=2) as client,
            client.stream(
                "POST", url, json=body, headers={"x-callproof-fault": "hang_no_events"}
            ) as hung,
        ):
            assert hung.status_code == 200
            refused = httpx.post(url, json=body, timeout=2)
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        deadline = time.monotonic() + 2
        while server.state.active_streams and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.state.active_streams == 0
        assert httpx.post(url, json=body, timeout=2).status_code == 200
