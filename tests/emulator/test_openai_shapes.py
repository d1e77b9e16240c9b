"""The emulator's OpenAI-compatible output held against real recordings: the same request body
replayed to the emulator gives chunks/events with the recorded field names, order and sequence."""

from __future__ import annotations

import json
from itertools import groupby
from typing import Any

import httpx
import pytest

from callproof.emulator.app import create_app
from callproof.emulator.faults import FaultPlan
from callproof.wire.sse import SSEComment, SSEDecoder, SSEEvent
from tests.recordings import cassette

PLAN = FaultPlan.from_mapping(
    {
        "models": [
            {
                "id": "openai/gpt-4.1-mini",
                "flavour": "openrouter",
                "provider": "OpenAI",
                "first_event_s": 0,
                "tokens_per_s": 0,
                "jitter": 0,
            },
            {
                "id": "gpt-4o",
                "flavour": "openai",
                "first_event_s": 0,
                "tokens_per_s": 0,
                "jitter": 0,
            },
        ]
    }
)
APP = create_app(preset="fast", faults=PLAN, seed=3)


def _recorded(name: str, suffix: str) -> list[tuple[dict[str, Any], str]]:
    """(request body, SSE response text) of each streamed call in a cassette."""
    out = []
    for interaction in cassette(name):
        request = interaction["request"]
        if not str(request.get("uri", "")).endswith(suffix):
            continue
        body = request.get("body")
        parsed = json.loads(body) if isinstance(body, str) and body else request["parsed_body"]
        text = interaction["response"]["body"].get("string")
        if parsed.get("stream") and isinstance(text, str):
            out.append((parsed, text))
    return out


def _items(text: str | bytes) -> list[SSEEvent | SSEComment]:
    raw = text.encode() if isinstance(text, str) else text
    decoder = SSEDecoder()
    items = decoder.feed(raw)
    assert not decoder.close()
    return items


async def _emulate(path: str, body: dict[str, Any]) -> bytes:
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
        response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return response.content


def _chunks(items: list[SSEEvent | SSEComment]) -> list[dict[str, Any]]:
    return [json.loads(i.data) for i in items if isinstance(i, SSEEvent) and i.data != "[DONE]"]


def _shape(chunk: dict[str, Any]) -> str:
    """What a chat chunk carries: role/text/tool head/tool args/finish/usage."""
    if chunk.get("usage"):
        return "usage"
    (choice,) = chunk["choices"]
    if choice["finish_reason"]:
        return "finish"
    delta = choice["delta"]
    if delta.get("tool_calls"):
        return "tool_head" if "id" in delta["tool_calls"][0] else "tool_args"
    return "text" if delta.get("content") else "role"


