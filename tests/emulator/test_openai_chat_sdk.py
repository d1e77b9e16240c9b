"""Chat completions against the running emulator with the real openai SDK: text, tool calls
(single and parallel), reasoning fields, the usage chunk, and every fault as the SDK surfaces it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from callproof.emulator import openai_routes
from callproof.emulator.faults import FaultPlan
from callproof.emulator.server import EmulatorServer
from callproof.wire.sse import SSEComment, SSEDecoder, SSEEvent
from tests.emulator._openai import OpenAIClients

OPENAI = "gpt-4o"  # plain OpenAI flavour, no reasoning
THINKER = "o-thinker"  # plain OpenAI flavour that streams reasoning_content
ROUTER = "moonshotai/kimi-k2.5"  # the seed's OpenRouter-flavoured Kimi
SLOW_ROUTER = "slow/kimi"  # OpenRouter flavour with a first-token delay

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
QUESTION: list[dict[str, Any]] = [{"role": "user", "content": "Weather for Tokyo?"}]
AFTER_RESULT: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather for Tokyo?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Tokyo"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 22}'},
]

PLAN = FaultPlan.from_mapping(
    {
        "models": [
            {"id": OPENAI, "flavour": "openai", "first_event_s": 0, "tokens_per_s": 0, "jitter": 0},
            {
                "id": THINKER,
                "flavour": "openai",
                "thinking": True,
                "first_event_s": 0,
                "tokens_per_s": 0,
                "jitter": 0,
            },
            {
                "id": SLOW_ROUTER,
                "flavour": "openrouter",
                "provider": "Moonshot AI",
                "first_event_s": 0.35,
                "tokens_per_s": 0,
                "jitter": 0,
            },
        ]
    }
)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(preset="fast", faults=PLAN, seed=11) as running:
        yield running
    _CLIENTS.close()


_CLIENTS = OpenAIClients()


def _client(server: EmulatorServer, timeout: float = 3.0) -> Any:
    return _CLIENTS.get(server.url, timeout)


def _stream(
    server: EmulatorServer,
    model: str,
    messages: list[dict[str, Any]],
    *,
    fault: str | None = None,
    timeout: float = 3.0,
    **kwargs: Any,
) -> Any:
    headers = {"x-callproof-fault": fault} if fault else None
    return _client(server, timeout).chat.completions.create(
        model=model,
        messages=messages,
        tools=[WEATHER],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=headers,
        **kwargs,
    )


def _collect(stream: Any) -> tuple[list[Any], str, dict[int, dict[str, str]], list[str]]:
    """(chunks, text, tool calls by index, finish reasons)."""
    chunks = list(stream)
    text = ""
    calls: dict[int, dict[str, str]] = {}
    finishes: list[str] = []
    for chunk in chunks:
        for choice in chunk.choices:
            delta = choice.delta
            text += delta.content or ""
            for call in delta.tool_calls or []:
                slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                if call.id:
                    slot["id"] = call.id
                if call.function and call.function.name:
                    slot["name"] = call.function.name
                if call.function and call.function.arguments:
                    slot["arguments"] += call.function.arguments
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    return chunks, text, calls, finishes


# -- healthy streams -----------------------------------------------------------------------


def test_streamed_tool_call_openai_flavour(server: EmulatorServer) -> None:
    chunks, text, calls, finishes = _collect(_stream(server, OPENAI, QUESTION))
    assert text == ""
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["id"].startswith("call_")
    assert json.loads(calls[0]["arguments"]) == {"city": "Tokyo"}
    assert finishes == ["tool_calls"]
    assert chunks[0].choices[0].delta.role == "assistant"
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage.total_tokens == (
        usage_chunk.usage.prompt_tokens + usage_chunk.usage.completion_tokens
    )


def test_first_tool_fragment_has_id_name_and_empty_arguments(server: EmulatorServer) -> None:
    chunks = list(_stream(server, OPENAI, QUESTION))
    fragments = [
        c.choices[0].delta.tool_calls[0]
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    ]
    head, *rest = fragments
    assert head.id
    assert head.type == "function"
    assert head.function.name == "get_weather"
    assert head.function.arguments == ""
    assert rest
    assert all(f.id is None and f.function.name is None for f in rest)


def test_streamed_parallel_tool_calls(server: EmulatorServer) -> None:
    messages = [{"role": "user", "content": "Weather for Tokyo and Paris?"}]
    _, _, calls, finishes = _collect(_stream(server, OPENAI, messages))
    assert sorted(calls) == [0, 1]
    assert [json.loads(calls[i]["arguments"])["city"] for i in (0, 1)] == ["Tokyo", "Paris"]
    assert calls[0]["id"] != calls[1]["id"]
    assert finishes == ["tool_calls"]


def test_parallel_tool_calls_false_gives_one_call(server: EmulatorServer) -> None:
    messages = [{"role": "user", "content": "Weather for Tokyo and Paris?"}]
    _, _, calls, _ = _collect(_stream(server, OPENAI, messages, parallel_tool_calls=False))
    assert list(calls) == [0]


def test_streamed_text_after_tool_result(server: EmulatorServer) -> None:
    _, text, calls, finishes = _collect(_stream(server, OPENAI, AFTER_RESULT))
    assert "22" in text
    assert calls == {}
    assert finishes == ["stop"]


def test_openrouter_flavour_reasoning_provider_and_native_finish(server: EmulatorServer) -> None:
    chunks, text, _, finishes = _collect(_stream(server, ROUTER, AFTER_RESULT))
    assert "22" in text
    assert finishes == ["stop"]
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning") or "" for c in chunks if c.choices
    )
    assert reasoning.strip()
    details = [
        d
        for c in chunks
        if c.choices
        for d in (c.choices[0].delta.model_extra or {}).get("reasoning_details") or []
    ]
    assert details
    assert details[0]["type"] == "reasoning.text"
    assert all(c.model_extra["provider"] == "Moonshot AI" for c in chunks)
    natives = [
        c.choices[0].model_extra["native_finish_reason"]
        for c in chunks
        if c.choices and c.choices[0].finish_reason
    ]
    assert natives == ["stop"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.model_extra["cost"] > 0


def test_openai_thinking_model_streams_reasoning_content(server: EmulatorServer) -> None:
    chunks, _, _, _ = _collect(_stream(server, THINKER, QUESTION))
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
        for c in chunks
        if c.choices
    )
    assert "get_weather" in reasoning


def test_no_usage_chunk_without_stream_options(server: EmulatorServer) -> None:
    stream = _client(server).chat.completions.create(
        model=OPENAI,
        messages=QUESTION,
        stream=True,
    )
    chunks = list(stream)
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_provider_routing_field_is_accepted(server: EmulatorServer) -> None:
    _, text, _, _ = _collect(
        _stream(
            server,
            ROUTER,
            AFTER_RESULT,
            extra_body={
                "provider": {
                    "only": ["moonshotai"],
                    "allow_fallbacks": False,
                    "order": ["moonshotai"],
                }
            },
        )
    )
    assert "22" in text


async def test_async_client_streams(server: EmulatorServer) -> None:
    client: Any = openai.AsyncOpenAI(
        base_url=server.url + "/v1", api_key="test-key", max_retries=0, timeout=3
    )
    async with client:
        stream = await client.chat.completions.create(
            model=OPENAI, messages=AFTER_RESULT, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert "22" in text


# -- not streamed ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", [OPENAI, ROUTER])
def test_non_streamed_tool_call_and_answer(server: EmulatorServer, model: str) -> None:
    client = _client(server)
    first = client.chat.completions.create(
        model=model,
        messages=QUESTION,
        tools=[WEATHER],
    )
    assert first.object == "chat.completion"
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Tokyo"}
    assert first.usage is not None
    assert first.usage.prompt_tokens > 0
    second = client.chat.completions.create(
        model=model,
        messages=AFTER_RESULT,
        tools=[WEATHER],
    )
    assert "22" in (second.choices[0].message.content or "")
    assert second.choices[0].finish_reason == "stop"


def test_non_streamed_openrouter_reasoning_like_the_kimi_recording(
    server: EmulatorServer,
) -> None:
    completion = _client(server).chat.completions.create(
        model=ROUTER, messages=[{"role": "user", "content": "What is 2+2?"}]
    )
    message = completion.choices[0].message
    extra = message.model_extra or {}
    assert extra["reasoning"]
    assert extra["reasoning_details"][0]["type"] == "reasoning.text"
    assert completion.model_extra["provider"] == "Moonshot AI"
    assert completion.choices[0].model_extra["native_finish_reason"] == "stop"


def test_max_tokens_gives_finish_length(server: EmulatorServer) -> None:
    completion = _client(server).chat.completions.create(
        model=OPENAI,
        messages=AFTER_RESULT,
        max_tokens=2,
    )
    assert completion.choices[0].finish_reason == "length"


def test_models_list(server: EmulatorServer) -> None:
    ids = {m.id for m in _client(server).models.list()}
    assert {OPENAI, THINKER, ROUTER} <= ids
    assert "moonshotai.kimi-k2.5" not in ids  # Bedrock models are not served here
    assert _client(server).models.retrieve(ROUTER).id == ROUTER
    with pytest.raises(openai.NotFoundError):
        _client(server).models.retrieve("nope")


def test_bad_request_surfaces_as_bad_request_error(server: EmulatorServer) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _client(server).chat.completions.create(
            model=OPENAI,
            messages=QUESTION,
            temperature=5,
        )
    assert info.value.code == "decimal_above_max_value"
    assert info.value.param == "temperature"


def test_unknown_model_is_not_found(server: EmulatorServer) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        _client(server).chat.completions.create(model="nope", messages=QUESTION)
    assert info.value.code == "model_not_found"


# -- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [OPENAI, ROUTER])
def test_hang_before_headers_times_out(server: EmulatorServer, model: str) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        _stream(server, model, QUESTION, fault="hang_before_headers", timeout=0.3)
    assert time.monotonic() - started < 2


def test_hang_no_events_times_out_while_iterating(server: EmulatorServer) -> None:
    stream = _stream(server, OPENAI, QUESTION, fault="hang_no_events", timeout=0.3)
    assert stream.response.status_code == 200
    with pytest.raises(openai.APITimeoutError):
        next(iter(stream))


def _raw_sse(
    server: EmulatorServer,
    model: str,
    fault: str | None,
    seconds: float,
    *,
    enough_comments: int | None = None,
) -> tuple[list[SSEComment], list[SSEEvent]]:
    """Read a stream's raw SSE items for ``seconds`` (for streams that never end), or until
    ``enough_comments`` comments came."""
    body = {"model": model, "messages": QUESTION, "tools": [WEATHER], "stream": True}
    headers = {"x-callproof-fault": fault} if fault else {}
    decoder = SSEDecoder()
    items: list[Any] = []
    deadline = time.monotonic() + seconds
    with (
        httpx.Client(timeout=seconds) as client,
        client.stream(
            "POST", server.url + "/v1/chat/completions", json=body, headers=headers
        ) as response,
    ):
        try:
            for data in response.iter_raw():
                items += decoder.feed(data)
                comments = sum(isinstance(i, SSEComment) for i in items)
                if time.monotonic() > deadline or (
                    enough_comments is not None and comments >= enough_comments
                ):
                    break
        except httpx.ReadTimeout:
            pass
    return (
        [i for i in items if isinstance(i, SSEComment)],
        [i for i in items if isinstance(i, SSEEvent)],
    )


def test_openrouter_hang_no_events_sends_only_keepalives(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What fools a byte-counting timeout: bytes keep coming, events never do."""
    monkeypatch.setattr(openai_routes, "KEEPALIVE_INTERVAL_S", 0.05)
    # until three keep-alives came (0.15 s idle; 0.5 s was too short under two CPU hogs)
    comments, events = _raw_sse(server, ROUTER, "hang_no_events", 15.0, enough_comments=3)
    assert len(comments) >= 3
    assert {c.text for c in comments} == {"OPENROUTER PROCESSING"}
    assert events == []


