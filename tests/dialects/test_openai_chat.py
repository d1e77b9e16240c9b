"""openai-completions: request mapping against recorded requests, SSE decoding of the recorded
OpenRouter/OpenAI streams, non-streaming bodies, and every failure."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callproof.conversation import (
    AssistantMessage,
    Conversation,
    ImagePart,
    Message,
    Settings,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolResult,
    ToolSpec,
    UserMessage,
)
from callproof.dialects import get_dialect
from callproof.dialects.openai_chat import (
    NO_DONE_WARNING,
    ChatBodyDecoder,
    ChatStreamDecoder,
    OpenAIChat,
    OpenAIChatJSON,
    chat_messages,
    map_finish_reason,
)
from callproof.errors import (
    IncompleteStreamError,
    InvalidEventError,
    StreamExceptionError,
)
from callproof.events import Event, StreamStart, StreamStop, TextDelta
from callproof.scenarios import tool_result
from callproof.wire.sse import encode_comment, encode_event
from tests.dialects._helpers import CHUNKINGS, decode, split_sizes, summarise
from tests.recordings import cassette


def sse_bodies(name: str) -> list[bytes]:
    return [
        i["response"]["body"]["string"].encode()
        for i in cassette(name)
        if i["request"]["method"] == "POST"
    ]


def request_body(name: str, index: int) -> dict[str, Any]:
    posts = [i["request"] for i in cassette(name) if i["request"]["method"] == "POST"]
    req = posts[index]
    body: dict[str, Any] = req.get("parsed_body") or json.loads(req["body"])
    return body


def chunk(
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    native: str | None = None,
    **top: Any,
) -> bytes:
    choice = {
        "index": 0,
        "delta": delta or {},
        "finish_reason": finish,
        "native_finish_reason": native,
    }
    return encode_event(json.dumps({"id": "c1", "model": "m", "choices": [choice], **top}))


DONE = encode_event("[DONE]")


def run_until_error(body: bytes, sizes: list[int]) -> tuple[list[Event], Exception | None]:
    decoder = ChatStreamDecoder()
    events: list[Event] = []
    try:
        for piece in split_sizes(body, sizes):
            events.extend(decoder.feed(piece))
        events.extend(decoder.close())
    except Exception as exc:
        return events, exc
    return events, None


# -- recorded streams ------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_openrouter_tool_call_then_text(sizes: list[int]) -> None:
    first, second = sse_bodies("llmor_tool_calls_chat_603cd08.yaml")[-2:]
    decoder = ChatStreamDecoder()
    s = summarise(decode(decoder, first, sizes))
    assert decoder.keepalives == 1  # ": OPENROUTER PROCESSING"
    assert s.calls == [
        {"id": "call_o4OCgtJrNoZTmoCRvmlfoHfj", "name": "llm_version", "arguments": {}}
    ]
    assert (s.stop_reason, s.raw_stop_reason, s.stops) == ("tool_use", "tool_calls", 1)
    assert s.usage is not None
    assert (s.usage.input_tokens, s.usage.output_tokens, s.usage.total_tokens) == (48, 11, 59)
    assert s.model == "openai/gpt-4.1-mini"
    assert s.kinds[0] == "start"

    s = summarise(decode(ChatStreamDecoder(), second, sizes))
    assert s.text == "The current LLM version is 0.0+test."
    assert (s.stop_reason, s.raw_stop_reason) == ("end_turn", "stop")
    assert s.usage is not None
    assert s.usage.total_tokens == 87


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_openai_parallel_tool_calls(sizes: list[int]) -> None:
    first, second, third = sse_bodies("pa_temporal_complex_agent_run.yaml")
    s = summarise(decode(ChatStreamDecoder(), first, sizes))
    assert [(c.id, c.name, c.arguments) for c in s.tool_calls] == [
        ("call_q2UyBRP7eXNTzAoR8lEhjc9Z", "get_country", {}),
        ("call_b51ijcpFkDiTQG1bQzsrmtW5", "get_product_name", {}),
    ]
    assert s.stop_reason == "tool_use"
    assert s.usage is not None
    assert s.usage.total_tokens == 404
    s = summarise(decode(ChatStreamDecoder(), second, sizes))
    assert s.calls == [
        {
            "id": "call_LwxJUB9KppVyogRRLQsamRJv",
            "name": "get_weather",
            "arguments": {"city": "Mexico City"},
        }
    ]
    s = summarise(decode(ChatStreamDecoder(), third, sizes))
    (call,) = s.tool_calls
    assert call.name == "final_result"
    assert call.arguments is not None
    assert [a["label"] for a in call.arguments["answers"]] == ["Capital", "Weather", "Product Name"]


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_openrouter_mid_stream_error_after_keepalives_and_reasoning(sizes: list[int]) -> None:
    (body,) = sse_bodies("pa_test_openrouter_stream_error.yaml")
    events, exc = run_until_error(body, sizes)
    assert isinstance(exc, StreamExceptionError)
    assert exc.message == "Token limit reached"
    assert exc.status == 400
    assert exc.outcome == "stream_exception"
    # everything before the error chunk was delivered; no stop despite two finish_reasons
    s = summarise(events)
    assert s.thinking == "We need to respond to a greeting. The user"
    assert s.stops == 0
    assert s.model == "minimax/minimax-m2:free"


def test_keepalives_are_counted_not_events() -> None:
    (body,) = sse_bodies("pa_test_openrouter_stream_error.yaml")
    decoder = ChatStreamDecoder()
    events = decoder.feed(body[: body.index(b"data:")])
    assert events == []
    assert decoder.keepalives == 17
    raw = decoder.raw_items()
    assert [r.kind for r in raw] == ["comment"] * 17
    assert raw[0].data == "OPENROUTER PROCESSING"


# -- synthetic streams -----------------------------------------------------------------------


def test_duplicate_finish_reason_in_the_usage_chunk_gives_one_stop() -> None:
    body = b"".join(
        [
            chunk({"role": "assistant", "content": "Hi"}),
            chunk({}, "stop", "end_turn"),
            chunk(
                {"content": ""},
                "stop",
                usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            ),
            DONE,
        ]
    )
    events = decode(ChatStreamDecoder(), body)
    stops = [e for e in events if isinstance(e, StreamStop)]
    assert len(stops) == 1
    assert stops[0].usage is not None
    assert stops[0].usage.total_tokens == 4
    assert events[-1] is stops[0]
    assert isinstance(events[0], StreamStart)


@pytest.mark.parametrize(
    ("raw", "native", "expected"),
    [
        ("stop", None, "end_turn"),
        ("tool_calls", None, "tool_use"),
        ("length", None, "max_tokens"),
        ("content_filter", None, "content_filtered"),
        ("function_call", None, "tool_use"),
        ("end_turn", None, "end_turn"),  # servers that speak Bedrock's words
        ("error", None, "unknown"),
        ("something_new", None, "unknown"),
        ("something_new", "guardrail_intervened", "guardrail_intervened"),
        ("stop", "MALFORMED", "end_turn"),
    ],
)
def test_finish_reason_mapping(raw: str, native: str | None, expected: str) -> None:
    assert map_finish_reason(raw, native) == expected
    body = chunk({"content": "x"}) + chunk({}, raw, native) + DONE
    (stop,) = [e for e in decode(ChatStreamDecoder(), body) if isinstance(e, StreamStop)]
    assert (stop.stop_reason, stop.raw_stop_reason) == (expected, raw)


def test_tool_call_fragments_by_index() -> None:
    body = b"".join(
        [
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "a",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"x"'},
                        }
                    ]
                }
            ),
            chunk(
                {
                    "tool_calls": [
                        {"index": 1, "id": "b", "function": {"name": "g", "arguments": ""}}
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
            chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
            chunk({}, "tool_calls"),
            DONE,
        ]
    )
    events = decode(ChatStreamDecoder(), body)
    s = summarise(events)
    assert s.calls == [
        {"id": "a", "name": "f", "arguments": {"x": 1}},
        {"id": "b", "name": "g", "arguments": {}},
    ]
    starts = [e.index for e in events if e.kind == "tool_call_start"]
    assert len(set(starts)) == 2


def test_reasoning_fields() -> None:
    body = b"".join(
        [
            chunk({"reasoning_content": "moonshot "}),  # Moonshot / vLLM
            chunk(
                {
                    "reasoning": "openrouter ",
                    "reasoning_details": [{"type": "reasoning.text", "text": "openrouter "}],
                }
            ),
            chunk(
                {
                    "reasoning_details": [
                        {"type": "reasoning.text", "text": "details", "signature": "SIG"}
                    ]
                }
            ),
            chunk({"reasoning_details": [{"type": "reasoning.encrypted", "data": "ENC"}]}),
            chunk({"reasoning_details": [{"type": "reasoning.summary", "summary": " summary"}]}),
            chunk({"content": "answer"}, "stop"),
            DONE,
        ]
    )
    s = summarise(decode(ChatStreamDecoder(), body))
    assert s.thinking == "moonshot openrouter details summary"
    assert (s.signature, s.redacted, s.text) == ("SIG", [b"ENC"], "answer")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "no finish_reason"),
        (chunk({"content": "Hi"}), "no finish_reason"),
        (chunk({"content": "Hi"}) + DONE, r"\[DONE\] but no finish_reason"),
    ],
)
def test_truncation_is_incomplete(body: bytes, match: str) -> None:
    with pytest.raises(IncompleteStreamError, match=match):
        decode(ChatStreamDecoder(), body)


@pytest.mark.parametrize("tail", [b"", b"data: [DO"], ids=["clean-close", "half-a-done-line"])
def test_finish_reason_then_a_clean_close_without_done_is_complete(tail: bytes) -> None:
    usage = encode_event(
        json.dumps(
            {"id": "c1", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}
        )
    )
    decoder = ChatStreamDecoder()
    events = decode(decoder, chunk({"content": "Hi"}) + chunk({}, "stop") + usage + tail)
    stop = events[-1]
    assert isinstance(stop, StreamStop)
    assert (stop.stop_reason, stop.raw_stop_reason) == ("end_turn", "stop")
    assert stop.usage is not None
    assert (stop.usage.input_tokens, stop.usage.output_tokens) == (7, 2)
    assert decoder.warnings == [NO_DONE_WARNING]
    with_done = ChatStreamDecoder()
    decode(with_done, chunk({"content": "Hi"}) + chunk({}, "stop") + DONE)
    assert with_done.warnings == []


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_recorded_stream_cut_anywhere_is_incomplete_until_its_finish_reason(
    sizes: list[int],
) -> None:
    body = sse_bodies("llmor_tool_calls_chat_603cd08.yaml")[-1]
    finish_at = body.index(b'"finish_reason":"')  # the first non-null finish_reason
    finish_end = body.index(b"\n\n", finish_at) + 2
    for cut in range(0, finish_end, 97):
        with pytest.raises(IncompleteStreamError):
            decode(ChatStreamDecoder(), body[:cut], sizes)
    # cut after the finish chunk but before [DONE]: what a clean close looks like to a
    # sans-IO decoder (the client tells a broken connection apart and never closes it)
    for cut in range(finish_end, len(body) - len(b"data: [DONE]\n\n"), 97):
        decoder = ChatStreamDecoder()
        assert isinstance(decode(decoder, body[:cut], sizes)[-1], StreamStop)
        assert decoder.warnings == [NO_DONE_WARNING]


def test_invalid_json_is_a_protocol_error() -> None:
    decoder = ChatStreamDecoder()
    with pytest.raises(InvalidEventError, match="invalid JSON"):
        decoder.feed(encode_event("{not json"))
    with pytest.raises(InvalidEventError):
        decode(ChatStreamDecoder(), encode_event("[1, 2]"))


def test_error_chunk_with_a_string_code_is_typed() -> None:
    err_chunk = encode_event(
        json.dumps(
            {
                "id": "cmpl-abc123",
                "provider": "openai",
                "error": {"code": "server_error", "message": "Provider disconnected unexpectedly"},
                "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
            }
        )
    )
    decoder = ChatStreamDecoder()
    events = decoder.feed(chunk({"content": "partial"}) + err_chunk)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["partial"]
    with pytest.raises(StreamExceptionError) as info:
        decoder.close()
    assert (info.value.error_type, info.value.status) == ("server_error", None)
    assert info.value.retryable


def test_chunks_after_done_are_ignored_and_raw_items_recorded() -> None:
    decoder = ChatStreamDecoder()
    events = decoder.feed(
        chunk({"content": "a"}, "stop") + DONE + chunk({"content": "late"}) + encode_comment("")
    )
    assert summarise(events).text == "a"
    kinds = [r.kind for r in decoder.raw_items()]
    assert kinds == ["sse", "sse", "sse", "comment"]
    assert decoder.keepalives == 1


_BODIES = [
    sse_bodies("llmor_tool_calls_chat_603cd08.yaml")[-2],
    sse_bodies("pa_temporal_complex_agent_run.yaml")[2],
    sse_bodies("llmor_tool_calls_chat_603cd08.yaml")[-1],
]
_EXPECTED = [decode(ChatStreamDecoder(), b) for b in _BODIES]


@settings(max_examples=40, deadline=None)
@given(which=st.integers(0, len(_BODIES) - 1), cuts=st.lists(st.integers(0, 50_000), max_size=40))
def test_random_splits_decode_identically(which: int, cuts: list[int]) -> None:
    body = _BODIES[which]
    points = sorted({c % (len(body) + 1) for c in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    decoder = ChatStreamDecoder()
    events = [ev for piece in pieces for ev in decoder.feed(piece)] + decoder.close()
    assert events == _EXPECTED[which]


# -- non-streaming bodies --------------------------------------------------------------------


def json_body(name: str) -> bytes:
    (interaction,) = cassette(name)
    return json.dumps(interaction["response"]["parsed_body"]).encode()


def test_non_streaming_kimi_reasoning() -> None:
    dialect = OpenAIChatJSON()
    assert dialect.streaming is False
    s = summarise(
        decode(dialect.stream_decoder(), json_body("pa_test_openrouter_kimi_k2_5.yaml"), [5])
    )
    assert s.text == "4"
    assert s.thinking.startswith("The user is asking for the answer to 2+2.")
    assert (s.stop_reason, s.raw_stop_reason) == ("end_turn", "stop")
    assert s.usage is not None
    assert (s.usage.total_tokens, s.usage.reasoning_tokens) == (68, 42)


def test_non_streaming_tool_call() -> None:
    s = summarise(decode(ChatBodyDecoder(), json_body("pa_test_openrouter_tool_calling.yaml")))
    assert s.calls == [
        {
            "id": "3sniiMddS",
            "name": "divide",
            "arguments": {"numerator": 123, "denominator": 456, "on_inf": "infinity"},
        }
    ]
    assert s.stop_reason == "tool_use"
    assert s.text == ""


def test_non_streaming_failures() -> None:
    with pytest.raises(IncompleteStreamError):
        decode(ChatBodyDecoder(), b"")
    with pytest.raises(IncompleteStreamError):
        decode(ChatBodyDecoder(), json_body("pa_test_openrouter_tool_calling.yaml")[:-30])
    with pytest.raises(StreamExceptionError):
        decode(ChatBodyDecoder(), b'{"error": {"code": 502, "message": "upstream"}}')
    with pytest.raises(IncompleteStreamError, match="finish_reason"):
        decode(
            ChatBodyDecoder(),
            b'{"choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": null}]}',
        )


# -- requests ----------------------------------------------------------------------------------


def conversation_from_chat(body: dict[str, Any]) -> Conversation:
    """The neutral conversation a recorded chat request was made from."""
    system = None
    messages: list[Message] = []
    for m in body["messages"]:
        if m["role"] == "system":
            system = m["content"]
        elif m["role"] == "user":
            messages.append(UserMessage.text(m["content"]))
        elif m["role"] == "assistant":
            parts: list[Any] = [TextPart(m["content"])] if m.get("content") else []
            parts += [
                ToolCall.from_raw(tc["id"], tc["function"]["name"], tc["function"]["arguments"])
                for tc in m.get("tool_calls", [])
            ]
            messages.append(AssistantMessage(content=tuple(parts)))
        else:
            result = ToolResult(m["tool_call_id"], m["content"])
            last = messages[-1] if messages else None
            if isinstance(last, UserMessage) and all(
                isinstance(p, ToolResult) for p in last.content
            ):
                messages[-1] = UserMessage(content=(*last.content, result))
            else:
                messages.append(UserMessage(content=(result,)))
    tools = tuple(
        ToolSpec(
            t["function"]["name"], t["function"].get("description", ""), t["function"]["parameters"]
        )
        for t in body.get("tools", [])
    )
    return Conversation(messages=tuple(messages), system=system, tools=tools)


def test_role_tool_turn_matches_the_recorded_openrouter_request() -> None:
    recorded = request_body("llmor_tool_calls_chat_603cd08.yaml", 1)
    conversation = conversation_from_chat(recorded)
    req = OpenAIChat().encode_request("openai/gpt-4.1-mini", conversation)
    assert (req.method, req.path) == ("POST", "/chat/completions")
    assert json.loads(req.body) == recorded


@pytest.mark.parametrize("index", [1, 2])
def test_parallel_tool_results_match_the_recorded_openai_messages(index: int) -> None:
    recorded = request_body("pa_temporal_complex_agent_run.yaml", index)
    assert chat_messages(conversation_from_chat(recorded)) == recorded["messages"]


def test_max_completion_tokens_request_matches_the_recording() -> None:
    recorded = request_body("pa_test_openrouter_stream_error.yaml", 0)
    conversation = Conversation(
        messages=(UserMessage.text("Hello there"),), settings=Settings(max_tokens=10)
    )
    dialect = get_dialect("openai-completions", max_tokens_field="max_completion_tokens")
    assert (
        json.loads(dialect.encode_request("minimax/minimax-m2:free", conversation).body) == recorded
    )


def test_non_streaming_requests_match_the_recordings() -> None:
    recorded = request_body("pa_test_openrouter_tool_calling.yaml", 0)
    conversation = Conversation(
        messages=(UserMessage.text("What is 123 / 456?"),),
        tools=(
            ToolSpec(
                "divide", "Divide two numbers.", recorded["tools"][0]["function"]["parameters"]
            ),
        ),
        settings=Settings(tool_choice="auto"),
    )
    assert (
        json.loads(OpenAIChatJSON().encode_request("mistralai/mistral-small", conversation).body)
        == recorded
    )


def test_seed_conversation_and_settings() -> None:
    conversation = tool_result().conversation
    body = json.loads(
        OpenAIChat()
        .encode_request(
            "moonshotai/kimi-k2.5", conversation, extra={"provider": {"only": ["moonshotai"]}}
        )
        .body
    )
    assert body["messages"] == [
        {"role": "user", "content": "Weather for Tokyo?"},
        {
            "role": "assistant",
            "content": "Getting it.",
            "tool_calls": [
                {
                    "id": "abc123xyz",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "abc123xyz", "content": '{"temp":22}'},
    ]
    assert body["max_tokens"] == 100
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["provider"] == {"only": ["moonshotai"]}
    assert body["tools"][0]["function"]["name"] == "get_weather"


def test_every_part_and_setting_maps() -> None:
    conversation = Conversation(
        system="sys",
        messages=(
            UserMessage(content=(TextPart("see"), ImagePart("image/png", b"\x89PNG"))),
            AssistantMessage(content=(ThinkingPart("hmm"), ToolCall.from_raw("c1", "f", "{bad"))),
            UserMessage(content=(TextPart("first"), ToolResult("c1", {"v": 1}, is_error=True))),
        ),
        tools=(ToolSpec("f"),),
        settings=Settings(
            temperature=0.5, top_p=0.9, stop_sequences=("X",), tool_choice={"tool": "f"}
        ),
    )
    body = json.loads(OpenAIChat().encode_request("m", conversation).body)
    system, user, assistant, tool, text = body["messages"]
    assert system == {"role": "system", "content": "sys"}
    assert user["content"] == [
        {"type": "text", "text": "see"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}},
    ]
    assert assistant == {
        "role": "assistant",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{bad"}}
        ],
    }
    assert (tool, text) == (
        {"role": "tool", "tool_call_id": "c1", "content": '{"v": 1}'},
        {"role": "user", "content": "first"},
    )
    assert (body["temperature"], body["top_p"], body["stop"]) == (0.5, 0.9, ["X"])
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    replayed = json.loads(
        OpenAIChat(reasoning_replay="reasoning_content").encode_request("m", conversation).body
    )
    assert replayed["messages"][2]["reasoning_content"] == "hmm"


@pytest.mark.parametrize(
    ("choice", "wire"), [("auto", "auto"), ("any", "required"), ("none", "none")]
)
def test_tool_choice(choice: Any, wire: str) -> None:
    conversation = Conversation(
        messages=(UserMessage.text("hi"),),
        tools=(ToolSpec("f"),),
        settings=Settings(tool_choice=choice),
    )
    assert json.loads(OpenAIChat().encode_request("m", conversation).body)["tool_choice"] == wire


# -- HTTP errors -------------------------------------------------------------------------------


def test_openrouter_error_body() -> None:
    body = json.dumps(
        {
            "error": {
                "code": 429,
                "message": "Provider returned error",
                "metadata": {"raw": "moonshot is rate limited", "provider_name": "Moonshot AI"},
            }
        }
    ).encode()
    err = OpenAIChat().decode_error(429, {"Retry-After": "3", "x-generation-id": "gen-1"}, body)
    assert (err.status, err.retry_after_s, err.request_id) == (429, 3.0, "gen-1")
    assert err.message == "Provider returned error [Moonshot AI: moonshot is rate limited]"
    assert err.retryable
    assert err.outcome == "http_error"


def test_openai_error_body() -> None:
    body = (
        b'{"error": {"message": "Rate limit reached", "type": "requests", "param": null,'
        b' "code": "rate_limit_exceeded"}}'
    )
    err = OpenAIChat().decode_error(429, {"x-request-id": "req_1", "retry-after-ms": "250"}, body)
    assert (err.error_type, err.message, err.request_id, err.retry_after_s) == (
        "rate_limit_exceeded",
        "Rate limit reached",
        "req_1",
        0.25,
    )
    err = OpenAIChat().decode_error(
        400, {}, b'{"error": {"message": "bad", "type": "invalid_request_error", "code": null}}'
    )
    assert (err.error_type, err.retryable) == ("invalid_request_error", False)
    err = OpenAIChat().decode_error(502, {}, b"<html>bad gateway</html>")
    assert (err.message, err.error_type, err.retryable) == ("<html>bad gateway</html>", None, True)
    err = OpenAIChat().decode_error(422, {}, b'{"detail": "model not found"}')
    assert err.message == "model not found"


def test_provider_raw_message_is_not_repeated() -> None:
    body = b'{"error": {"code": 429, "message": "busy", "metadata": {"raw": "busy"}}}'
    assert OpenAIChat().decode_error(429, {}, body).message == "busy"


def test_content_parts_and_late_tool_names() -> None:
    parts = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "mull"}]},
        {"type": "text", "text": "said"},
    ]
    body = b"".join(
        [
            chunk({"content": parts}),
            chunk({"tool_calls": [{"index": 0, "id": "x1", "function": {"arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"name": "late", "arguments": "{}"}}]}),
            chunk({}, "tool_calls"),
            DONE,
        ]
    )
    s = summarise(decode(ChatStreamDecoder(), body))
    assert (s.thinking, s.text) == ("mull", "said")
    assert s.calls == [{"id": "x1", "name": "late", "arguments": {}}]


@pytest.mark.parametrize(
    "module",
    [
        "bedrock_converse",
        "bedrock_events",
        "bedrock_request",
        "openai_chat",
        "openai_common",
        "openai_responses",
    ],
)
def test_all_names_exist_and_are_documented(module: str) -> None:
    import importlib
    import inspect

    mod = importlib.import_module(f"callproof.dialects.{module}")
    assert mod.__doc__
    for name in mod.__all__:
        obj = getattr(mod, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__, f"{module}.{name} has no docstring"
