"""openai-responses: the recorded OpenRouter Responses streams, synthetic OpenAI-style
streams, failures, and request mapping against the recorded request."""

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
    Settings,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolResult,
    ToolSpec,
    UserMessage,
)
from callproof.dialects import get_dialect
from callproof.dialects.openai_responses import OpenAIResponses, ResponsesStreamDecoder
from callproof.errors import IncompleteStreamError, InvalidEventError, StreamExceptionError
from callproof.events import StreamStart, StreamStop
from callproof.wire.sse import encode_event
from tests.dialects._helpers import CHUNKINGS, decode, summarise
from tests.recordings import cassette

RECORDING = "llmor_tool_calls.yaml"


def bodies() -> list[bytes]:
    return [
        i["response"]["body"]["string"].encode()
        for i in cassette(RECORDING)
        if i["request"]["method"] == "POST"
    ]


def ev(kind: str, named: bool = False, **fields: Any) -> bytes:
    """One Responses event; ``named`` adds the SSE ``event:`` line as OpenAI sends it."""
    return encode_event(json.dumps({"type": kind, **fields}), event=kind if named else None)


CREATED = ev("response.created", response={"id": "r1", "model": "gpt-5", "status": "in_progress"})


def completed(status: str = "completed", **response: Any) -> bytes:
    usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    return ev("response.completed", response={"status": status, "usage": usage, **response})


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_recorded_tool_call_then_text(sizes: list[int]) -> None:
    first, second = bodies()
    decoder = ResponsesStreamDecoder()
    s = summarise(decode(decoder, first, sizes))
    assert decoder.keepalives == 1  # OpenRouter's ": " comment
    assert s.calls == [
        {"id": "call_faKQ4JI18zZQE2oynAbvwip4", "name": "llm_version", "arguments": {}}
    ]
    assert (s.stop_reason, s.raw_stop_reason) == ("tool_use", "completed")
    assert s.usage is not None
    assert (s.usage.input_tokens, s.usage.output_tokens, s.usage.total_tokens) == (42, 12, 54)
    assert s.model == "openai/gpt-4.1-mini"
    assert (s.starts, s.stops) == (1, 1)

    s = summarise(decode(ResponsesStreamDecoder(), second, sizes))
    assert s.text == "The current LLM version is 0.0+test."
    assert (s.stop_reason, s.tool_calls) == ("end_turn", [])
    assert s.usage is not None
    assert s.usage.total_tokens == 80


def test_openai_style_stream_with_event_lines_and_reasoning() -> None:
    call = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather"}
    body = b"".join(
        [
            CREATED,
            ev("response.output_item.added", True, output_index=0, item={"type": "reasoning"}),
            ev("response.reasoning_summary_text.delta", True, output_index=0, delta="Think"),
            ev("response.reasoning_summary_text.delta", True, output_index=0, delta="ing."),
            ev(
                "response.output_item.done",
                True,
                output_index=0,
                item={"type": "reasoning", "encrypted_content": "gAAAA"},
            ),
            ev("response.output_item.added", True, output_index=1, item={**call, "arguments": ""}),
            ev("response.function_call_arguments.delta", True, output_index=1, delta='{"city":'),
            ev("response.function_call_arguments.delta", True, output_index=1, delta='"Tokyo"}'),
            ev("response.future_event", True, output_index=1),
            ev(
                "response.output_item.done",
                True,
                output_index=1,
                item={**call, "arguments": '{"city":"Tokyo"}'},
            ),
            completed(output=[call]),
        ]
    )
    events = decode(ResponsesStreamDecoder(), body, [13])
    s = summarise(events)
    assert (s.thinking, s.redacted) == ("Thinking.", [b"gAAAA"])
    assert s.calls == [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Tokyo"}}]
    assert s.stop_reason == "tool_use"
    assert isinstance(events[0], StreamStart)
    assert isinstance(events[-1], StreamStop)


def test_arguments_only_in_the_done_events() -> None:
    item = {"type": "function_call", "call_id": "c", "name": "f", "arguments": '{"a":1}'}
    body = b"".join(
        [
            CREATED,
            ev("response.function_call_arguments.done", output_index=0, arguments='{"a":1}'),
            ev("response.output_item.done", output_index=0, item=item),
            completed(),
        ]
    )
    s = summarise(decode(ResponsesStreamDecoder(), body))
    assert [c.arguments for c in s.tool_calls] == [{"a": 1}]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("max_output_tokens", "max_tokens"),
        ("content_filter", "content_filtered"),
        ("something_else", "unknown"),
    ],
)
def test_incomplete_responses(reason: str, expected: str) -> None:
    body = CREATED + ev(
        "response.incomplete",
        response={"status": "incomplete", "incomplete_details": {"reason": reason}},
    )
    (stop,) = [e for e in decode(ResponsesStreamDecoder(), body) if isinstance(e, StreamStop)]
    assert (stop.stop_reason, stop.raw_stop_reason) == (expected, reason)