def test_openrouter_keepalives_before_first_token(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_routes, "KEEPALIVE_INTERVAL_S", 0.1)
    comments, events = _raw_sse(server, SLOW_ROUTER, None, 2.0)
    assert len(comments) >= 3
    assert events[-1].data == "[DONE]"


def test_stall_after_n_then_timeout(server: EmulatorServer) -> None:
    stream = _stream(server, OPENAI, AFTER_RESULT, fault="stall_after:3", timeout=0.3)
    got = []
    with pytest.raises(openai.APITimeoutError):
        for chunk in stream:
            got.append(chunk)
    assert len(got) == 3


@pytest.mark.parametrize("model", [OPENAI, ROUTER])
def test_close_without_stop_ends_silently(server: EmulatorServer, model: str) -> None:
    chunks, text, _, finishes = _collect(
        _stream(server, model, AFTER_RESULT, fault="close_without_stop")
    )
    assert "22" in text
    assert finishes == []
    assert all(c.usage is None for c in chunks)


def test_truncate_frame_cuts_a_data_line(server: EmulatorServer) -> None:
    """The bytes stop mid-JSON; the SDK drops the half line and ends silently."""
    chunks, _, _, finishes = _collect(_stream(server, OPENAI, AFTER_RESULT, fault="truncate_frame"))
    assert chunks
    assert finishes == []
    body = {"model": OPENAI, "messages": AFTER_RESULT, "stream": True}
    raw = httpx.post(
        server.url + "/v1/chat/completions",
        json=body,
        headers={"x-callproof-fault": "truncate_frame"},
        timeout=3,
    ).content
    tail = raw.rsplit(b"\n\n", 1)[-1]
    assert tail.startswith(b"data: {")
    with pytest.raises(json.JSONDecodeError):
        json.loads(tail[len(b"data: ") :])


