"""Real recordings replayed end to end through the client over httpx.MockTransport, bodies
delivered in awkward 1..7-byte pieces. Expectations come from an independent reading of each
recording (botocore's own eventstream parser; plain JSON for SSE), not from our decoders."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import botocore.eventstream
import httpx
import pytest

from callproof.client import Client
from callproof.conversation import Conversation, UserMessage
from callproof.errors import StreamExceptionError
from callproof.events import Response
from tests.client.conftest import awkward, make_target
from tests.recordings import (
    BEDROCK_STREAM_CASSETTES,
    binary_bodies,
    cassette,
    live_sonnet_stream,
)

CONV = Conversation(messages=(UserMessage.text("hi"),))


@dataclass
class Expected:
    text: str = ""
    thinking: str = ""
    signature: str | None = None
    redacted: bool = False
    tool_calls: list[tuple[str, str, Any]] = field(default_factory=list)
    stop: str | None = None


def bedrock_expected(body: bytes) -> Expected:
    """What botocore's parser sees in a ConverseStream body."""
    buf = botocore.eventstream.EventStreamBuffer()
    buf.add_data(body)
    exp = Expected()
    tools: dict[int, list[Any]] = {}
    for msg in buf:
        event = msg.headers[":event-type"]
        payload = json.loads(msg.payload)
        if event == "contentBlockStart" and "toolUse" in payload["start"]:
            tu = payload["start"]["toolUse"]
            if tu.get("type") != "server_tool_use":
                tools[payload["contentBlockIndex"]] = [tu["toolUseId"], tu["name"], ""]
        elif event == "contentBlockDelta":
            delta = payload["delta"]
            idx = payload["contentBlockIndex"]
            exp.text += delta.get("text", "")
            rc = delta.get("reasoningContent", {})
            exp.thinking += rc.get("text", "")
            if rc.get("signature"):
                exp.signature = rc["signature"]
            if rc.get("redactedContent"):
                exp.redacted = True
            if "toolUse" in delta and idx in tools:
                tools[idx][2] += delta["toolUse"]["input"]
        elif event == "messageStop":
            exp.stop = payload["stopReason"]
    exp.tool_calls = [(i, n, json.loads(a) if a else {}) for i, n, a in tools.values()]
    return exp


async def run(api: str, body: bytes, status: int = 200, ctype: str = "") -> Response:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            headers={"content-type": ctype, "x-amzn-requestid": "req-123"},
            content=awkward(body),
        )

    async with Client(transport=httpx.MockTransport(handler), keep_events=True) as client:
        return await client.complete(make_target(api), CONV)


BEDROCK_BODIES = [
    pytest.param(body, id=f"{name}#{i}")
    for name in BEDROCK_STREAM_CASSETTES
    for i, body in enumerate(binary_bodies(name))
] + [pytest.param(live_sonnet_stream()[0], id="vercel-live-sonnet46")]


@pytest.mark.parametrize("body", BEDROCK_BODIES)
async def test_bedrock_recordings_decode_like_botocore(body: bytes) -> None:
    exp = bedrock_expected(body)
    resp = await run("bedrock-converse-stream", body, ctype="application/vnd.amazon.eventstream")
    assert resp.text == exp.text
    assert resp.thinking == exp.thinking
    assert resp.thinking_signature == exp.signature
    assert (resp.thinking_redacted is not None) == exp.redacted
    assert [(c.id, c.name, c.arguments) for c in resp.tool_calls] == exp.tool_calls
    assert resp.raw_stop_reason == exp.stop
    assert resp.request_id == "req-123"
    assert resp.timings.first_event_s is not None
    assert resp.timings.total_s is not None
    assert resp.timings.total_s >= resp.timings.first_event_s
    assert resp.usage is not None
    assert resp.usage.output_tokens


