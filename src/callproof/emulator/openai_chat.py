"""Chat completions on the wire: a scripted :class:`Turn` as SSE chunks or a ``chat.completion``.

Two flavours, held against real recordings (tests/fixtures/recorded):

* ``openai`` (pa_temporal_complex_agent_run.yaml, gpt-4o): chunks ``id, object, created, model,
  service_tier, system_fingerprint, choices, usage, obfuscation``; the first chunk carries
  ``role``; tool calls open with ``{index, id, type, function: {name, arguments: ""}}`` and
  continue with ``{index, function: {arguments}}``; the finish chunk has ``delta: {}``; the usage
  chunk has ``choices: []``; then ``data: [DONE]``.
* ``openrouter`` (llmor_tool_calls_chat_603cd08.yaml, pa_test_openrouter_stream_error.yaml):
  ``: OPENROUTER PROCESSING`` comments before the first token, chunks ``id, provider, model,
  object, created, choices, system_fingerprint``, every delta repeats ``role``, choices carry
  ``native_finish_reason``, reasoning arrives as ``reasoning`` + ``reasoning_details``, the usage
  chunk keeps one choice and adds ``cost``; mid-stream errors are a chunk with a top-level
  ``error`` and ``finish_reason: "error"`` on HTTP 200, followed by ``[DONE]``.

A plain ``openai`` model that thinks streams its reasoning as ``reasoning_content`` (the field
vLLM, DeepSeek and Moonshot's own API use); OpenAI itself never streams reasoning here.

This module is sans-IO: it returns :class:`Piece` lists; the routes add timing and faults.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any, Literal

from callproof.emulator.ids import token
from callproof.emulator.models import ModelProfile, Turn, split_arguments, split_tokens
from callproof.wire.sse import encode_comment, encode_event

__all__ = [
    "KEEPALIVE",
    "ChatEncoder",
    "Piece",
    "fingerprint",
    "finish_reason_for",
    "stream_error_for",
]

#: OpenRouter's keep-alive comment, with the blank line it sends after it [REC].
KEEPALIVE = encode_comment("OPENROUTER PROCESSING") + b"\n"
DONE = encode_event("[DONE]")

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}

#: ``stream_exception:TYPE`` -> (OpenRouter error code, OpenAI error type, OpenAI error code,
#: message). Unknown types become a ``server_error``.
_STREAM_ERRORS: dict[str, tuple[int, str, str | None, str]] = {
    "throttlingException": (
        429,
        "requests",
        "rate_limit_exceeded",
        "Rate limit exceeded upstream; please retry.",
    ),
    "modelStreamErrorException": (502, "server_error", None, "Provider disconnected unexpectedly"),
    "internalServerException": (500, "server_error", None, "Internal server error"),
    "serviceUnavailableException": (503, "server_error", None, "Service unavailable"),
    "validationException": (400, "invalid_request_error", None, "Token limit reached"),
}


def finish_reason_for(stop_reason: str) -> str:
    """A Bedrock-vocabulary stop reason as a chat ``finish_reason``; unknown values pass raw."""
    return _FINISH.get(stop_reason, stop_reason)


def stream_error_for(exc_type: str) -> tuple[int | str, str, str | None, str]:
    """(OpenRouter code, OpenAI type, OpenAI code, message) for a mid-stream ``exc_type``."""
    return _STREAM_ERRORS.get(exc_type, ("server_error", "server_error", None, exc_type))


@dataclass(frozen=True, slots=True)
class Piece:
    """Bytes to send. ``kind``: a keep-alive comment, an event, or the closing marker
    (``[DONE]``). ``tokens`` paces deltas; ``final`` marks what ``close_without_stop`` drops
    (the finish and usage chunks, ``[DONE]``)."""

    data: bytes
    kind: Literal["keepalive", "event", "done"] = "event"
    tokens: int = 0
    final: bool = False


def fingerprint(model: str, prefix: str, size: int) -> str:
    """A ``system_fingerprint`` stable per model (it names the backend configuration, which
    changes rarely: platform.openai.com/docs/api-reference/chat/object), not per request."""
    return prefix + hashlib.sha256(model.encode()).hexdigest()[:size]


def _random_id(rng: random.Random, size: int) -> str:
    return token(rng, size)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class ChatEncoder:
    """Encodes one chat completion for one request (one id, one ``created`` second)."""

    def __init__(
        self,
        profile: ModelProfile,
        *,
        model: str,
        created: int,
        rng: random.Random,
        include_usage: bool = False,
    ) -> None:
        self.profile = profile
        self.openrouter = profile.flavour == "openrouter"
        self.model = model
        self.created = created
        self.rng = rng
        self.include_usage = include_usage
        if self.openrouter:
            self.id = f"gen-{created}-{_random_id(rng, 20)}"
            _random_id(rng, 8)  # drawn as before, so the seeded ids that follow stay the same
            self.fingerprint = fingerprint(model, "fpv0_", 8)
        else:
            self.id = f"chatcmpl-{_random_id(rng, 29)}"
            _random_id(rng, 10)
            self.fingerprint = fingerprint(model, "fp_", 10)

    # -- chunks --------------------------------------------------------------------------

    def _pad(self) -> str:
        """A chunk's ``obfuscation``: 0-12 random characters."""
        return _random_id(self.rng, self.rng.randint(0, 12))

    def _choice(
        self, delta: dict[str, Any], finish: str | None = None, native: str | None = None
    ) -> dict[str, Any]:
        if self.openrouter:
            return {
                "index": 0,
                "delta": {"role": "assistant", **delta},
                "finish_reason": finish,
                "native_finish_reason": native,
                "logprobs": None,
            }
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    def chunk(
        self,
        choices: list[dict[str, Any]],
        *,
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One ``chat.completion.chunk`` object with the flavour's key order."""
        if self.openrouter:
            out: dict[str, Any] = {"id": self.id, "provider": self.profile.provider or "OpenAI"}
            if error is not None:
                out["error"] = error
            out |= {
                "model": self.model,
                "object": "chat.completion.chunk",
                "created": self.created,
                "choices": choices,
            }
            # the usage chunk has no fingerprint [REC llmor_tool_calls_chat_603cd08.yaml]
            if usage is not None:
                out["usage"] = usage
            else:
                out["system_fingerprint"] = self.fingerprint
            return out
        out = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": self.fingerprint,
            "choices": choices,
        }
        if self.include_usage:
            out["usage"] = usage
        out["obfuscation"] = self._pad()
        return out

    def _event(self, obj: dict[str, Any], *, tokens: int = 0, final: bool = False) -> Piece:
        return Piece(encode_event(_dumps(obj)), tokens=tokens, final=final)

    def usage(self, turn: Turn) -> dict[str, Any]:
        """The ``usage`` object for ``turn``."""
        reasoning = len(split_tokens(turn.reasoning)) if turn.reasoning else 0
        base: dict[str, Any] = {
            "prompt_tokens": turn.input_tokens,
            "completion_tokens": turn.output_tokens,
            "total_tokens": turn.input_tokens + turn.output_tokens,
        }
        if self.openrouter:
            cost = round((turn.input_tokens * 0.6 + turn.output_tokens * 2.5) / 1e6, 9)
            return base | {
                "cost": cost,
                "is_byok": False,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "cost_details": {"upstream_inference_cost": None},
                "completion_tokens_details": {"reasoning_tokens": reasoning, "image_tokens": 0},
            }
        return base | {
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _reasoning_delta(self, text: str) -> dict[str, Any]:
        if self.openrouter:
            detail = {"type": "reasoning.text", "text": text, "index": 0, "format": "unknown"}
            return {"content": "", "reasoning": text, "reasoning_details": [detail]}
        return {"content": "", "reasoning_content": text}

    # -- a whole stream ------------------------------------------------------------------

    def stream(self, turn: Turn, *, finish: str, native: str | None = None) -> list[Piece]:
        """Every piece of a streamed turn, ending ``finish`` (``native`` for OpenRouter)."""
        pieces: list[Piece] = []
        first = True

        def role(delta: dict[str, Any]) -> dict[str, Any]:
            nonlocal first
            if first and not self.openrouter:
                delta = {"role": "assistant", **delta}
            first = False
            return delta

        for text in split_tokens(turn.reasoning) if turn.reasoning else ():
            delta = role(self._reasoning_delta(text))
            pieces.append(self._event(self.chunk([self._choice(delta)]), tokens=1))
        if turn.reasoning and self.openrouter:
            # OpenRouter keeps the connection warm between thinking and answering
            pieces.append(self.keepalive())
        if turn.text or not turn.tool_calls:
            opening = {"content": ""} if self.openrouter else {"content": "", "refusal": None}
            if first:
                pieces.append(self._event(self.chunk([self._choice(role(opening))])))
            pieces.extend(
                self._event(self.chunk([self._choice({"content": text})]), tokens=1)
                for text in split_tokens(turn.text)
            )
        for index, call in enumerate(turn.tool_calls):
            head = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            # OpenAI sends content/refusal only in the first delta; OpenRouter in every one
            if self.openrouter or first:
                delta = {"content": None, "tool_calls": [head]}
            else:
                delta = {"tool_calls": [head]}
            if first and not self.openrouter:
                delta["refusal"] = None
            pieces.append(self._event(self.chunk([self._choice(role(delta))]), tokens=1))
            for fragment in split_arguments(call.arguments):
                if not fragment:
                    continue
                part: dict[str, Any] = {"index": index, "function": {"arguments": fragment}}
                if self.openrouter:
                    part["type"] = "function"
                    delta = {"content": None, "tool_calls": [part]}
                else:
                    delta = {"tool_calls": [part]}
                pieces.append(self._event(self.chunk([self._choice(delta)]), tokens=1))
        closing: dict[str, Any] = {"content": ""} if self.openrouter else {}
        native = native if native is not None else finish
        pieces.append(self._event(self.chunk([self._choice(closing, finish, native)]), final=True))
        if self.include_usage:
            usage = self.usage(turn)
            choices = [self._choice({"content": ""})] if self.openrouter else []
            pieces.append(self._event(self.chunk(choices, usage=usage), final=True))
        pieces.append(Piece(DONE, kind="done", final=True))
        return pieces

    def error(self, exc_type: str) -> list[Piece]:
        """A mid-stream error as the flavour sends it (HTTP 200 already sent).

        OpenRouter: a chunk with a top-level ``error`` and ``finish_reason: "error"``, then
        ``[DONE]``. OpenAI: an ``{"error": {...}}`` event and the connection closes.
        """
        code, kind, openai_code, message = stream_error_for(exc_type)
        if self.openrouter:
            error = {
                "code": code,
                "message": message,
                "metadata": {"provider_name": self.profile.provider, "raw": exc_type},
            }
            choice = self._choice({"content": ""}, "error", "error")
            return [
                self._event(self.chunk([choice], error=error)),
                Piece(DONE, kind="done"),
            ]
        body = {"error": {"message": message, "type": kind, "param": None, "code": openai_code}}
        return [Piece(encode_event(_dumps(body)))]

    def keepalive(self) -> Piece:
        """One ``: OPENROUTER PROCESSING`` comment."""
        return Piece(KEEPALIVE, kind="keepalive")

    # -- non-streamed --------------------------------------------------------------------

    def completion(
        self, turn: Turn, *, finish: str | None, native: str | None = None
    ) -> dict[str, Any]:
        """The ``chat.completion`` object for a non-streamed request."""
        message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
        if self.openrouter:
            message["content"] = turn.text
            message["refusal"] = None
            message["reasoning"] = turn.reasoning or None
            if turn.reasoning:
                message["reasoning_details"] = [
                    {
                        "format": "unknown",
                        "index": 0,
                        "text": turn.reasoning,
                        "type": "reasoning.text",
                    }
                ]
        else:
            if turn.reasoning:
                message["reasoning_content"] = turn.reasoning
            message["refusal"] = None
            message["annotations"] = []
        if turn.tool_calls:
            calls: list[dict[str, Any]] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in turn.tool_calls
            ]
            if self.openrouter:
                for i, call in enumerate(calls):
                    call["index"] = i
            message["tool_calls"] = calls
        if self.openrouter:
            return {
                "id": self.id,
                "provider": self.profile.provider or "OpenAI",
                "model": self.model,
                "object": "chat.completion",
                "created": self.created,
                "choices": [
                    {
                        "logprobs": None,
                        "finish_reason": finish,
                        "native_finish_reason": native if native is not None else finish,
                        "index": 0,
                        "message": message,
                    }
                ],
                "system_fingerprint": self.fingerprint,
                "usage": self.usage(turn),
            }
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            ],
            "usage": self.usage(turn),
            "service_tier": "default",
            "system_fingerprint": self.fingerprint,
        }
