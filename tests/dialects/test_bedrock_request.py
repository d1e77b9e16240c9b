"""Converse request mapping (checked against recorded request bodies and botocore's own
validation), Converse JSON bodies, and HTTP error typing."""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

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
from callproof.dialects.bedrock_converse import BedrockConverse, BedrockConverseStream
from callproof.dialects.bedrock_events import ConverseBodyDecoder
from callproof.errors import IncompleteStreamError, InvalidEventError
from callproof.scenarios import tool_call, tool_result
from tests.dialects._helpers import CHUNKINGS, decode, summarise
from tests.recordings import cassette

_SERVICE = botocore.session.get_session().get_service_model("bedrock-runtime")


def botocore_errors(model: str, body: dict[str, Any], op: str = "ConverseStream") -> str:
    """botocore's own validation report for our body ('' when valid)."""
    shape = _SERVICE.operation_model(op).input_shape
    report = ParamValidator().validate({"modelId": model, **body}, shape)
    return report.generate_report() if report.has_errors() else ""


def recorded_request(name: str, i: int) -> dict[str, Any]:
    request = cassette(name)[i]["request"]
    body = request.get("parsed_body") or json.loads(request["body"])
    # pydantic-ai sends empty containers we leave out
    return {k: v for k, v in body.items() if v not in ({}, [])}