@pytest.mark.parametrize("index", [0, 1])
async def test_openrouter_chat_stream_matches_llm_openrouter_recording(index: int) -> None:
    body, text = _recorded("llmor_tool_calls_chat_603cd08.yaml", "/chat/completions")[index]
    recorded = _items(text)
    ours = _items(await _emulate("/v1/chat/completions", body))
    assert isinstance(ours[-1], SSEEvent)
    assert ours[-1].data == "[DONE]"
    assert isinstance(recorded[-1], SSEEvent)
    assert recorded[-1].data == "[DONE]"
    rec_chunks, our_chunks = _chunks(recorded), _chunks(ours)
    # the keep-alive comment is OpenRouter's own
    assert any(isinstance(i, SSEComment) and i.text == "OPENROUTER PROCESSING" for i in ours)

    # the same sequence of chunk kinds (runs of text deltas collapsed)
    def kinds(chunks: list[dict[str, Any]]) -> list[str]:
        return [k for k, _ in groupby(_shape(c) for c in chunks)]

    assert kinds(our_chunks) == kinds(rec_chunks)
    # field names and their order
    for ours_c, rec_c in zip(our_chunks[:-1], rec_chunks[:-1], strict=False):
        assert list(ours_c) == list(rec_c)
        assert list(ours_c["choices"][0]) == list(rec_c["choices"][0])
    for shape in ("tool_head", "tool_args", "finish", "text", "role"):
        rec = [c for c in rec_chunks if _shape(c) == shape]
        mine = [c for c in our_chunks if _shape(c) == shape]
        if rec:
            rec_delta, our_delta = rec[0]["choices"][0]["delta"], mine[0]["choices"][0]["delta"]
            assert list(our_delta) == list(rec_delta), shape
            if shape.startswith("tool"):
                rec_call, our_call = rec_delta["tool_calls"][0], our_delta["tool_calls"][0]
                assert list(our_call) == list(rec_call)
                assert list(our_call["function"]) == list(rec_call["function"])
    rec_usage, our_usage = rec_chunks[-1], our_chunks[-1]
    assert list(our_usage) == list(rec_usage)
    assert set(rec_usage["usage"]) <= set(our_usage["usage"])
    assert our_usage["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert our_chunks[0]["id"].startswith("gen-")
    assert {c["provider"] for c in our_chunks} == {"OpenAI"}


async def test_tool_head_fragment_matches_recording_exactly_but_for_ids() -> None:
    body, text = _recorded("llmor_tool_calls_chat_603cd08.yaml", "/chat/completions")[0]
    rec = next(c for c in _chunks(_items(text)) if _shape(c) == "tool_head")
    ours = next(
        c
        for c in _chunks(_items(await _emulate("/v1/chat/completions", body)))
        if _shape(c) == "tool_head"
    )
    rec_call = rec["choices"][0]["delta"]["tool_calls"][0]
    our_call = ours["choices"][0]["delta"]["tool_calls"][0]
    assert {**our_call, "id": "X"} == {**rec_call, "id": "X"}


@pytest.mark.parametrize("index", [0, 1, 2])
async def test_openai_chat_stream_matches_gpt4o_recording(index: int) -> None:
    body, text = _recorded("pa_temporal_complex_agent_run.yaml", "/chat/completions")[index]
    body = {**body, "model": "gpt-4o"}
    rec_chunks = _chunks(_items(text))
    our_chunks = _chunks(_items(await _emulate("/v1/chat/completions", body)))
    for chunk in our_chunks:
        assert set(chunk) == set(rec_chunks[0])
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["id"].startswith("chatcmpl-")
    for ours_c in our_chunks[:-1]:
        assert list(ours_c["choices"][0]) == list(rec_chunks[0]["choices"][0])
    assert rec_chunks[-1]["choices"] == []
    assert our_chunks[-1]["choices"] == []
    assert set(our_chunks[-1]["usage"]) == set(rec_chunks[-1]["usage"])
    assert set(our_chunks[-1]["usage"]["completion_tokens_details"]) == set(
        rec_chunks[-1]["usage"]["completion_tokens_details"]
    )
    finish = [c for c in our_chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    rec_finish = [c for c in rec_chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish[0]["choices"][0]["delta"] == rec_finish[0]["choices"][0]["delta"] == {}
    assert finish[0]["choices"][0]["finish_reason"] == rec_finish[0]["choices"][0]["finish_reason"]
    assert our_chunks[0]["choices"][0]["delta"]["role"] == "assistant"


async def test_openai_parallel_tool_calls_use_index_0_and_1() -> None:
    rec_body, _ = _recorded("pa_temporal_complex_agent_run.yaml", "/chat/completions")[0]
    body = {
        **rec_body,
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Weather for Tokyo and Paris?"}],
        "tool_choice": "auto",
    }
    chunks = _chunks(_items(await _emulate("/v1/chat/completions", body)))
    heads = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and _shape(c) == "tool_head"
    ]
    assert [h["index"] for h in heads] == [0, 1]
    # as in the recording's parallel call: a later head carries only tool_calls
    rec_chunks = _chunks(
        _items(_recorded("pa_temporal_complex_agent_run.yaml", "/chat/completions")[0][1])
    )
    rec_second = next(
        c["choices"][0]["delta"]
        for c in rec_chunks
        if c["choices"]
        and _shape(c) == "tool_head"
        and c["choices"][0]["delta"]["tool_calls"][0]["index"] == 1
    )
    our_second = next(
        c["choices"][0]["delta"]
        for c in chunks
        if c["choices"]
        and _shape(c) == "tool_head"
        and c["choices"][0]["delta"]["tool_calls"][0]["index"] == 1
    )
    assert list(our_second) == list(rec_second) == ["tool_calls"]
    assert list(our_second["tool_calls"][0]) == list(rec_second["tool_calls"][0])
    assert all(h["function"]["arguments"] == "" and h["type"] == "function" for h in heads)


def _collapse(events: list[dict[str, Any]]) -> list[str]:
    return [k for k, _ in groupby(e["type"] for e in events)]


@pytest.mark.parametrize("index", [0, 1])
async def test_responses_stream_matches_openrouter_responses_recording(index: int) -> None:
    body, text = _recorded("llmor_tool_calls.yaml", "/responses")[index]
    recorded = _items(text)
    ours = _items(await _emulate("/v1/responses", body))
    rec_events, our_events = _chunks(recorded), _chunks(ours)
    assert _collapse(our_events) == _collapse(rec_events)
    assert [e["sequence_number"] for e in our_events] == list(range(len(our_events)))
    assert isinstance(ours[0], SSEComment)
    assert isinstance(recorded[0], SSEComment)
    assert isinstance(ours[-1], SSEEvent)
    assert ours[-1].data == "[DONE]"
    by_type = {e["type"]: e for e in rec_events}
    for event in our_events:
        rec = by_type[event["type"]]
        assert list(event) == list(rec), event["type"]
        if "response" in event:
            assert list(event["response"]) == list(rec["response"])
            if event["response"]["usage"]:
                assert list(event["response"]["usage"]) == list(rec["response"]["usage"])
        if "item" in event:
            assert set(event["item"]) == set(rec["item"])
        if "part" in event:
            assert list(event["part"]) == list(rec["part"])
    final = our_events[-1]["response"]
    assert final["status"] == "completed"
    assert set(final["output"][0]) == set(rec_events[-1]["response"]["output"][0])


async def test_responses_function_call_arguments_match_recording() -> None:
    body, text = _recorded("llmor_tool_calls.yaml", "/responses")[0]
    rec = {e["type"]: e for e in _chunks(_items(text))}
    ours = {e["type"]: e for e in _chunks(_items(await _emulate("/v1/responses", body)))}
    done_key = "response.function_call_arguments.done"
    assert ours[done_key]["name"] == rec[done_key]["name"] == "llm_version"
    assert ours[done_key]["arguments"] == rec[done_key]["arguments"] == "{}"
    added = ours["response.output_item.added"]["item"]
    assert added["type"] == "function_call"
    assert added["arguments"] == ""
    assert added["id"].startswith("fc_tmp_")


async def test_reasoning_keepalive_and_error_chunks_match_the_stream_error_recording() -> None:
    (interaction,) = cassette("pa_test_openrouter_stream_error.yaml")
    text = interaction["response"]["body"]["string"]
    assert text.startswith(": OPENROUTER PROCESSING\n\n")
    recorded = _chunks(_items(text))
    rec_reasoning = recorded[0]["choices"][0]["delta"]
    rec_error = next(c for c in recorded if "error" in c)
    body = {
        "model": "moonshotai/kimi-k2.5",
        "messages": [{"role": "user", "content": "Hello there"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": 10,
    }
    raw = await _emulate("/v1/chat/completions", body)
    assert raw.startswith(b": OPENROUTER PROCESSING\n\n")
    ours = _chunks(_items(raw))
    our_reasoning = ours[0]["choices"][0]["delta"]
    assert list(our_reasoning) == list(rec_reasoning)
    assert list(our_reasoning["reasoning_details"][0]) == list(
        rec_reasoning["reasoning_details"][0]
    )
    assert our_reasoning["reasoning"] == our_reasoning["reasoning_details"][0]["text"]

    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
        response = await client.post(
            "/v1/chat/completions",
            json=body,
            headers={"x-callproof-fault": "stream_exception:validationException"},
        )
    assert response.status_code == 200
    items = _items(response.content)
    assert isinstance(items[-1], SSEEvent)
    assert items[-1].data == "[DONE]"
    our_error = next(c for c in _chunks(items) if "error" in c)
    assert list(our_error)[:3] == list(rec_error)[:3] == ["id", "provider", "error"]
    assert {"code", "message"} <= set(our_error["error"])
    assert list(our_error["choices"][0]) == list(rec_error["choices"][0])
    assert our_error["choices"][0]["finish_reason"] == "error"
    assert our_error["error"]["message"] == rec_error["error"]["message"] == "Token limit reached"


async def test_same_seed_same_bytes_but_for_the_clock() -> None:
    """Ids, jitter and obfuscation come from the seeded per-request RNG."""
    body, _ = _recorded("pa_temporal_complex_agent_run.yaml", "/chat/completions")[0]
    body = {**body, "model": "gpt-4o"}

    async def once(seed: int) -> list[dict[str, Any]]:
        app = create_app(preset="fast", faults=PLAN, seed=seed)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
            response = await client.post("/v1/chat/completions", json=body)
        return [{**c, "created": 0} for c in _chunks(_items(response.content))]

    first, again, other = await once(4), await once(4), await once(5)
    assert first == again
    assert first != other