def test_live_sonnet_matches_what_the_recorder_observed() -> None:
    import asyncio

    body, observed = live_sonnet_stream()
    resp = asyncio.run(run("bedrock-converse-stream", body))
    assert resp.text == observed["text"]
    assert resp.usage is not None
    assert resp.usage.input_tokens == observed["inputTokens"]
    assert resp.usage.output_tokens == observed["outputTokens"]


def sse_bodies(name: str, path: str) -> list[str]:
    return [
        i["response"]["body"]["string"]
        for i in cassette(name)
        if i["request"]["uri"].endswith(path)
    ]


def chat_expected(body: str) -> Expected:
    exp = Expected()
    calls: dict[int, list[Any]] = {}
    for line in body.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            exp.text += delta.get("content") or ""
            exp.thinking += delta.get("reasoning") or ""
            for tc in delta.get("tool_calls") or []:
                slot = calls.setdefault(tc["index"], [None, None, ""])
                slot[0] = tc.get("id") or slot[0]
                slot[1] = (tc.get("function") or {}).get("name") or slot[1]
                slot[2] += (tc.get("function") or {}).get("arguments") or ""
            if choice.get("finish_reason"):
                exp.stop = choice["finish_reason"]
    exp.tool_calls = [(i, n, json.loads(a) if a else {}) for i, n, a in calls.values()]
    return exp


CHAT_BODIES = [
    pytest.param(b, id=f"{name}#{i}")
    for name in ("llmor_tool_calls_chat_603cd08.yaml", "pa_temporal_complex_agent_run.yaml")
    for i, b in enumerate(sse_bodies(name, "/chat/completions"))
]


@pytest.mark.parametrize("body", CHAT_BODIES)
async def test_chat_completion_recordings(body: str) -> None:
    exp = chat_expected(body)
    resp = await run("openai-completions", body.encode(), ctype="text/event-stream")
    assert resp.text == exp.text
    assert resp.thinking == exp.thinking
    assert [(c.id, c.name, c.arguments) for c in resp.tool_calls] == exp.tool_calls
    assert resp.raw_stop_reason == exp.stop
    assert resp.stop_reason == {"stop": "end_turn", "tool_calls": "tool_use"}[exp.stop or ""]
    assert resp.keepalives == body.count("\n: ") + body.startswith(":")


async def test_openrouter_midstream_error_is_a_stream_exception() -> None:
    (body,) = sse_bodies("pa_test_openrouter_stream_error.yaml", "/chat/completions")
    with pytest.raises(StreamExceptionError) as info:
        await run("openai-completions", body.encode(), ctype="text/event-stream")
    err = info.value
    assert "Token limit reached" in err.message
    assert err.target == "t-openai-completions"
    assert err.model == "test-model"
    assert err.response is not None
    assert err.response.keepalives == 17
    assert err.response.thinking == chat_expected(body).thinking != ""
    assert err.response.timings.total_s is not None


def responses_expected(body: str) -> Expected:
    exp = Expected()
    for line in body.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if event.get("type") == "response.completed":
            response = event["response"]
            for item in response["output"]:
                if item["type"] == "message":
                    exp.text += "".join(c.get("text", "") for c in item["content"])
                elif item["type"] == "function_call":
                    exp.tool_calls.append(
                        (item["call_id"], item["name"], json.loads(item["arguments"] or "{}"))
                    )
            exp.stop = response["status"]
    return exp


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b, id=f"responses#{i}")
        for i, b in enumerate(sse_bodies("llmor_tool_calls.yaml", "/responses"))
    ],
)
async def test_responses_recordings(body: str) -> None:
    exp = responses_expected(body)
    resp = await run("openai-responses", body.encode(), ctype="text/event-stream")
    assert resp.text == exp.text
    assert [(c.id, c.name, c.arguments) for c in resp.tool_calls] == exp.tool_calls
    assert resp.stop_reason == ("tool_use" if exp.tool_calls else "end_turn")
    assert exp.stop == "completed"
