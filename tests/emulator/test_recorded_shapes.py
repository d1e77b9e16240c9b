"""The emulator's Bedrock output held against real recorded traffic: frame headers, event
order, block layout, payload fields and the ``p`` padding."""

from __future__ import annotations

import asyncio
import json
import re
import string
from itertools import groupby
from typing import Any

import httpx

from callproof.emulator import create_app
from callproof.wire.eventstream import EventStreamDecoder, EventStreamMessage
from tests.recordings import binary_bodies, cassette, chunks, live_sonnet_stream

from .conftest import FIRST_TURN, TOOL_RESULT_TURN, WEATHER_TOOL_CONFIG

APP = create_app(preset="fast", seed=1)
PAD = string.ascii_lowercase + string.ascii_uppercase + string.digits


def emulated(
    model: str, messages: list[dict[str, Any]], operation: str = "converse-stream"
) -> bytes:
    async def go() -> bytes:
        transport = httpx.ASGITransport(app=APP)
        async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
            response = await client.post(
                f"/model/{model.replace(':', '%3A')}/{operation}",
                json={"messages": messages, "toolConfig": WEATHER_TOOL_CONFIG},
            )
            assert response.status_code == 200
            return response.content

    return asyncio.run(go())


def frames(body: bytes) -> list[EventStreamMessage]:
    decoder = EventStreamDecoder()
    messages = [m for i in range(0, len(body), 7) for m in decoder.feed(body[i : i + 7])]
    decoder.close()
    return messages


def payloads(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    return [(m.event_type or "", json.loads(m.payload)) for m in frames(body)]


def layout(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[Any, ...]]:
    """Event kind, block index and delta kind, with runs of identical deltas collapsed."""
    shape = []
    for name, payload in events:
        delta = next(iter(payload.get("delta", {})), None)
        start = next(iter(payload.get("start", {})), None)
        shape.append((name, payload.get("contentBlockIndex"), delta or start))
    return [key for key, _ in groupby(shape)]


def test_frame_headers_match_the_recorded_ones_exactly() -> None:
    recorded = frames(binary_bodies("pa_test_bedrock_model_iter_stream.yaml")[0])
    ours = frames(emulated("amazon.nova-pro-v1:0", FIRST_TURN))
    recorded_headers = {(m.event_type, tuple(m.headers)) for m in recorded}
    our_headers = {(m.event_type, tuple(m.headers)) for m in ours}
    assert our_headers == recorded_headers  # same names, same order, same event types
    live, _ = live_sonnet_stream()
    assert {tuple(m.headers) for m in frames(live)} == {tuple(m.headers) for m in ours}


def test_payload_fields_and_padding_match_a_recorded_nova_tool_stream() -> None:
    recorded = payloads(binary_bodies("pa_test_bedrock_model_iter_stream.yaml")[0])
    ours = payloads(emulated("amazon.nova-pro-v1:0", FIRST_TURN))
    assert layout(ours) == layout(recorded)

    def keys(events: list[tuple[str, dict[str, Any]]]) -> dict[str, set[tuple[str, ...]]]:
        out: dict[str, set[tuple[str, ...]]] = {}
        for name, payload in events:
            out.setdefault(name, set()).add(tuple(payload))
        return out

    # same members in the same (sorted) order for every event type
    assert keys(ours) == keys(recorded)
    for _, payload in ours:
        assert PAD.startswith(payload["p"])
        assert payload["p"]
    assert len({payload["p"] for _, payload in ours}) > 1  # random lengths


def test_text_answer_matches_the_recorded_second_turn() -> None:
    recorded = payloads(binary_bodies("pa_test_bedrock_model_iter_stream.yaml")[1])
    ours = payloads(emulated("amazon.nova-pro-v1:0", TOOL_RESULT_TURN))
    assert layout(ours) == layout(recorded)
    assert [n for n, _ in ours if n != "contentBlockDelta"] == [
        n for n, _ in recorded if n != "contentBlockDelta"
    ]
    assert "contentBlockStart" not in [n for n, _ in ours]  # text blocks get none


def test_kimi_stream_has_the_recorded_kimi_block_layout() -> None:
    recorded = [
        (next(iter(c)), next(iter(c.values())))
        for c in chunks("vercel_kimi_glob_search.chunks.txt")
    ]
    ours = payloads(emulated("moonshotai.kimi-k2.5", FIRST_TURN))
    assert layout([(n, {k: v for k, v in p.items() if k != "p"}) for n, p in ours]) == layout(
        recorded
    )
    start = next(p for n, p in ours if n == "contentBlockStart")
    assert re.fullmatch(r"functions\.get_weather:\d+", start["start"]["toolUse"]["toolUseId"])
    ours_meta, recorded_meta = ours[-1][1], recorded[-1][1]
    assert set(ours_meta["usage"]) == set(recorded_meta["usage"])
    assert set(ours_meta["metrics"]) == set(recorded_meta["metrics"])
    reasoning = [
        p["delta"]["reasoningContent"]["text"]
        for n, p in ours
        if "reasoningContent" in p.get("delta", {})
    ]
    assert reasoning[0].startswith(" ")  # Kimi's reasoning starts with a space, as recorded


def test_gpt_oss_style_empty_text_then_reasoning_then_text() -> None:
    # the empty-text-block quirk, held against a recorded answer stream (index 0 empty text,
    # 1 reasoning, 2 text)
    recorded = payloads(binary_bodies("pa_test_bedrock_model_stream_empty_text_delta.yaml")[0])
    ours = payloads(emulated("moonshotai.kimi-k2.5", TOOL_RESULT_TURN))
    assert layout(ours) == layout(recorded)


def test_converse_body_matches_the_recorded_kimi_shape() -> None:
    interactions = cassette("pa_test_bedrock_moonshotai_tool_call.yaml")
    for interaction, messages in zip(interactions, (FIRST_TURN, TOOL_RESULT_TURN), strict=True):
        recorded = interaction["response"]["parsed_body"]
        ours = json.loads(emulated("moonshotai.kimi-k2.5", messages, "converse"))
        assert set(ours) == set(recorded)
        assert set(ours["usage"]) == set(recorded["usage"])
        assert ours["stopReason"] == recorded["stopReason"]
        if messages is FIRST_TURN:
            kinds = [next(iter(block)) for block in ours["output"]["message"]["content"]]
            recorded_kinds = [
                next(iter(block)) for block in recorded["output"]["message"]["content"]
            ]
            assert kinds == recorded_kinds == ["reasoningContent", "toolUse"]