def test_corrupt_crc_is_invalid_json_in_one_data_line(server: EmulatorServer) -> None:
    stream = _stream(server, OPENAI, AFTER_RESULT, fault="corrupt_crc")
    with pytest.raises(json.JSONDecodeError):
        list(stream)


@pytest.mark.parametrize("model", [OPENAI, ROUTER])
def test_stream_exception_raises_api_error(server: EmulatorServer, model: str) -> None:
    stream = _stream(
        server, model, AFTER_RESULT, fault="stream_exception:modelStreamErrorException"
    )
    got = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            got.append(chunk)
    assert got, "the error comes mid-stream, after some chunks"
    assert "Provider disconnected unexpectedly" in info.value.message
    assert stream.response.status_code == 200


def test_openrouter_stream_error_chunk_shape(server: EmulatorServer) -> None:
    _, events = _raw_sse(server, ROUTER, "stream_exception:throttlingException", 2.0)
    error_chunk = json.loads(events[-2].data)
    assert events[-1].data == "[DONE]"
    assert error_chunk["error"]["code"] == 429
    assert error_chunk["choices"][0]["finish_reason"] == "error"
    assert list(error_chunk)[:3] == ["id", "provider", "error"]


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
@pytest.mark.parametrize("model", [OPENAI, ROUTER])
def test_http_error_maps_to_sdk_error(
    server: EmulatorServer, model: str, status: int, error_class: type[Exception]
) -> None:
    with pytest.raises(error_class) as info:
        _stream(server, model, QUESTION, fault=f"http_error:{status}")
    error = info.value
    assert isinstance(error, openai.APIStatusError)
    assert error.status_code == status
    assert isinstance(error.body, dict)
    assert error.body.get("message")
    if status == 429:
        assert error.response.headers["retry-after"] == "1"


