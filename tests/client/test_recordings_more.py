"""More real recordings through the client end to end: Bedrock Converse JSON bodies, and the
vercel/ai live Kimi streams (decoded events, re-framed with the project's encoder) including
the one where Kimi writes its tool call as text, which must be classified, not passed."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from callproof.attempt import attempt_from
from callproof.client import Client
from callproof.conversation import Conversation, UserMessage
from callproof.events import Response
from callproof.outcomes import Outcome
from tests.client.conftest import awkward, make_target
from tests.client.streams import es_event
from tests.recordings import cassette, chunks

CONV = Conversation(messages=(UserMessage.text("hi"),))


async def run(api: str, body: bytes, ctype: str) -> Response:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": ctype}, content=awkward(body))

    async with Client(transport=httpx.MockTransport(handler)) as client:
        return await client.complete(make_target(api), CONV)


CONVERSE = [
    pytest.param(i["response"]["parsed_body"], id=f"{name}#{n}")
    for name in (
        "pa_test_bedrock_moonshotai_tool_call.yaml",
        "pa_test_bedrock_zai_tool_and_native_output.yaml",
        "pa_test_bedrock_model_retry.yaml",
        "pa_mistral_document_tool_result.yaml",
    )
    for n, i in enumerate(cassette(name))
]


@pytest.mark.parametrize("doc", CONVERSE)
async def test_converse_bodies(doc: dict[str, Any]) -> None:
    resp = await run("bedrock-converse", json.dumps(doc).encode(), "application/json")
    content = doc["output"]["message"]["content"]
    assert resp.text == "".join(b.get("text", "") for b in content)
    assert resp.thinking == "".join(
        b["reasoningContent"]["reasoningText"]["text"] for b in content if "reasoningContent" in b
    )
    calls = [b["toolUse"] for b in content if "toolUse" in b]
    assert [(c.id, c.name, c.arguments) for c in resp.tool_calls] == [
        (c["toolUseId"], c["name"], c["input"]) for c in calls
    ]
    assert resp.raw_stop_reason == doc["stopReason"]
    assert resp.usage is not None
    assert resp.usage.input_tokens == doc["usage"]["inputTokens"]
    assert resp.timings.first_event_s is not None


def reframe(name: str) -> bytes:
    """A vercel ``.chunks.txt`` (one decoded event per line) framed again as eventstream."""
    frames = []
    for line in chunks(name):
        ((event, payload),) = line.items()
        frames.append(es_event(event, payload))
    return b"".join(frames)


async def test_kimi_tool_call_written_as_text_is_caught() -> None:
    resp = await run("bedrock-converse-stream", reframe("vercel_kimi_read_file.chunks.txt"), "")
    assert "<function=read_file>" in resp.text
    assert resp.stop_reason == "end_turn"
    assert resp.tool_calls == []
    assert attempt_from(resp).outcome is Outcome.TOOL_CALL_IN_TEXT


async def test_kimi_glob_search_stream() -> None:
    resp = await run("bedrock-converse-stream", reframe("vercel_kimi_glob_search.chunks.txt"), "")
    (call,) = resp.tool_calls
    assert call.id == "functions.glob_search:0"
    assert call.arguments == {"pattern": "**/*cursor*"}
    assert resp.thinking.strip()
    assert resp.stop_reason == "tool_use"
    assert attempt_from(resp).outcome is Outcome.OK


async def test_kimi_final_inline_think_and_claude_signature() -> None:
    final = await run("bedrock-converse-stream", reframe("vercel_kimi_final.chunks.txt"), "")
    assert "<think>" in final.text
    assert final.stop_reason == "end_turn"
    reasoning = await run("bedrock-converse-stream", reframe("vercel_reasoning.chunks.txt"), "")
    assert reasoning.thinking
    assert reasoning.thinking_signature
