"""Normalised events -> the OpenAI Responses API: SSE events and the ``response`` object.

Sans-IO. The ``response`` object is the emulator's (:meth:`~callproof.emulator.
openai_responses.ResponsesEncoder.response`, the real field order) with the serving target's
model. Items: reasoning (a ``summary_text``), the message (``output_text``), one
``function_call`` per tool call, each opened, streamed and closed in turn. The end is
``response.completed`` or ``response.incomplete`` (``incomplete_details.reason`` the mapped
stop, an unknown raw value as it is). In-band failure: an ``error`` event carrying an ``error``
object (the openai SDK raises ``APIError``), then the stream closes.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from callproof.emulator.models import ModelProfile
from callproof.emulator.openai_responses import ResponsesEncoder, ResponsesRequest, status_for
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

__all__ = ["ResponsesStreamEncoder", "responses_body", "responses_status", "responses_usage"]


def responses_status(stop_reason: str | None, raw: str | None) -> tuple[str, str | None]:
    """(status, incomplete reason) the front reports."""
    if stop_reason is not None and stop_reason != "unknown":
        return status_for(stop_reason)
    return "incomplete", raw or "unknown"


def responses_usage(usage: Usage | None) -> dict[str, Any]:
    u = usage or Usage()
    i, o = u.input_tokens or 0, u.output_tokens or 0
    return {
        "input_tokens": i,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens or 0},
        "output_tokens": o,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens or 0},
        "total_tokens": u.total_tokens or i + o,
    }


def _hex(rng: random.Random, size: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(size))


class ResponsesStreamEncoder:
    """Encodes one streamed Responses answer for ``request`` served as ``model``."""

    def __init__(
        self,
        request: ResponsesRequest,
        *,
        model: str,
        tool_id: Callable[[str], str],
        rng: random.Random | None = None,
    ) -> None:
        self.rng = rng or random.Random()
        self.envelope = ResponsesEncoder(
            ModelProfile(id=model, flavour="openai"),
            replace(request, model=model),
            created=int(time.time()),
            rng=self.rng,
        )
        self.tool_id = tool_id
        self.seq = 0
        self.started = False
        self.output: list[dict[str, Any]] = []
        #: The item being streamed: (kind, upstream index, item, text so far).
        self.item: tuple[str, int, dict[str, Any], list[str]] | None = None

    def _event(self, kind: str, fields: dict[str, Any]) -> bytes:
        obj = {"type": kind, **fields, "sequence_number": self.seq}
        self.seq += 1
        return encode_event(json.dumps(obj, ensure_ascii=False, separators=(",", ":")), event=kind)

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        opening = self.envelope.response(status="in_progress", output=[])
        return self._event("response.created", {"response": opening}) + self._event(
            "response.in_progress", {"response": opening}
        )

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{_hex(self.rng, 48)}"

    def _close(self) -> bytes:
        if self.item is None:
            return b""
        kind, _, item, texts = self.item
        self.item = None
        n = len(self.output)
        at = {"output_index": n, "item_id": item["id"]}
        text = "".join(texts)
        out = b""
        if kind == "reasoning":
            summary = {"type": "summary_text", "text": text}
            item = {**item, "summary": [summary]}
            out += self._event(
                "response.reasoning_summary_text.done", {**at, "summary_index": 0, "text": text}
            )
            out += self._event(
                "response.reasoning_summary_part.done",
                {**at, "summary_index": 0, "part": summary},
            )
        elif kind == "message":
            part: dict[str, Any] = {
                "type": "output_text",
                "text": text,
                "annotations": [],
                "logprobs": [],
            }
            item = {**item, "status": "completed", "content": [part]}
            out += self._event(
                "response.output_text.done",
                {**at, "content_index": 0, "text": text, "logprobs": []},
            )
            out += self._event(
                "response.content_part.done", {**at, "content_index": 0, "part": part}
            )
        else:
            item = {**item, "status": "completed", "arguments": text}
            out += self._event(
                "response.function_call_arguments.done",
                {**at, "name": item["name"], "arguments": text},
            )
        out += self._event("response.output_item.done", {"output_index": n, "item": item})
        self.output.append(item)
        return out

    def _open(self, kind: str, index: int, item: dict[str, Any]) -> bytes:
        out = self._close()
        n = len(self.output)
        self.item = (kind, index, item, [])
        out += self._event("response.output_item.added", {"output_index": n, "item": item})
        at = {"output_index": n, "item_id": item["id"]}
        if kind == "reasoning":
            empty = {"type": "summary_text", "text": ""}
            out += self._event(
                "response.reasoning_summary_part.added", {**at, "summary_index": 0, "part": empty}
            )
        elif kind == "message":
            blank = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out += self._event(
                "response.content_part.added", {**at, "content_index": 0, "part": blank}
            )
        return out

    def _at(self) -> dict[str, Any]:
        assert self.item is not None
        return {"output_index": len(self.output), "item_id": self.item[2]["id"]}

    def encode(self, event: Event) -> bytes:
        out = self._start()
        match event:
            case StreamStart():
                pass
            case ThinkingDelta(index=i, text=text) if text:
                if self.item is None or self.item[:2] != ("reasoning", i):
                    item = {"id": self._id("rs"), "type": "reasoning", "summary": []}
                    out += self._open("reasoning", i, item)
                assert self.item is not None
                self.item[3].append(text)
                out += self._event(
                    "response.reasoning_summary_text.delta",
                    {**self._at(), "summary_index": 0, "delta": text},
                )
            case TextDelta(index=i, text=text) if text:
                if self.item is None or self.item[:2] != ("message", i):
                    item = {
                        "id": self._id("msg"),
                        "type": "message",
                        "status": "in_progress",
                        "role": "assistant",
                        "content": [],
                    }
                    out += self._open("message", i, item)
                assert self.item is not None
                self.item[3].append(text)
                out += self._event(
                    "response.output_text.delta",
                    {**self._at(), "content_index": 0, "delta": text, "logprobs": []},
                )
            case ToolCallEnd(id=call_id, name=name, arguments=arguments):
                item = {
                    "id": self._id("fc"),
                    "type": "function_call",
                    "status": "in_progress",
                    "arguments": "",
                    "call_id": self.tool_id(call_id),
                    "name": name,
                }
                out += self._open("function_call", -1, item)
                assert self.item is not None
                if arguments:
                    self.item[3].append(arguments)
                    out += self._event(
                        "response.function_call_arguments.delta",
                        {**self._at(), "delta": arguments},
                    )
                out += self._close()
            case ToolCallStart() | ToolCallDelta():
                pass  # a call goes out whole at its end (calls may interleave upstream)
            case StreamStop(stop_reason=stop, raw_stop_reason=raw, usage=usage):
                out += self._close()
                status, reason = responses_status(stop, raw)
                final = self.envelope.response(
                    status=status,
                    output=self.output,
                    usage=responses_usage(usage),
                    incomplete=reason,
                )
                kind = "response.completed" if status == "completed" else "response.incomplete"
                out += self._event(kind, {"response": final})
        return out

    def error(self, message: str, code: str | None = None) -> bytes:
        """The in-band failure: an ``error`` event."""
        error = {"message": message, "type": "server_error", "param": None, "code": code}
        fields = {"code": code or "server_error", "message": message, "param": None}
        return self._start() + self._event("error", {**fields, "error": error})


def responses_body(
    response: Response,
    request: ResponsesRequest,
    *,
    model: str,
    tool_id: Callable[[str], str],
) -> dict[str, Any]:
    """The non-streamed ``response`` object of a finished ``response``."""
    rng = random.Random()
    envelope = ResponsesEncoder(
        ModelProfile(id=model, flavour="openai"),
        replace(request, model=model),
        created=int(time.time()),
        rng=rng,
    )
    output: list[dict[str, Any]] = []
    if response.thinking:
        summary = [{"type": "summary_text", "text": response.thinking}]
        output.append({"id": f"rs_{_hex(rng, 48)}", "type": "reasoning", "summary": summary})
    if response.text or not response.tool_calls:
        part = {"type": "output_text", "text": response.text, "annotations": [], "logprobs": []}
        output.append(
            {
                "id": f"msg_{_hex(rng, 48)}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    output.extend(
        {
            "id": f"fc_{_hex(rng, 48)}",
            "type": "function_call",
            "status": "completed",
            "call_id": tool_id(call.id),
            "name": call.name,
            "arguments": call.arguments_raw or "{}",
        }
        for call in response.tool_calls
    )
    status, reason = responses_status(response.stop_reason, response.raw_stop_reason)
    return envelope.response(
        status=status, output=output, usage=responses_usage(response.usage), incomplete=reason
    )