def test_incomplete_event_without_a_status_is_not_a_clean_end() -> None:
    body = CREATED + ev(
        "response.incomplete", response={"incomplete_details": {"reason": "max_output_tokens"}}
    )
    (stop,) = [e for e in decode(ResponsesStreamDecoder(), body) if isinstance(e, StreamStop)]
    assert (stop.stop_reason, stop.raw_stop_reason) == ("max_tokens", "max_output_tokens")
    bare = CREATED + ev("response.incomplete", response={})
    (stop,) = [e for e in decode(ResponsesStreamDecoder(), bare) if isinstance(e, StreamStop)]
    assert (stop.stop_reason, stop.raw_stop_reason) == ("unknown", "incomplete")


def test_completed_with_a_strange_status_is_unknown() -> None:
    body = CREATED + completed(status="cancelled")
    (stop,) = [e for e in decode(ResponsesStreamDecoder(), body) if isinstance(e, StreamStop)]
    assert (stop.stop_reason, stop.raw_stop_reason) == ("unknown", "cancelled")


def test_failed_and_error_events_are_typed() -> None:
    failed = ev(
        "response.failed",
        response={"status": "failed", "error": {"code": "server_error", "message": "boom"}},
    )
    decoder = ResponsesStreamDecoder()
    assert decoder.feed(CREATED + failed) == [StreamStart(model="gpt-5")]
    with pytest.raises(StreamExceptionError) as info:
        decoder.close()
    assert (info.value.error_type, info.value.message) == ("server_error", "boom")
    assert info.value.retryable

    error = ev("error", code="rate_limit_exceeded", message="slow down", param=None)
    with pytest.raises(StreamExceptionError) as info:
        ResponsesStreamDecoder().feed(error)
    assert (info.value.error_type, info.value.message) == ("rate_limit_exceeded", "slow down")


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_truncation_is_incomplete(sizes: list[int]) -> None:
    body = bodies()[1]
    end = body.index(b'data: {"type":"response.completed"')
    for cut in range(0, end, 211):
        with pytest.raises(IncompleteStreamError, match=r"response\.completed"):
            decode(ResponsesStreamDecoder(), body[:cut], sizes)
    with pytest.raises(IncompleteStreamError):
        decode(ResponsesStreamDecoder(), b"")


def test_invalid_json_is_a_protocol_error() -> None:
    with pytest.raises(InvalidEventError):
        ResponsesStreamDecoder().feed(b"data: {nope\n\n")


_BODIES = bodies()
_EXPECTED = [decode(ResponsesStreamDecoder(), b) for b in _BODIES]