def test_empty_response(server: EmulatorServer) -> None:
    chunks, text, calls, finishes = _collect(
        _stream(server, OPENAI, AFTER_RESULT, fault="empty_response")
    )
    assert (text, calls, finishes) == ("", {}, ["stop"])
    assert chunks[-1].usage is not None


@pytest.mark.parametrize(
    ("value", "finish"),
    [
        ("end_turn", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("content_filtered", "content_filter"),
        ("guardrail_intervened", "content_filter"),
        ("malformed_model_output", "malformed_model_output"),
        ("something_new", "something_new"),
    ],
)
def test_stop_reason_maps_to_finish_reason(server: EmulatorServer, value: str, finish: str) -> None:
    _, _, _, finishes = _collect(
        _stream(server, OPENAI, AFTER_RESULT, fault=f"stop_reason:{value}")
    )
    assert finishes == [finish]
    chunks, _, _, finishes = _collect(
        _stream(server, ROUTER, AFTER_RESULT, fault=f"stop_reason:{value}")
    )
    assert finishes == [finish]
    natives = [
        c.choices[0].model_extra["native_finish_reason"]
        for c in chunks
        if c.choices and c.choices[0].finish_reason
    ]
    assert natives == [value]


def test_malformed_tool_args(server: EmulatorServer) -> None:
    _, _, calls, finishes = _collect(_stream(server, OPENAI, QUESTION, fault="malformed_tool_args"))
    with pytest.raises(json.JSONDecodeError):
        json.loads(calls[0]["arguments"])
    assert finishes == ["tool_calls"]


def test_tool_call_in_text(server: EmulatorServer) -> None:
    # the Kimi flavour writes Kimi's section tokens (vercel/ai#11409)
    _, text, calls, finishes = _collect(
        _stream(server, ROUTER, QUESTION, fault="tool_call_in_text")
    )
    assert "<|tool_calls_section_begin|>" in text
    assert "functions.get_weather:0" in text
    assert calls == {}
    assert finishes == ["stop"]


def test_latency_delays_the_first_chunk(server: EmulatorServer) -> None:
    started = time.monotonic()
    stream = _stream(server, OPENAI, AFTER_RESULT, fault="latency:0.3")
    next(iter(stream))
    assert time.monotonic() - started >= 0.3
    stream.close()


def test_non_streamed_faults(server: EmulatorServer) -> None:
    client = _client(server, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(
            model=OPENAI, messages=QUESTION, extra_headers={"x-callproof-fault": "hang_no_events"}
        )
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model=OPENAI, messages=QUESTION, extra_headers={"x-callproof-fault": "http_error:429"}
        )
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model=OPENAI,
            messages=QUESTION,
            extra_headers={"x-callproof-fault": "stream_exception:internalServerException"},
        )
    routed = client.chat.completions.create(
        model=ROUTER,
        messages=QUESTION,
        extra_headers={"x-callproof-fault": "stream_exception:modelStreamErrorException"},
    )
    assert routed.choices[0].finish_reason == "error"
    assert routed.model_extra["error"]["code"] == 502
    unfinished = client.chat.completions.create(
        model=OPENAI, messages=QUESTION, extra_headers={"x-callproof-fault": "close_without_stop"}
    )
    assert unfinished.choices[0].finish_reason is None
    with pytest.raises(json.JSONDecodeError):
        client.chat.completions.create(
            model=OPENAI, messages=QUESTION, extra_headers={"x-callproof-fault": "corrupt_crc"}
        )
    # issue 9 G6: a truncated non-streamed answer is a cut connection (httpx RemoteProtocolError
    # "incomplete body", which the openai SDK wraps as APIConnectionError), never broken JSON
    for cut in ("truncate_frame", "reset_mid_body", "reset_before_headers"):
        with pytest.raises(openai.APIConnectionError) as raised:
            client.with_options(max_retries=0).chat.completions.create(
                model=OPENAI, messages=QUESTION, extra_headers={"x-callproof-fault": cut}
            )
        assert not isinstance(raised.value, openai.APITimeoutError)


