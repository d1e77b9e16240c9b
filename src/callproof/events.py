"""Typed, provider-neutral stream events and the final :class:`Response`.

Events are frozen, slotted dataclasses with a ``Literal`` ``kind``; consumers ``match`` on them.
Vendor dicts never leak past a dialect module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, get_args

__all__ = [
    "STOP_REASONS",
    "Event",
    "Response",
    "StopReason",
    "StreamStart",
    "StreamStop",
    "TextDelta",
    "ThinkingDelta",
    "Timings",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "Usage",
    "normalise_stop_reason",
]

#: Bedrock's nine stop reasons, plus ``unknown`` for anything new (the raw value is kept).
StopReason: TypeAlias = Literal[
    "end_turn",
    "tool_use",
    "max_tokens",
    "stop_sequence",
    "guardrail_intervened",
    "content_filtered",
    "malformed_model_output",
    "malformed_tool_use",
    "model_context_window_exceeded",
    "unknown",
]
STOP_REASONS: tuple[str, ...] = get_args(StopReason)
_BEDROCK_STOP = frozenset(STOP_REASONS) - {"unknown"}


def normalise_stop_reason(raw: str | None) -> StopReason:
    """Map a Bedrock stop reason to itself and anything else to ``unknown``."""
    if raw in _BEDROCK_STOP:
        return raw  # type: ignore[return-value]
    return "unknown"


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the provider reported them."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None

    def to_dict(self) -> dict[str, int]:
        return {
            k: v
            for k, v in (
                ("input_tokens", self.input_tokens),
                ("output_tokens", self.output_tokens),
                ("total_tokens", self.total_tokens),
                ("cache_read_tokens", self.cache_read_tokens),
                ("cache_write_tokens", self.cache_write_tokens),
                ("reasoning_tokens", self.reasoning_tokens),
            )
            if v is not None
        }


@dataclass(frozen=True, slots=True)
class StreamStart:
    """The first event of a response (Bedrock messageStart; the first OpenAI chunk)."""

    role: str = "assistant"
    model: str | None = None
    kind: Literal["start"] = "start"


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of answer text. ``index`` is the content block it belongs to."""

    index: int
    text: str
    kind: Literal["text_delta"] = "text_delta"


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """A piece of reasoning: text, a signature for it, or redacted (encrypted) data."""

    index: int
    text: str = ""
    signature: str | None = None
    redacted: bytes | None = None
    kind: Literal["thinking_delta"] = "thinking_delta"


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """A tool call begins; ``id`` and ``name`` are known from here on."""

    index: int
    id: str
    name: str
    kind: Literal["tool_call_start"] = "tool_call_start"


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call's JSON arguments (concatenate per index)."""

    index: int
    arguments: str
    kind: Literal["tool_call_delta"] = "tool_call_delta"


@dataclass(frozen=True, slots=True)
class ToolCallEnd:
    """A tool call is complete; ``arguments`` is the whole raw JSON text (``""`` means none)."""

    index: int
    id: str
    name: str
    arguments: str
    kind: Literal["tool_call_end"] = "tool_call_end"


@dataclass(frozen=True, slots=True)
class StreamStop:
    """The terminal event: the normalised and raw stop reason, and usage if reported."""

    stop_reason: StopReason
    raw_stop_reason: str | None
    usage: Usage | None = None
    kind: Literal["stop"] = "stop"


Event: TypeAlias = (
    StreamStart
    | TextDelta
    | ThinkingDelta
    | ToolCallStart
    | ToolCallDelta
    | ToolCallEnd
    | StreamStop
)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call. ``arguments`` is the parsed JSON object, or ``None`` when the raw
    text is not a JSON object (then ``arguments_raw`` holds it and the call is malformed)."""

    id: str
    name: str
    arguments: dict[str, Any] | None
    arguments_raw: str

    @classmethod
    def from_raw(cls, id: str, name: str, raw: str) -> ToolCall:
        """Parse ``raw``; an empty string means no arguments (``{}``), as Bedrock sends it."""
        if raw.strip() == "":
            return cls(id=id, name=name, arguments={}, arguments_raw=raw)
        try:
            parsed = json.loads(raw)
        except ValueError:
            return cls(id=id, name=name, arguments=None, arguments_raw=raw)
        return cls(
            id=id,
            name=name,
            arguments=parsed if isinstance(parsed, dict) else None,
            arguments_raw=raw,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "arguments": self.arguments if self.arguments is not None else self.arguments_raw,
        }


@dataclass(slots=True)
class Timings:
    """Clocks of one attempt, in seconds from the moment the request was sent."""

    headers_s: float | None = None
    first_event_s: float | None = None
    first_content_s: float | None = None
    total_s: float | None = None
    max_gap_s: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {
            "headers_s": self.headers_s,
            "first_event_s": self.first_event_s,
            "first_content_s": self.first_content_s,
            "total_s": self.total_s,
            "max_gap_s": self.max_gap_s,
        }


@dataclass(slots=True)
class Response:
    """What one call produced, successful or not as far as the stream went."""

    text: str = ""
    thinking: str = ""
    thinking_signature: str | None = None
    thinking_redacted: bytes | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop_reason: StopReason | None = None
    raw_stop_reason: str | None = None
    usage: Usage | None = None
    request_id: str | None = None
    model: str | None = None
    timings: Timings = field(default_factory=Timings)
    #: Keep-alive comments seen (recorded, never counted as events).
    keepalives: int = 0
    #: Every decoded event, kept when the caller asks for them (``-v``, reports).
    events: list[Event] = field(default_factory=list)
    #: For routed calls: one record per attempt (see ``callproof.resilience``).
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stop_reason": self.stop_reason,
            "raw_stop_reason": self.raw_stop_reason,
            "text": self.text,
            "thinking": self.thinking,
            "tool_calls": [tc.to_dict() for tc in self.tool_calls],
            "usage": self.usage.to_dict() if self.usage else None,
            "request_id": self.request_id,
            "timings": self.timings.to_dict(),
        }
