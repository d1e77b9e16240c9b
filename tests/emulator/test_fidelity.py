"""Departures from the real services that issue 9 lists, one test each, with the source.

* reject_reasoning_replay (issue 9 item 5; the seed's third suspect, seeds/004: "Rejecting the
  reasoningContent field"); the Bedrock message is a real one (langchain-ai/langchain-aws#401).
* G3: a non-streamed Responses call on the OpenRouter flavour keeps a stream_exception
  (OpenRouter reports a failed generation in a 200 body, recorded in
  pa_test_openrouter_stream_error.yaml for chat).
* G8: tool_call_in_text in each family's markup, and the client's detector
  (callproof.outcomes.TOOL_MARKUP) recognises every one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from callproof.emulator import create_app
from callproof.emulator.faults import Fault, FaultPlan, tool_markup
from callproof.emulator.models import ScriptedCall
from callproof.emulator.presets import get_preset
from callproof.errors import ConfigError
from callproof.outcomes import TOOL_MARKUP

KIMI = "moonshotai.kimi-k2.5"
REPLAYED: list[dict[str, Any]] = [
    {"role": "user", "content": [{"text": "Weather for Tokyo?"}]},
    {
        "role": "assistant",
        "content": [
            {"reasoningContent": {"reasoningText": {"text": "I should call get_weather."}}},
            {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Tokyo"}}},
        ],
    },
    {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "22"}]}}]},
]
PLAN = FaultPlan.from_mapping(
    {"models": [{"id": "gpt-4o", "flavour": "openai", "first_event_s": 0, "tokens_per_s": 0}]}
)
TOOLS = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {}}}}]}


def post(app: Any, path: str, body: dict[str, Any], fault: str | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
            headers = {"x-callproof-fault": fault} if fault else {}
            return await client.post(path, json=body, headers=headers)

    return asyncio.run(go())


def converse(
    app: Any, model: str, messages: list[dict[str, Any]], fault: str | None = None
) -> httpx.Response:
    path = f"/model/{model}/converse"
    return post(app, path, {"messages": messages, "toolConfig": TOOLS}, fault)


def test_reject_reasoning_replay_fault_is_a_validation_exception() -> None:
    app = create_app(preset="fast")
    response = converse(app, "amazon.nova-pro-v1:0", REPLAYED, "reject_reasoning_replay")
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"].startswith("ValidationException:")
    assert "cannot contain reasoning content" in response.json()["message"]


def test_reject_reasoning_replay_needs_a_replay() -> None:
    app = create_app(preset="fast")
    without = [REPLAYED[0]]
    response = converse(app, "amazon.nova-pro-v1:0", without, "reject_reasoning_replay")
    assert response.status_code == 200


def test_seed_preset_option_makes_kimi_reject_replayed_reasoning() -> None:
    # `--preset seed:reject_reasoning_replay`: thinking-replay now tests the third hypothesis
    app = create_app(preset="fast:reject_reasoning_replay")
    assert converse(app, KIMI, REPLAYED).status_code == 400
    assert converse(app, "mistral.mistral-large-3-675b-instruct", REPLAYED).status_code == 200
    plain = [REPLAYED[0], {"role": "assistant", "content": [{"text": "Hi"}]}, REPLAYED[0]]
    assert converse(app, KIMI, plain).status_code == 200
    default = create_app(preset="fast")
    assert converse(default, KIMI, REPLAYED).status_code == 200


def test_preset_options_are_checked() -> None:
    assert get_preset("seed:reject_reasoning_replay=hang").models[0].rejects_reasoning_replay == (
        "hang"
    )
    with pytest.raises(ConfigError, match="unknown preset option"):
        get_preset("seed:nope")
    with pytest.raises(ConfigError, match="error or hang"):
        get_preset("seed:reject_reasoning_replay=maybe")
    assert Fault.parse("reject_reasoning_replay:hang").arg == "hang"


def test_openai_reasoning_replay_rejected_as_a_400() -> None:
    app = create_app(preset="fast")
    messages = [
        {"role": "user", "content": "Weather for Tokyo?"},
        {"role": "assistant", "content": "Sunny.", "reasoning_content": "I thought."},
        {"role": "user", "content": "And Paris?"},
    ]
    body = {"model": "moonshotai/kimi-k2.5", "messages": messages}
    response = post(app, "/v1/chat/completions", body, "reject_reasoning_replay")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_openrouter_non_streamed_responses_keep_stream_exception() -> None:
    app = create_app(preset="fast")
    body = {"model": "moonshotai/kimi-k2.5", "input": "Hello"}
    response = post(app, "/v1/responses", body, "stream_exception:modelStreamErrorException")
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "failed"
    assert data["error"]["message"]


CALLS = (ScriptedCall("c0", "get_weather", '{"city": "Tokyo"}'),)


@pytest.mark.parametrize(
    ("model", "needle"),
    [
        ("moonshotai.kimi-k2.5", "<|tool_calls_section_begin|>"),
        ("mistral.mistral-large-3-675b-instruct", "[TOOL_CALLS]"),
        ("meta.llama3-1-70b-instruct-v1:0", "<function=get_weather>"),
        ("qwen.qwen3-32b-v1:0", "<tool_call>"),
        ("deepseek.r1-v1:0", "<tool_call>"),
    ],
)
def test_tool_call_in_text_uses_the_family_markup(model: str, needle: str) -> None:
    markup = tool_markup(model, CALLS)
    assert needle in markup
    assert "Tokyo" in markup
    assert TOOL_MARKUP.search(markup)  # the client names it tool_call_in_text


def test_mistral_on_bedrock_leaks_mistral_markup() -> None:
    app = create_app(preset="fast")
    response = converse(
        app, "mistral.mistral-large-3-675b-instruct", REPLAYED[:1], "tool_call_in_text"
    )
    text = response.json()["output"]["message"]["content"][0]["text"]
    assert text.startswith("[TOOL_CALLS]") or "[TOOL_CALLS]" in text
    assert json.loads(text.split("[TOOL_CALLS]", 1)[1])[0]["name"] == "get_weather"
    assert response.json()["stopReason"] == "end_turn"


def _sse_data(body: bytes) -> list[dict[str, Any]]:
    out = []
    for line in body.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


def test_openrouter_usage_in_the_last_chunk_without_asking() -> None:
    # G4: OpenRouter documents usage in the final SSE message always (openrouter.ai/docs,
    # "Usage accounting"); no stream_options needed
    app = create_app(preset="fast")
    body = {"model": "moonshotai/kimi-k2.5", "messages": [{"role": "user", "content": "Hi"}]}
    chunks = _sse_data(post(app, "/v1/chat/completions", {**body, "stream": True}).content)
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    assert all("usage" not in c for c in chunks[:-1])


@pytest.mark.parametrize("fault", [None, "http_error:429", "http_error:500"])
def test_openai_answers_and_errors_carry_request_id_and_ratelimit_headers(
    fault: str | None,
) -> None:
    # G5: api.openai.com sends x-request-id and x-ratelimit-* on every answer and error
    # (platform.openai.com/docs/guides/rate-limits, "Rate limits in headers")
    app = create_app(preset="fast", faults=PLAN)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
    for stream in (False, True):
        response = post(app, "/v1/chat/completions", {**body, "stream": stream}, fault)
        assert response.headers["x-request-id"].startswith("req_")
        assert int(response.headers["x-ratelimit-limit-requests"]) > 0
        assert "x-ratelimit-remaining-tokens" in response.headers
        assert "x-ratelimit-reset-requests" in response.headers
    missing = post(app, "/v1/chat/completions", {**body, "model": "nope"})
    assert missing.status_code == 404
    assert missing.headers["x-request-id"].startswith("req_")


def test_request_ids_are_unique_across_emulators_with_the_same_seed() -> None:
    # G7: real request ids never repeat; two emulators with one --seed must not share them
    ids = set()
    for _ in range(2):
        app = create_app(preset="fast", seed=7)
        path = "/model/amazon.nova-pro-v1:0/converse"
        ids.add(post(app, path, {"messages": REPLAYED[:1]}).headers["x-amzn-requestid"])
    assert len(ids) == 2


def test_system_fingerprint_is_stable_per_model() -> None:
    app = create_app(preset="fast", faults=PLAN)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
    prints = {post(app, "/v1/chat/completions", body).json()["system_fingerprint"] for _ in "ab"}
    assert len(prints) == 1
    assert next(iter(prints)).startswith("fp_")


def test_responses_deltas_carry_obfuscation() -> None:
    # G7: OpenAI adds `obfuscation` to every Responses delta by default
    # (platform.openai.com/docs/api-reference/responses-streaming, stream_options)
    app = create_app(preset="fast", faults=PLAN)
    body = {"model": "gpt-4o", "input": "Hello", "stream": True}
    events = _sse_data(post(app, "/v1/responses", body).content)
    deltas = [e for e in events if e["type"].endswith(".delta")]
    assert deltas
    assert all(isinstance(e["obfuscation"], str) and e["obfuscation"] for e in deltas)
    assert not any("obfuscation" in e for e in events if not e["type"].endswith(".delta"))


def test_scripted_model_works_from_the_task_not_a_retry_prompt() -> None:
    # issue 9: a framework's retry prompt ("Please try again." - pydantic-ai's RetryPromptPart
    # ends "Fix the errors and try again.") made the script call get_weather(city="Please")
    app = create_app(preset="fast")
    tools = {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "inputSchema": {
                        "json": {"type": "object", "properties": {"city": {"type": "string"}}}
                    },
                }
            }
        ]
    }
    retry = [
        REPLAYED[0],
        {"role": "assistant", "content": [{"text": "Let me check."}]},
        {"role": "user", "content": [{"text": "Please fix the errors and try again."}]},
    ]
    path = "/model/amazon.nova-pro-v1:0/converse"
    answer = post(app, path, {"messages": retry, "toolConfig": tools}).json()
    call = next(b["toolUse"] for b in answer["output"]["message"]["content"] if "toolUse" in b)
    assert call["input"] == {"city": "Tokyo"}
    corrected = [
        *REPLAYED[:1],
        {
            "role": "assistant",
            "content": [
                {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Tokyo"}}}
            ],
        },
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "t1", "content": [{"json": {"temp": 22}}]}}],
        },
        {"role": "assistant", "content": [{"text": "Done."}]},
        {"role": "user", "content": [{"text": "Please answer in one sentence."}]},
    ]
    final = post(app, path, {"messages": corrected, "toolConfig": tools}).json()
    assert final["stopReason"] == "end_turn"
    assert "22" in final["output"]["message"]["content"][0]["text"]