def encoded(conversation: Conversation, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    req = BedrockConverseStream().encode_request("m", conversation, extra=extra)
    body: dict[str, Any] = json.loads(req.body)
    return body


def tool(name: str, description: str, prop: str, prop_description: str | None = None) -> ToolSpec:
    schema: dict[str, Any] = {"title": prop.title(), "type": "string"}
    if prop_description:
        schema = {"description": prop_description, **schema}
    return ToolSpec(
        name=name,
        description=description,
        parameters={
            "properties": {prop: schema},
            "required": [prop],
            "type": "object",
            "additionalProperties": False,
        },
    )


def test_tool_result_turn_matches_the_recorded_nova_request() -> None:
    thinking = (
        "<thinking> To find the temperature of the capital of France, I need to first determine "
        "the capital of France and then get the current temperature in that city. The capital "
        'of France is Paris. I will use the "get_temperature" tool to find the current '
        "temperature in Paris.</thinking>\n"
    )
    call = ToolCall.from_raw(
        "tooluse_lAG_zP8QRHmSYOwZzzaCqA", "get_temperature", '{"city":"Paris"}'
    )
    conversation = Conversation(
        system="You are a helpful chatbot.",
        messages=(
            UserMessage.text("What is the temperature of the capital of France?"),
            AssistantMessage(content=(TextPart(thinking), call)),
            UserMessage(content=(ToolResult("tooluse_lAG_zP8QRHmSYOwZzzaCqA", "30°C"),)),
        ),
        tools=(
            tool("get_capital", "Get the capital of a country.", "country", "The country name."),
            tool("get_temperature", "Get the temperature in a city.", "city", "The city name."),
        ),
        settings=Settings(top_p=0.5),
    )
    recorded = recorded_request("pa_test_bedrock_model_iter_stream.yaml", 1)
    assert encoded(conversation) == recorded
    assert botocore_errors("us.amazon.nova-micro-v1:0", encoded(conversation)) == ""


def test_error_tool_result_and_tool_choice_match_the_recorded_request() -> None:
    recorded = recorded_request("pa_test_bedrock_model_retry.yaml", 1)
    assistant = recorded["messages"][1]["content"]
    call = ToolCall.from_raw(
        "tooluse_Ze_bgl9CSqu8aJv7XD-_Dw", "get_capital", '{"country": "France"}'
    )
    conversation = Conversation(
        system="You are a helpful chatbot.",
        messages=(
            UserMessage.text("What is the capital of France?"),
            AssistantMessage(content=(TextPart(assistant[0]["text"]), call)),
            UserMessage(
                content=(
                    ToolResult(
                        "tooluse_Ze_bgl9CSqu8aJv7XD-_Dw",
                        "The country is not supported.\n\nFix the errors and try again.",
                        is_error=True,
                    ),
                )
            ),
        ),
        tools=(
            ToolSpec(
                name="get_capital",
                description="Get the capital of a country.",
                parameters=recorded["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"],
            ),
        ),
        settings=Settings(temperature=0.0, tool_choice="auto"),
    )
    assert encoded(conversation) == recorded
    assert recorded["messages"][2]["content"][0]["toolResult"]["status"] == "error"


def test_kimi_tool_use_id_and_extra_fields() -> None:
    recorded = recorded_request("pa_test_bedrock_model_thinking_part_stream.yaml", 0)
    conversation = Conversation(messages=(UserMessage.text("Hello"),))
    extra = {
        "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    }
    assert encoded(conversation, extra) == recorded

    recorded = recorded_request("pa_test_bedrock_moonshotai_tool_call.yaml", 1)
    text = recorded["messages"][1]["content"][0]["text"]
    call = ToolCall.from_raw("functions.get_temperature:0", "get_temperature", '{"city": "London"}')
    conversation = Conversation(
        system="You are a helpful chatbot. Use tools when helpful.",
        messages=(
            UserMessage.text("What is the temperature in London? Use the tool."),
            AssistantMessage(content=(TextPart(text), call)),
            UserMessage(content=(ToolResult("functions.get_temperature:0", "30°C"),)),
        ),
        tools=(
            ToolSpec(
                "get_temperature",
                "Get the current temperature in a city.",
                recorded["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"],
            ),
        ),
        settings=Settings(tool_choice="auto"),
    )
    assert encoded(conversation) == recorded


def test_path_percent_encodes_the_model_id() -> None:
    stream = BedrockConverseStream().encode_request(
        "us.amazon.nova-micro-v1:0", tool_call().conversation
    )
    assert stream.path == "/model/us.amazon.nova-micro-v1%3A0/converse-stream"
    assert stream.method == "POST"
    assert stream.headers["content-type"] == "application/json"
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.moonshotai.kimi-k2.5"
    plain = BedrockConverse().encode_request(arn, tool_call().conversation)
    assert plain.path == (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile"
        "%2Fus.moonshotai.kimi-k2.5/converse"
    )


def test_seed_conversation() -> None:
    body = encoded(tool_result().conversation)
    assert body["messages"][1]["content"] == [
        {"text": "Getting it."},
        {"toolUse": {"toolUseId": "abc123xyz", "name": "get_weather", "input": {"city": "Tokyo"}}},
    ]
    assert body["messages"][2]["content"] == [
        {
            "toolResult": {
                "toolUseId": "abc123xyz",
                "content": [{"text": '{"temp":22}'}],
                "status": "success",
            }
        }
    ]
    assert body["inferenceConfig"] == {"maxTokens": 100}
    assert body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
    assert botocore_errors("moonshotai.kimi-k2.5", body) == ""


FULL = Conversation(
    system="Be brief.",
    messages=(
        UserMessage(
            content=(TextPart("look"), ImagePart("image/jpeg", b"\xff\xd8\xff"), TextPart("  "))
        ),
        AssistantMessage(
            content=(
                ThinkingPart("thought", signature="sig", origin="bedrock-converse-stream:m"),
                ThinkingPart(redacted=b"\x00\x01secret"),
                ThinkingPart(""),  # nothing to send
                TextPart(""),  # blank text is rejected by Bedrock: dropped
                ToolCall.from_raw("t1", "f", '{"a": [1, 2]}'),
                ToolCall.from_raw("t2", "g", "not json"),
            ),
            stop_reason="tool_use",
        ),
        UserMessage(
            content=(
                ToolResult("t1", {"ok": True}),
                ToolResult("t2", [1, 2], is_error=True),
                TextPart("and?"),
            )
        ),
    ),
    tools=(ToolSpec("f", "", {"type": "object"}), ToolSpec("g", "gee", {"type": "object"})),
    settings=Settings(
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
        stop_sequences=("END",),
        tool_choice={"tool": "f"},
    ),
)


def test_every_part_maps_and_botocore_accepts_it() -> None:
    body = encoded(FULL)
    user, assistant, results = (m["content"] for m in body["messages"])
    assert user == [{"text": "look"}, {"image": {"format": "jpeg", "source": {"bytes": "/9j/"}}}]
    assert assistant == [
        {"reasoningContent": {"reasoningText": {"text": "thought", "signature": "sig"}}},
        {"reasoningContent": {"redactedContent": "AAFzZWNyZXQ="}},
        {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": [1, 2]}}},
        {"toolUse": {"toolUseId": "t2", "name": "g", "input": {}}},
    ]
    assert results == [
        {
            "toolResult": {
                "toolUseId": "t1",
                "content": [{"json": {"ok": True}}],
                "status": "success",
            }
        },
        {"toolResult": {"toolUseId": "t2", "content": [{"text": "[1, 2]"}], "status": "error"}},
        {"text": "and?"},
    ]
    assert body["system"] == [{"text": "Be brief."}]
    assert body["inferenceConfig"] == {
        "maxTokens": 50,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END"],
    }
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": "f"}}
    assert "description" not in body["toolConfig"]["tools"][0]["toolSpec"]
    assert botocore_errors("m", body) == ""
    assert botocore_errors("m", body, "Converse") == ""


@pytest.mark.parametrize(
    ("choice", "wire"), [("auto", {"auto": {}}), ("any", {"any": {}}), ("none", None)]
)
def test_tool_choice(choice: Any, wire: dict[str, Any] | None) -> None:
    conversation = Conversation(
        messages=(UserMessage.text("hi"),),
        tools=(ToolSpec("f"),),
        settings=Settings(tool_choice=choice),
    )
    body = encoded(conversation)
    assert body["toolConfig"].get("toolChoice") == wire
    assert botocore_errors("m", body) == ""


def test_extra_fields_merge_into_nested_objects() -> None:
    conversation = Conversation(messages=(UserMessage.text("hi"),), settings=Settings(max_tokens=5))
    body = encoded(
        conversation,
        {"inferenceConfig": {"temperature": 0.1}, "performanceConfig": {"latency": "optimized"}},
    )
    assert body["inferenceConfig"] == {"maxTokens": 5, "temperature": 0.1}
    assert body["performanceConfig"] == {"latency": "optimized"}
    assert botocore_errors("m", body) == ""


# -- Converse (non-streaming) bodies ---------------------------------------------------------


def converse_body(name: str, i: int) -> bytes:
    return json.dumps(cassette(name)[i]["response"]["parsed_body"]).encode()


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_converse_kimi_reasoning_and_tool_call(sizes: list[int]) -> None:
    decoder = get_dialect("bedrock-converse").stream_decoder()
    s = summarise(
        decode(decoder, converse_body("pa_test_bedrock_moonshotai_tool_call.yaml", 0), sizes)
    )
    assert s.thinking.startswith(" The user is asking for the current temperature in London.")
    assert s.calls == [
        {
            "id": "functions.get_temperature:0",
            "name": "get_temperature",
            "arguments": {"city": "London"},
        }
    ]
    assert s.text == ""
    assert (s.stop_reason, s.usage.total_tokens if s.usage else None) == ("tool_use", 167)
    s = summarise(
        decode(ConverseBodyDecoder(), converse_body("pa_test_bedrock_moonshotai_tool_call.yaml", 1))
    )
    assert (s.text, s.stop_reason) == (" <think> The temperature in London is 30°C.", "end_turn")


@pytest.mark.parametrize(
    ("name", "i", "tool_id", "args"),
    [
        (
            "pa_test_bedrock_model_retry.yaml",
            0,
            "tooluse_Ze_bgl9CSqu8aJv7XD-_Dw",
            {"country": "France"},
        ),
        (
            "pa_test_bedrock_zai_tool_and_native_output.yaml",
            0,
            "tooluse_BmsLkZzRWcIfg3GImUKHq0",
            {"city": "London"},
        ),
        ("pa_mistral_document_tool_result.yaml", 0, "tooluse_daIKOZu4g4GrvIIv9wdqy4", {}),
    ],
)
def test_converse_tool_calls(name: str, i: int, tool_id: str, args: dict[str, Any]) -> None:
    s = summarise(decode(ConverseBodyDecoder(), converse_body(name, i)))
    assert [(c.id, c.arguments) for c in s.tool_calls] == [(tool_id, args)]
    assert s.stop_reason == "tool_use"
    assert s.starts == 1
    assert s.stops == 1


def test_converse_signed_and_redacted_reasoning() -> None:
    doc = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "S1"}}},
                    {"reasoningContent": {"redactedContent": "AAE="}},
                    {"text": "Done."},
                ],
            }
        },
        "stopReason": "max_tokens",
        "usage": {
            "inputTokens": 1,
            "outputTokens": 2,
            "totalTokens": 3,
            "cacheReadInputTokenCount": 7,
        },
    }
    s = summarise(decode(ConverseBodyDecoder(), json.dumps(doc).encode()))
    assert (s.thinking, s.signature, s.redacted, s.text) == ("hmm", "S1", [b"\x00\x01"], "Done.")
    assert s.stop_reason == "max_tokens"
    assert s.usage is not None
    assert s.usage.cache_read_tokens == 7


