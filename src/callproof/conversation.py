"""The provider-neutral conversation: messages, tools and settings.

Dialects map it to each wire API; :mod:`callproof.transforms` adapts it between APIs and models.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

from callproof.events import Response, StopReason, ToolCall

__all__ = [
    "AssistantMessage",
    "Conversation",
    "ImagePart",
    "Message",
    "Settings",
    "TextPart",
    "ThinkingPart",
    "ToolCall",
    "ToolChoice",
    "ToolResult",
    "ToolSpec",
    "UserMessage",
]


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image given inline. ``media_type`` is e.g. ``image/png``."""

    media_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ThinkingPart:
    """Reasoning from an assistant turn.

    ``signature`` (Anthropic-style signed reasoning) and ``redacted`` (encrypted reasoning) are
    only valid for the model that produced them; ``origin`` names it as ``"<api>:<model>"`` so
    transforms can decide what to replay.
    """

    text: str = ""
    signature: str | None = None
    redacted: bytes | None = None
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The result of a tool call. ``content`` is text, or a JSON value."""

    tool_call_id: str
    content: str | dict[str, Any] | list[Any]
    is_error: bool = False


UserPart: TypeAlias = TextPart | ImagePart | ToolResult
AssistantPart: TypeAlias = TextPart | ThinkingPart | ToolCall


@dataclass(frozen=True, slots=True)
class UserMessage:
    """A user turn: text, images, and tool results."""

    content: tuple[UserPart, ...]
    role: Literal["user"] = "user"

    @classmethod
    def text(cls, text: str) -> UserMessage:
        return cls(content=(TextPart(text),))


@dataclass(frozen=True, slots=True)
class AssistantMessage:
    """An assistant turn. ``stop_reason`` and ``failed`` record how it ended, so that the
    policy for replaying failed turns is explicit (see ``transforms``)."""

    content: tuple[AssistantPart, ...]
    stop_reason: StopReason | None = None
    failed: bool = False
    role: Literal["assistant"] = "assistant"

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [p for p in self.content if isinstance(p, ToolCall)]

    @classmethod
    def from_response(cls, response: Response, *, origin: str | None = None) -> AssistantMessage:
        """The assistant turn a response represents, ready to append to a conversation."""
        parts: list[AssistantPart] = []
        if response.thinking or response.thinking_signature or response.thinking_redacted:
            parts.append(
                ThinkingPart(
                    text=response.thinking,
                    signature=response.thinking_signature,
                    redacted=response.thinking_redacted,
                    origin=origin,
                )
            )
        if response.text:
            parts.append(TextPart(response.text))
        parts.extend(response.tool_calls)
        return cls(content=tuple(parts), stop_reason=response.stop_reason)


Message: TypeAlias = UserMessage | AssistantMessage


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


#: ``auto``, ``any`` (must call some tool), ``none``, or ``{"tool": NAME}``.
ToolChoice: TypeAlias = Literal["auto", "any", "none"] | dict[str, str]


@dataclass(frozen=True, slots=True)
class Settings:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: tuple[str, ...] = ()
    tool_choice: ToolChoice | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    """Everything sent in one request but the model and endpoint."""

    messages: tuple[Message, ...]
    system: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    settings: Settings = field(default_factory=Settings)

    def append(self, *messages: Message) -> Conversation:
        """A new conversation with ``messages`` added at the end."""
        return replace(self, messages=(*self.messages, *messages))

    def tool(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)
