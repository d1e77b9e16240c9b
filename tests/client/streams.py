"""Small, valid wire bodies built with the project's encoders, for clock and error tests."""

from __future__ import annotations

import json
from typing import Any

from callproof.wire.eventstream import encode_message
from callproof.wire.sse import encode_comment, encode_event


def es_event(event_type: str, payload: dict[str, Any]) -> bytes:
    return encode_message(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        json.dumps({**payload, "p": "abcdef"}).encode(),
    )


def bedrock_frames(
    text: str = "The temperature in Tokyo is 22°C.", stop: str = "end_turn"
) -> list[bytes]:
    """One frame per event of a text answer, metadata last (as real Bedrock sends)."""
    frames = [es_event("messageStart", {"role": "assistant"})]
    for word in text.split(" "):
        frames.append(
            es_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": word + " "}})
        )
    frames.append(es_event("contentBlockStop", {"contentBlockIndex": 0}))
    frames.append(es_event("messageStop", {"stopReason": stop}))
    frames.append(
        es_event(
            "metadata",
            {
                "usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12},
                "metrics": {"latencyMs": 1},
            },
        )
    )
    return frames


def chat_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return encode_event(
        json.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )
    )


def chat_frames(
    text: str = "The temperature in Tokyo is 22°C.", finish: str = "stop"
) -> list[bytes]:
    frames = [chat_chunk({"role": "assistant", "content": ""})]
    frames += [chat_chunk({"content": w + " "}) for w in text.split(" ")]
    frames.append(chat_chunk({}, finish))
    frames.append(encode_event("[DONE]"))
    return frames


KEEPALIVE = encode_comment("OPENROUTER PROCESSING")