def test_converse_broken_bodies() -> None:
    with pytest.raises(IncompleteStreamError, match="empty"):
        decode(ConverseBodyDecoder(), b"")
    whole = converse_body("pa_test_bedrock_model_retry.yaml", 0)
    with pytest.raises(IncompleteStreamError, match="mid-document"):
        decode(ConverseBodyDecoder(), whole[:-20])
    with pytest.raises(InvalidEventError):
        decode(ConverseBodyDecoder(), b"{oops}")
    with pytest.raises(InvalidEventError):
        decode(ConverseBodyDecoder(), b'{"unrelated": 1}')
    decoder = ConverseBodyDecoder()
    decoder.feed(whole)
    decoder.close()
    (raw,) = decoder.raw_items()
    assert raw.kind == "body"
    assert json.loads(raw.data)["stopReason"] == "tool_use"


# -- HTTP errors -----------------------------------------------------------------------------


def test_error_type_from_x_amzn_error_type_header() -> None:
    err = BedrockConverseStream().decode_error(
        429,
        {
            "X-Amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "x-amzn-RequestId": "req-1",
            "Retry-After": "2",
        },
        b'{"message":"Too many requests, please wait before trying again."}',
    )
    assert err.error_type == "ThrottlingException"
    assert err.status == 429
    assert err.retryable
    assert err.outcome == "http_error"
    assert err.message == "Too many requests, please wait before trying again."
    assert err.request_id == "req-1"
    assert err.retry_after_s == 2.0


