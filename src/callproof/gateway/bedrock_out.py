"""Normalised events -> the Bedrock front's wire: ConverseStream frames and the Converse body.

Sans-IO. Frames are built with the emulator's encoder (:func:`~callproof.emulator.bedrock_wire.
frame`, the real header order and padding) and in-band failures with its exception frame.

Content blocks get consecutive ``contentBlockIndex`` values whatever the upstream numbered them.
Text and reasoning stream as they come; a tool call is sent when it is complete (start, one
input delta, stop), so calls that an OpenAI upstream interleaves never interleave here.
Stop reasons: the normalised one when it is a Bedrock value, else the upstream's raw value as
it is (never a coerced ``end_turn``).
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from typing import Any

from callproof.emulator.bedrock_wire import Event as WireEvent
from callproof.emulator.bedrock_wire import exception_frame, frame
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

__all__ = ["BedrockStreamEncoder", "bedrock_stop", "converse_body", "usage_body"]

#: In-band failure after commit (boto3: ``ModelStreamErrorException``).
STREAM_ERROR = "modelStreamErrorException"


def bedrock_stop(stop_reason: str | None, raw: str | None) -> str:
    """The ``stopReason`` the front reports."""
    if stop_reason is not None and stop_reason != "unknown":
        return stop_reason
    return raw or "unknown"


def usage_body(usage: Usage | None) -> dict[str, int]:
    u = usage or Usage()
    i, o = u.input_tokens or 0, u.output_tokens or 0
    out = {"inputTokens": i, "outputTokens": o, "totalTokens": u.total_tokens or i + o}
    if u.cache_read_tokens:
        out["cacheReadInputTokens"] = u.cache_read_tokens
    if u.cache_write_tokens:
        out["cacheWriteInputTokens"] = u.cache_write_tokens
    return out


class BedrockStreamEncoder:
    """Encodes one ConverseStream answer; ``tool_id`` maps upstream tool ids for the front,
    ``latency_ms`` gives ``metadata.metrics.latencyMs`` at the end."""

    def __init__(
        self,
        *,
        tool_id: Callable[[str], str],
        latency_ms: Callable[[], int],
        rng: random.Random | None = None,
    ) -> None:
        self.tool_id = tool_id
        self.latency_ms = latency_ms
        self.rng = rng or random.Random()
        self.started = False
        self.index = 0
        self.open: tuple[str, int] | None = None
        self.args: dict[int, list[str]] = {}

    def _frame(self, kind: str, payload: dict[str, Any]) -> bytes:
        return frame(WireEvent(kind, payload), self.rng)

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        return self._frame("messageStart", {"role": "assistant"})

    def _close_block(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        data = self._frame("contentBlockStop", {"contentBlockIndex": self.index})
        self.index += 1
        return data

    def _delta(self, block: tuple[str, int], delta: dict[str, Any]) -> bytes:
        out = b""
        if self.open != block:
            out += self._close_block()
            self.open = block
        return out + self._frame(
            "contentBlockDelta", {"contentBlockIndex": self.index, "delta": delta}
        )

    def encode(self, event: Event) -> bytes:
        """The frames for one event (often none: a tool call waits for its end)."""
        out = self._start()
        match event:
            case StreamStart():
                pass
            case TextDelta(index=i, text=text):
                out += self._delta(("text", i), {"text": text})
            case ThinkingDelta(index=i, text=text, signature=sig, redacted=redacted):
                if text:
                    out += self._delta(("reasoning", i), {"reasoningContent": {"text": text}})
                if sig:
                    out += self._delta(("reasoning", i), {"reasoningContent": {"signature": sig}})
                if redacted:
                    blob = base64.b64encode(redacted).decode()
                    out += self._delta(
                        ("reasoning", i), {"reasoningContent": {"redactedContent": blob}}
                    )
            case ToolCallStart(index=i):
                self.args[i] = []
            case ToolCallDelta(index=i, arguments=fragment):
                self.args.setdefault(i, []).append(fragment)
            case ToolCallEnd(index=i, id=call_id, name=name, arguments=arguments):
                self.args.pop(i, None)
                out += self._close_block()
                start = {"toolUse": {"toolUseId": self.tool_id(call_id), "name": name}}
                out += self._frame(
                    "contentBlockStart", {"contentBlockIndex": self.index, "start": start}
                )
                if arguments:
                    delta = {"toolUse": {"input": arguments}}
                    out += self._frame(
                        "contentBlockDelta", {"contentBlockIndex": self.index, "delta": delta}
                    )
                out += self._frame("contentBlockStop", {"contentBlockIndex": self.index})
                self.index += 1
            case StreamStop(stop_reason=stop, raw_stop_reason=raw, usage=usage):
                out += self._close_block()
                out += self._frame("messageStop", {"stopReason": bedrock_stop(stop, raw)})
                metadata = {
                    "usage": usage_body(usage),
                    "metrics": {"latencyMs": self.latency_ms()},
                }
                out += self._frame("metadata", metadata)
        return out

    def error(self, message: str) -> bytes:
        """The in-band failure: a ``modelStreamErrorException`` frame."""
        return self._start() + exception_frame(STREAM_ERROR, message)


def converse_body(
    response: Response, *, tool_id: Callable[[str], str], latency_ms: int
) -> dict[str, Any]:
    """The Converse (non-stream) response body of a finished ``response``."""
    content: list[dict[str, Any]] = []
    if response.thinking or response.thinking_signature or response.thinking_redacted:
        if response.thinking_redacted and not response.thinking:
            blob = base64.b64encode(response.thinking_redacted).decode()
            content.append({"reasoningContent": {"redactedContent": blob}})
        else:
            text: dict[str, Any] = {"text": response.thinking}
            if response.thinking_signature:
                text["signature"] = response.thinking_signature
            content.append({"reasoningContent": {"reasoningText": text}})
    if response.text:
        content.append({"text": response.text})
    for call in response.tool_calls:
        document: Any = call.arguments
        if document is None:
            try:
                document = json.loads(call.arguments_raw)
            except ValueError:
                document = call.arguments_raw
        content.append(
            {"toolUse": {"toolUseId": tool_id(call.id), "name": call.name, "input": document}}
        )
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": bedrock_stop(response.stop_reason, response.raw_stop_reason),
        "usage": usage_body(response.usage),
        "metrics": {"latencyMs": latency_ms},
    }
