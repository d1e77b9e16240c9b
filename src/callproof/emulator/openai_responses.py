"""The Responses API: a scripted :class:`Turn` encoded as ``response.*`` SSE events or a
``response`` object. Requests are decoded in :mod:`.openai_responses_decode` (re-exported here:
:class:`ResponsesRequest`, :func:`decode_responses`).

Held against the real recording llmor_tool_calls.yaml (OpenRouter ``/responses``):
``response.created``, ``response.in_progress``, then per output item ``response.output_item.added``,
for a message ``response.content_part.added``, ``response.output_text.delta``...,
``response.output_text.done``, ``response.content_part.done``; for a function call
``response.function_call_arguments.delta``... and ``.done``; ``response.output_item.done``; finally
``response.completed`` (or ``response.incomplete``) with usage. Every event carries
``sequence_number``. The ``openai`` flavour writes an ``event:`` line before each ``data:`` line, as
api.openai.com does; the OpenRouter recording has none, a ``: `` comment first and ``[DONE]`` last.

Reasoning is a ``reasoning`` output item with a summary streamed as
``response.reasoning_summary_text.delta``. A mid-stream error is ``response.failed`` with
``response.error`` (the openai SDK yields it as an event; it does not raise).

Stop reasons (Bedrock vocabulary) map to the response status: ``end_turn``, ``tool_use`` and
``stop_sequence`` complete; ``max_tokens`` is ``incomplete`` with reason ``max_output_tokens``;
``content_filtered`` and ``guardrail_intervened`` are ``incomplete`` with ``content_filter``; any
other value is ``incomplete`` with that value as the reason.
"""

from __future__ import annotations

import json
import random
from typing import Any

from callproof.emulator.ids import token
from callproof.emulator.models import ModelProfile, Turn, split_arguments, split_tokens
from callproof.emulator.openai_chat import Piece, stream_error_for
from callproof.emulator.openai_responses_decode import ResponsesRequest, decode_responses
from callproof.wire.sse import encode_comment, encode_event

__all__ = ["ResponsesEncoder", "ResponsesRequest", "decode_responses", "status_for"]

_COMPLETE = ("end_turn", "tool_use", "stop_sequence")
_OBFUSCATION = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_INCOMPLETE = {
    "max_tokens": "max_output_tokens",
    "model_context_window_exceeded": "max_output_tokens",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}


# -- encoding ---------------------------------------------------------------------------------


def status_for(stop_reason: str) -> tuple[str, str | None]:
    """(status, incomplete reason) for a Bedrock-vocabulary stop reason."""
    if stop_reason in _COMPLETE:
        return "completed", None
    return "incomplete", _INCOMPLETE.get(stop_reason, stop_reason)


def _hex(rng: random.Random, size: int) -> str:
    return token(rng, size, "0123456789abcdef")


def _tmp(rng: random.Random) -> str:
    return token(rng, 11, "abcdefghijklmnopqrstuvwxyz0123456789")