@settings(max_examples=30, deadline=None)
@given(which=st.integers(0, 1), cuts=st.lists(st.integers(0, 50_000), max_size=40))
def test_random_splits_decode_identically(which: int, cuts: list[int]) -> None:
    body = _BODIES[which]
    points = sorted({c % (len(body) + 1) for c in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    decoder = ResponsesStreamDecoder()
    events = [e for piece in pieces for e in decoder.feed(piece)] + decoder.close()
    assert events == _EXPECTED[which]


# -- requests ----------------------------------------------------------------------------------


def test_function_call_output_turn_matches_the_recorded_request() -> None:
    posts = [i["request"] for i in cassette(RECORDING) if i["request"]["method"] == "POST"]
    recorded = json.loads(posts[1]["body"])
    tool = recorded["tools"][0]
    call = ToolCall.from_raw("call_faKQ4JI18zZQE2oynAbvwip4", "llm_version", "{}")
    conversation = Conversation(
        messages=(
            UserMessage.text("What is the current llm version?"),
            AssistantMessage(content=(call,)),
            UserMessage(content=(ToolResult("call_faKQ4JI18zZQE2oynAbvwip4", "0.0+test"),)),
        ),
        tools=(ToolSpec(tool["name"], tool["description"], tool["parameters"]),),
    )
    dialect = get_dialect("openai-responses")
    req = dialect.encode_request("openai/gpt-4.1-mini", conversation, extra={"store": False})
    assert (req.method, req.path) == ("POST", "/responses")
    assert json.loads(req.body) == recorded


def test_every_part_and_setting_maps() -> None:
    conversation = Conversation(
        system="sys",
        messages=(
            UserMessage(content=(TextPart("see"), ImagePart("image/png", b"\x89PNG"))),
            AssistantMessage(
                content=(
                    ThinkingPart("hmm", redacted=b"enc"),
                    TextPart("calling"),
                    ToolCall.from_raw("c1", "f", '{"x": 1}'),
                )
            ),
            UserMessage(content=(ToolResult("c1", {"v": 1}), TextPart("thanks"))),
        ),
        tools=(ToolSpec("f", "eff"),),
        settings=Settings(
            max_tokens=64, temperature=0.3, top_p=0.8, stop_sequences=("S",), tool_choice="any"
        ),
    )
    body = json.loads(OpenAIResponses().encode_request("m", conversation).body)
    assert body["instructions"] == "sys"
    assert body["input"] == [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "see"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw=="},
            ],
        },
        {"role": "assistant", "content": "calling"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"x": 1}'},
        {"type": "function_call_output", "call_id": "c1", "output": '{"v": 1}'},
        {"role": "user", "content": "thanks"},
    ]
    assert (body["max_output_tokens"], body["temperature"], body["top_p"]) == (64, 0.3, 0.8)
    assert "stop" not in body
    assert body["tool_choice"] == "required"
    assert body["tools"] == [
        {
            "type": "function",
            "name": "f",
            "description": "eff",
            "parameters": {"type": "object", "properties": {}},
        }
    ]
    replay = json.loads(
        OpenAIResponses(reasoning_replay=True).encode_request("m", conversation).body
    )
    assert replay["input"][1] == {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "hmm"}],
        "encrypted_content": "enc",
    }
    named = Conversation(
        messages=(UserMessage.text("x"),),
        tools=(ToolSpec("f"),),
        settings=Settings(tool_choice={"tool": "f"}),
    )
    body = json.loads(OpenAIResponses().encode_request("m", named).body)
    assert body["tool_choice"] == {"type": "function", "name": "f"}


def test_http_error() -> None:
    err = OpenAIResponses().decode_error(
        401, {}, b'{"error": {"message": "No auth credentials found", "code": 401}}'
    )
    assert (err.status, err.message, err.retryable) == (401, "No auth credentials found", False)


def test_text_only_in_the_done_event_is_not_lost() -> None:
    body = b"".join(
        [
            CREATED,
            ev("response.output_text.done", output_index=0, content_index=0, text="whole"),
            ev("response.output_text.delta", output_index=1, content_index=0, delta="a"),
            ev("response.output_text.done", output_index=1, content_index=0, text="a"),
            completed(),
        ]
    )
    assert summarise(decode(ResponsesStreamDecoder(), body)).text == "wholea"
