"""Normalised events -> OpenAI chat completions: SSE chunks and the ``chat.completion`` body.

Sans-IO. The chunk envelope is the emulator's (:meth:`~callproof.emulator.openai_chat.
ChatEncoder.chunk`, OpenAI's key order); the ``model`` is the serving target's model. Reasoning
streams as ``reasoning_content`` (the field vLLM, DeepSeek and Moonshot use). Tool calls are
numbered 0, 1 ... in the order they start. ``finish_reason``: the Bedrock-vocabulary stop mapped
(``tool_use`` -> ``tool_calls`` ...), an unknown one passed through raw. In-band failure after
commit: a ``data: {"error": {...}}`` chunk, then the stream closes (no ``[DONE]``).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from callproof.emulator.models import ModelProfile
from callproof.emulator.openai_chat import ChatEncoder, finish_reason_for
from callproof.events import (
    Event,
    Response,
    StreamStart,
    StreamStop,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from callproof.wire.sse import encode_event

__all__ = ["ChatStreamEncoder", "chat_completion", "chat_finish", "chat_usage"]

DONE = encode_event("[DONE]")


def chat_finish(stop_reason: str | None, raw: str | None) -> str:
    """The ``finish_reason`` the front reports."""
    if stop_reason is not None and stop_reason != "unknown":
        return finish_reason_for(stop_reason)
    return raw or "unknown"


def chat_usage(usage: Usage | None) -> dict[str, Any]:
    u = usage or Usage()
    i, o = u.input_tokens or 0, u.output_tokens or 0
    return {
        "prompt_tokens": i,
        "completion_tokens": o,
        "total_tokens": u.total_tokens or i + o,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens or 0},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens or 0},
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class ChatStreamEncoder:
    """Encodes one streamed chat completion. ``model`` is called when the first chunk goes
    out (the serving target is known by then)."""

    def __init__(
        self,
        *,
        model: str,
        tool_id: Callable[[str], str],
        include_usage: bool,
        rng: random.Random | None = None,
    ) -> None:
        self.envelope = ChatEncoder(
            ModelProfile(id=model, flavour="openai"),
            model=model,
            created=int(time.time()),
            rng=rng or random.Random(),
            include_usage=include_usage,
        )
        self.tool_id = tool_id
        self.include_usage = include_usage
        self.started = False
        self.calls: dict[int, int] = {}
        self.streamed_args: set[int] = set()

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return encode_event(_dumps(self.envelope.chunk([choice])))

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        return self._chunk({"role": "assistant", "content": "", "refusal": None})

    def encode(self, event: Event) -> bytes:
        out = self._start()
        match event:
            case StreamStart():
                pass
            case TextDelta(text=text):
                if text:
                    out += self._chunk({"content": text})
            case ThinkingDelta(text=text):
                if text:
                    out += self._chunk({"content": "", "reasoning_content": text})
            case ToolCallStart(index=i, id=call_id, name=name):
                n = self.calls.setdefault(i, len(self.calls))
                head = {
                    "index": n,
                    "id": self.tool_id(call_id),
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                out += self._chunk({"tool_calls": [head]})
            case ToolCallDelta(index=i, arguments=fragment):
                if fragment and i in self.calls:
                    self.streamed_args.add(i)
                    part = {"index": self.calls[i], "function": {"arguments": fragment}}
                    out += self._chunk({"tool_calls": [part]})
            case ToolCallEnd(index=i, id=call_id, name=name, arguments=arguments):
                if i not in self.calls:
                    out += self.encode(ToolCallStart(index=i, id=call_id, name=name))
                if arguments and i not in self.streamed_args:
                    part = {"index": self.calls[i], "function": {"arguments": arguments}}
                    out += self._chunk({"tool_calls": [part]})
            case StreamStop(stop_reason=stop, raw_stop_reason=raw, usage=usage):
                out += self._chunk({}, chat_finish(stop, raw))
                if self.include_usage:
                    chunk = self.envelope.chunk([], usage=chat_usage(usage))
                    out += encode_event(_dumps(chunk))
                out += DONE
        return out

    def error(self, message: str, code: str | None = None) -> bytes:
        """The in-band failure: an ``error`` chunk (the SDKs raise ``APIError``)."""
        body = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
        return self._start() + encode_event(_dumps(body))


def chat_completion(
    response: Response, *, model: str, tool_id: Callable[[str], str]
) -> dict[str, Any]:
    """The ``chat.completion`` object of a finished ``response``."""
    envelope = ChatEncoder(
        ModelProfile(id=model, flavour="openai"),
        model=model,
        created=int(time.time()),
        rng=random.Random(),
    )
    message: dict[str, Any] = {"role": "assistant", "content": response.text or None}
    if response.thinking:
        message["reasoning_content"] = response.thinking
    message["refusal"] = None
    message["annotations"] = []
    if response.tool_calls:
        message["tool_calls"] = [
            {
                "id": tool_id(call.id),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_raw or "{}"},
            }
            for call in response.tool_calls
        ]
    return {
        "id": envelope.id,
        "object": "chat.completion",
        "created": envelope.created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": chat_finish(response.stop_reason, response.raw_stop_reason),
            }
        ],
        "usage": chat_usage(response.usage),
        "service_tier": "default",
        "system_fingerprint": envelope.fingerprint,
    }