class ResponsesEncoder:
    """Encodes one Responses API answer for one request."""

    def __init__(
        self,
        profile: ModelProfile,
        request: ResponsesRequest,
        *,
        created: int,
        rng: random.Random,
    ) -> None:
        self.profile = profile
        self.request = request
        self.model = request.model
        self.openrouter = profile.flavour == "openrouter"
        self.created = created
        self.rng = rng
        self.seq = 0
        #: The output items of the answer built last (what a store keeps).
        self.output_items: list[dict[str, Any]] = []
        if self.openrouter:
            letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            self.id = f"gen-{created}-" + token(rng, 20, letters)
        else:
            self.id = f"resp_{_hex(rng, 48)}"

    def _pad(self) -> str:
        """A delta event's ``obfuscation``: 2-15 random characters."""
        return token(self.rng, self.rng.randint(2, 15), _OBFUSCATION)

    def _item_id(self, prefix: str) -> str:
        if self.openrouter:
            return f"{prefix}_tmp_{_tmp(self.rng)}"
        return f"{prefix}_{_hex(self.rng, 48)}"

    # -- the response object -------------------------------------------------------------

    def response(
        self,
        *,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None = None,
        incomplete: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The ``response`` object in the field order of the real API."""
        req = self.request
        settings = req.conversation.settings
        done = status != "in_progress"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "model": req.model,
            "status": status,
            "completed_at": self.created if status == "completed" else None,
            "output": output,
            "error": error,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "tools": list(req.tools_raw),
            "tool_choice": req.tool_choice_raw,
            "parallel_tool_calls": req.parallel_tool_calls,
            "max_output_tokens": settings.max_tokens,
            "temperature": settings.temperature if settings.temperature is not None else 1,
            "top_p": settings.top_p if settings.top_p is not None else 1,
            "presence_penalty": 0,
            "frequency_penalty": 0,
            "top_logprobs": 0,
            "max_tool_calls": None,
            "metadata": {},
            "background": False,
            "previous_response_id": req.previous_response_id,
            "service_tier": "default" if done else "auto",
            "truncation": "disabled",
            "store": req.store,
            "instructions": req.instructions,
            "text": {"format": {"type": "text"}},
            "reasoning": {"context": None, "effort": None, "summary": None} if done else None,
            "safety_identifier": None,
            "prompt_cache_key": None,
            "prompt_cache_options": None,
            "usage": usage,
        }

    def usage(self, turn: Turn) -> dict[str, Any]:
        reasoning = len(split_tokens(turn.reasoning)) if turn.reasoning else 0
        usage: dict[str, Any] = {
            "input_tokens": turn.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": turn.output_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": turn.input_tokens + turn.output_tokens,
        }
        if self.openrouter:
            cost = round((turn.input_tokens * 0.6 + turn.output_tokens * 2.5) / 1e6, 9)
            usage |= {
                "cost": cost,
                "is_byok": False,
                "cost_details": {"upstream_inference_cost": cost},
            }
        return usage

    def _items(self, turn: Turn) -> list[tuple[str, dict[str, Any]]]:
        """(kind, finished item) for each output item of ``turn``."""
        items: list[tuple[str, dict[str, Any]]] = []
        if turn.reasoning:
            summary = [{"type": "summary_text", "text": turn.reasoning}]
            items.append(
                ("reasoning", {"id": self._item_id("rs"), "type": "reasoning", "summary": summary})
            )
        if turn.text or not turn.tool_calls:
            part = {"type": "output_text", "text": turn.text, "annotations": [], "logprobs": []}
            message = {
                "id": self._item_id("msg"),
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
            items.append(("message", message))
        for call in turn.tool_calls:
            item = {
                "id": self._item_id("fc"),
                "type": "function_call",
                "status": "completed",
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
            }
            items.append(("function_call", item))
        return items

    def body(self, turn: Turn) -> dict[str, Any]:
        """The non-streamed ``response`` object."""
        status, reason = status_for(turn.stop_reason)
        output = [item for _, item in self._items(turn)]
        self.output_items = output
        return self.response(
            status=status, output=output, usage=self.usage(turn), incomplete=reason
        )

    # -- streaming -----------------------------------------------------------------------

    def _event(self, kind: str, fields: dict[str, Any], *, tokens: int = 0) -> Piece:
        obj = {"type": kind, **fields, "sequence_number": self.seq}
        if kind.endswith(".delta") and not self.openrouter:
            # OpenAI pads every delta event with random characters by default (stream_options
            # include_obfuscation, platform.openai.com/docs/api-reference/responses-streaming)
            obj["obfuscation"] = self._pad()
        self.seq += 1
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        event = None if self.openrouter else kind
        return Piece(encode_event(data, event=event), tokens=tokens)

    def stream(self, turn: Turn) -> list[Piece]:
        """Every piece of a streamed answer, ending in ``response.completed``/``incomplete``."""
        pieces: list[Piece] = []
        if self.openrouter:
            pieces.append(Piece(encode_comment("") + b"\n", kind="keepalive"))
        pieces += self.opening()
        done: list[dict[str, Any]] = []
        for index, (kind, item) in enumerate(self._items(turn)):
            pieces += self._stream_item(index, kind, item)
            done.append(item)
        self.output_items = done
        status, reason = status_for(turn.stop_reason)
        final = "response.completed" if status == "completed" else "response.incomplete"
        response = self.response(
            status=status, output=done, usage=self.usage(turn), incomplete=reason
        )
        last = self._event(final, {"response": response})
        pieces.append(Piece(last.data, final=True))
        if self.openrouter:
            pieces.append(Piece(encode_event("[DONE]"), kind="done", final=True))
        return pieces

    def opening(self) -> list[Piece]:
        """``response.created`` and ``response.in_progress``."""
        return [
            self._event(kind, {"response": self.response(status="in_progress", output=[])})
            for kind in ("response.created", "response.in_progress")
        ]

    def _stream_item(self, index: int, kind: str, item: dict[str, Any]) -> list[Piece]:
        item_id = item["id"]
        at = {"output_index": index, "item_id": item_id}
        pieces: list[Piece] = []
        if kind == "reasoning":
            text = item["summary"][0]["text"]
            pieces.append(
                self._event(
                    "response.output_item.added",
                    {"output_index": index, "item": {**item, "summary": []}},
                )
            )
            empty = {"type": "summary_text", "text": ""}
            pieces.append(
                self._event(
                    "response.reasoning_summary_part.added",
                    {**at, "summary_index": 0, "part": empty},
                )
            )
            pieces.extend(
                self._event(
                    "response.reasoning_summary_text.delta",
                    {**at, "summary_index": 0, "delta": piece},
                    tokens=1,
                )
                for piece in split_tokens(text)
            )
            pieces.append(
                self._event(
                    "response.reasoning_summary_text.done", {**at, "summary_index": 0, "text": text}
                )
            )
            pieces.append(
                self._event(
                    "response.reasoning_summary_part.done",
                    {**at, "summary_index": 0, "part": item["summary"][0]},
                )
            )
        elif kind == "message":
            part = item["content"][0]
            text = part["text"]
            opened = {**item, "status": "in_progress", "content": []}
            pieces.append(
                self._event("response.output_item.added", {"output_index": index, "item": opened})
            )
            blank: dict[str, Any] = {
                "type": "output_text",
                "text": "",
                "annotations": [],
                "logprobs": [],
            }
            pieces.append(
                self._event(
                    "response.content_part.added", {**at, "content_index": 0, "part": blank}
                )
            )
            pieces.extend(
                self._event(
                    "response.output_text.delta",
                    {**at, "content_index": 0, "delta": piece, "logprobs": []},
                    tokens=1,
                )
                for piece in split_tokens(text)
            )
            pieces.append(
                self._event(
                    "response.output_text.done",
                    {**at, "content_index": 0, "text": text, "logprobs": []},
                )
            )
            pieces.append(
                self._event("response.content_part.done", {**at, "content_index": 0, "part": part})
            )
        else:
            opened = {**item, "status": "in_progress", "arguments": ""}
            pieces.append(
                self._event("response.output_item.added", {"output_index": index, "item": opened})
            )
            pieces.extend(
                self._event(
                    "response.function_call_arguments.delta", {**at, "delta": fragment}, tokens=1
                )
                for fragment in split_arguments(item["arguments"])
                if fragment
            )
            pieces.append(
                self._event(
                    "response.function_call_arguments.done",
                    {**at, "name": item["name"], "arguments": item["arguments"]},
                )
            )
        pieces.append(
            self._event("response.output_item.done", {"output_index": index, "item": item})
        )
        return pieces

    def error(self, exc_type: str) -> list[Piece]:
        """A mid-stream failure: ``response.failed`` with ``response.error``."""
        _, _, code, message = stream_error_for(exc_type)
        error = {"code": code or "server_error", "message": message}
        response = self.response(status="failed", output=[], error=error)
        pieces = [self._event("response.failed", {"response": response})]
        if self.openrouter:
            pieces.append(Piece(encode_event("[DONE]"), kind="done"))
        return pieces