@pytest.mark.parametrize(
    "extra",
    [
        {"reasoning": {"exclude": True}},
        {"reasoning": {"enabled": False}},
        {"include_reasoning": False},
    ],
)
def test_openrouter_reasoning_can_be_excluded(
    server: EmulatorServer, extra: dict[str, Any]
) -> None:
    chunks, text, _, _ = _collect(_stream(server, ROUTER, AFTER_RESULT, extra_body=extra))
    assert "22" in text
    assert not any(
        (c.choices[0].delta.model_extra or {}).get("reasoning") for c in chunks if c.choices
    )


def test_openrouter_keepalive_between_thinking_and_answer(server: EmulatorServer) -> None:
    body = {"model": ROUTER, "messages": AFTER_RESULT, "stream": True}
    raw = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=3).content
    items = SSEDecoder().feed(raw)
    kinds = [
        "comment"
        if isinstance(i, SSEComment)
        else "done"
        if i.data == "[DONE]"
        else "reasoning"
        if json.loads(i.data)["choices"][0]["delta"].get("reasoning")
        else "chunk"
        for i in items
    ]
    last_reasoning = max(i for i, k in enumerate(kinds) if k == "reasoning")
    assert kinds[0] == "comment"
    assert kinds[last_reasoning + 1] == "comment"