def test_invalid_model_error_without_headers() -> None:
    # the real 400 of wire-facts.md §1; recorders strip x-* headers, so there is no type
    body = b'{"message":"The provided model identifier is invalid."}'
    err = BedrockConverseStream().decode_error(400, {"content-type": "application/json"}, body)
    assert (err.error_type, err.status, err.message) == (
        None,
        400,
        "The provided model identifier is invalid.",
    )
    assert not err.retryable
    assert err.body == {"message": "The provided model identifier is invalid."}


@pytest.mark.parametrize(
    ("headers", "body", "etype", "message", "retry"),
    [
        (
            {},
            b'{"__type":"com.amazon.coral.service#InternalServerException","Message":"oops"}',
            "InternalServerException",
            "oops",
            None,
        ),
        (
            {},
            b'{"code":"ModelNotReadyException","message":"warming"}',
            "ModelNotReadyException",
            "warming",
            None,
        ),
        (
            {"x-amz-retry-after": "1500"},
            b"<html>Bad Gateway</html>",
            None,
            "<html>Bad Gateway</html>",
            1.5,
        ),
        ({"x-amzn-errortype": "ValidationException"}, b"", "ValidationException", "HTTP 503", None),
    ],
)
def test_error_shapes(
    headers: dict[str, str], body: bytes, etype: str | None, message: str, retry: float | None
) -> None:
    err = BedrockConverse().decode_error(503, headers, body)
    assert (err.error_type, err.message, err.retry_after_s, err.status) == (
        etype,
        message,
        retry,
        503,
    )
