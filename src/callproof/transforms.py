"""Conversation transforms: adapt a conversation to what one target accepts.

A conversation recorded against one API or model often cannot be sent to another as it is:
Kimi's tool ids (``functions.get_weather:0``) break OpenAI-style id rules, Bedrock rejects blank
text blocks and two user turns in a row, a signed reasoning block is only valid for the model
that signed it. :func:`prepare` applies, in order:

1. assistant turns that ended in an error or an abnormal stop: kept or dropped (``failed_turns``;
   dropping one also drops the results of its tool calls);
2. reasoning: replayed only to the model that produced it (``ThinkingPart.origin``); any other
   reasoning is dropped or sent as text (``foreign_reasoning``); redacted reasoning from another
   model is always dropped, since nothing can read it;
3. empty text blocks dropped, then messages left empty dropped;
4. consecutive same-role turns merged;
5. a tool call with no result gets a synthetic error result;
6. tool-call ids made valid for the target's API, with one stable mapping applied to the call
   and to its result.

Every change is logged at debug level on ``callproof.transforms``; none is silent.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from typing import Literal

from callproof.conversation import (
    AssistantMessage,
    AssistantPart,
    Conversation,
    Message,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolResult,
    UserMessage,
    UserPart,
)
from callproof.dialects import DIALECTS, ToolIdRule
from callproof.targets import Target

__all__ = ["TOOL_ID_RULES", "ToolIdRule", "TransformPolicy", "origin_of", "prepare", "valid_id"]

log = logging.getLogger(__name__)

#: Stop reasons that end a turn normally (anything else is an abnormal stop).
_NORMAL_STOPS = frozenset({"end_turn", "tool_use", "stop_sequence"})

#: The synthetic result given to a tool call that has none.
MISSING_RESULT = "error: no result was recorded for this tool call"


#: Per wire API, as each dialect class declares it (``tool_ids``: see its module).
TOOL_ID_RULES: dict[str, ToolIdRule] = {name: cls.tool_ids for name, cls in DIALECTS.items()}


@dataclass(frozen=True, slots=True)
class TransformPolicy:
    """Choices a transform cannot make on its own.

    * ``foreign_reasoning``: reasoning produced by another model (or another API) is
      ``"drop"``-ped (default) or sent as ``"text"`` (``<thinking>...</thinking>``).
    * ``failed_turns``: an assistant turn that ended in an error or an abnormal stop is
      ``"keep"``-t (default: the model should see what it said) or ``"drop"``-ped.
    * ``enabled``: ``False`` sends the conversation exactly as given.
    """

    foreign_reasoning: Literal["drop", "text"] = "drop"
    failed_turns: Literal["keep", "drop"] = "keep"
    enabled: bool = True


def origin_of(target: Target) -> str:
    """The ``ThinkingPart.origin`` a response from ``target`` gets: ``"<api>:<model>"``."""
    return f"{target.api}:{target.model}"


def _same_origin(origin: str, target: Target) -> bool:
    api, _, model = origin.partition(":")
    # The streaming and non-streaming flavours of one API share a model's signatures.
    return model == target.model and api.removesuffix("-stream") == target.api.removesuffix(
        "-stream"
    )


def valid_id(raw: str, rule: ToolIdRule) -> str:
    """``raw`` if ``rule`` accepts it, else a stable rewrite: invalid characters to ``_``,
    cut to length, with a hash of the original so two ids never collide."""
    if rule.pattern.fullmatch(raw):
        return raw
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    clean = rule.invalid_chars.sub("_", raw)[: rule.max_length - len(digest) - 1]
    return f"{clean}_{digest}" if clean else f"call_{digest}"[: rule.max_length]


def prepare(
    conversation: Conversation, target: Target, policy: TransformPolicy | None = None
) -> Conversation:
    """``conversation`` adapted to ``target`` (see the module docstring for the steps)."""
    policy = policy or TransformPolicy()
    if not policy.enabled:
        return conversation
    messages = list(conversation.messages)
    messages = _failed_turns(messages, policy)
    messages = _reasoning(messages, target, policy)
    messages = _drop_empty(messages)
    messages = _merge(messages)
    messages = _missing_results(messages)
    messages = _tool_ids(messages, target)
    if tuple(messages) == conversation.messages:
        return conversation
    return replace(conversation, messages=tuple(messages))


def _failed(message: AssistantMessage) -> bool:
    return message.failed or (
        message.stop_reason is not None and message.stop_reason not in _NORMAL_STOPS
    )


def _failed_turns(messages: list[Message], policy: TransformPolicy) -> list[Message]:
    out: list[Message] = []
    orphaned: set[str] = set()
    for i, msg in enumerate(messages):
        if isinstance(msg, AssistantMessage) and _failed(msg):
            if policy.failed_turns == "drop":
                log.debug(
                    "dropped failed assistant turn at messages[%d] (stop %s)", i, msg.stop_reason
                )
                orphaned.update(c.id for c in msg.tool_calls)
                continue
            log.debug("kept failed assistant turn at messages[%d] (policy keep)", i)
        if isinstance(msg, UserMessage) and orphaned:
            kept = tuple(
                p
                for p in msg.content
                if not (isinstance(p, ToolResult) and p.tool_call_id in orphaned)
            )
            if len(kept) != len(msg.content):
                log.debug("dropped results of the dropped turn's tool calls at messages[%d]", i)
                msg = replace(msg, content=kept)
        out.append(msg)
    return out


def _reasoning(messages: list[Message], target: Target, policy: TransformPolicy) -> list[Message]:
    out: list[Message] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, AssistantMessage):
            out.append(msg)
            continue
        parts: list[AssistantPart] = []
        for part in msg.content:
            if not isinstance(part, ThinkingPart):
                parts.append(part)
                continue
            native = (
                _same_origin(part.origin, target)
                if part.origin is not None
                else (part.signature is None and part.redacted is None)
            )
            if native:
                parts.append(part)
            elif policy.foreign_reasoning == "text" and part.text.strip():
                log.debug(
                    "reasoning at messages[%d] from %s sent to %s as text",
                    i,
                    part.origin or "an unknown model",
                    origin_of(target),
                )
                parts.append(TextPart(f"<thinking>\n{part.text}\n</thinking>"))
            else:
                log.debug(
                    "dropped reasoning at messages[%d] from %s (not valid for %s)",
                    i,
                    part.origin or "an unknown model",
                    origin_of(target),
                )
        out.append(
            msg
            if len(parts) == len(msg.content)
            and all(a is b for a, b in zip(parts, msg.content, strict=True))
            else replace(msg, content=tuple(parts))
        )
    return out


def _drop_empty(messages: list[Message]) -> list[Message]:
    out: list[Message] = []
    for i, msg in enumerate(messages):
        blank = [p for p in msg.content if isinstance(p, TextPart) and not p.text.strip()]
        if blank:
            log.debug("dropped %d empty text block(s) at messages[%d]", len(blank), i)
            kept = tuple(
                p for p in msg.content if not (isinstance(p, TextPart) and not p.text.strip())
            )
            msg = replace(msg, content=kept)  # type: ignore[arg-type]
        if not msg.content:
            log.debug("dropped messages[%d] (%s): no content left", i, msg.role)
            continue
        out.append(msg)
    return out


def _merge(messages: list[Message]) -> list[Message]:
    out: list[Message] = []
    for msg in messages:
        prev = out[-1] if out else None
        if isinstance(prev, UserMessage) and isinstance(msg, UserMessage):
            log.debug("merged two consecutive user turns at messages[%d]", len(out) - 1)
            out[-1] = UserMessage(content=(*prev.content, *msg.content))
        elif isinstance(prev, AssistantMessage) and isinstance(msg, AssistantMessage):
            log.debug("merged two consecutive assistant turns at messages[%d]", len(out) - 1)
            out[-1] = AssistantMessage(
                content=(*prev.content, *msg.content),
                stop_reason=msg.stop_reason,
                failed=prev.failed or msg.failed,
            )
        else:
            out.append(msg)
    return out


def _missing_results(messages: list[Message]) -> list[Message]:
    out: list[Message] = list(messages)
    i = 0
    while i < len(out):
        msg = out[i]
        if isinstance(msg, AssistantMessage) and msg.tool_calls:
            nxt = out[i + 1] if i + 1 < len(out) else None
            have = (
                {p.tool_call_id for p in nxt.content if isinstance(p, ToolResult)}
                if isinstance(nxt, UserMessage)
                else set()
            )
            missing = [c for c in msg.tool_calls if c.id not in have]
            if missing:
                log.debug(
                    "added a synthetic error result for tool call(s) %s at messages[%d]",
                    [c.id for c in missing],
                    i,
                )
                synthetic: tuple[UserPart, ...] = tuple(
                    ToolResult(tool_call_id=c.id, content=MISSING_RESULT, is_error=True)
                    for c in missing
                )
                if isinstance(nxt, UserMessage):
                    results = tuple(p for p in nxt.content if isinstance(p, ToolResult))
                    rest = tuple(p for p in nxt.content if not isinstance(p, ToolResult))
                    out[i + 1] = UserMessage(content=(*results, *synthetic, *rest))
                else:
                    out.insert(i + 1, UserMessage(content=synthetic))
        i += 1
    return out


def _tool_ids(messages: list[Message], target: Target) -> list[Message]:
    rule = TOOL_ID_RULES.get(target.api)
    if rule is None:  # not a wire API of ours (a test's stand-in): ids go as they are
        return messages
    mapping: dict[str, str] = {}
    used: set[str] = set()

    def mapped(raw: str) -> str:
        if raw not in mapping:
            new = valid_id(raw, rule)
            while new in used and new != raw:  # pathological: a valid id equal to a rewrite
                new = valid_id(new + "~", rule)
            mapping[raw] = new
            used.add(new)
            if new != raw:
                log.debug("tool-call id %r rewritten to %r for %s", raw, new, target.api)
        return mapping[raw]

    out: list[Message] = []
    for msg in messages:
        if isinstance(msg, AssistantMessage):
            parts: list[AssistantPart] = []
            for a in msg.content:
                if isinstance(a, ToolCall) and mapped(a.id) != a.id:
                    a = replace(a, id=mapped(a.id))
                parts.append(a)
            out.append(replace(msg, content=tuple(parts)))
        else:
            uparts: list[UserPart] = []
            for u in msg.content:
                if isinstance(u, ToolResult) and mapped(u.tool_call_id) != u.tool_call_id:
                    u = replace(u, tool_call_id=mapped(u.tool_call_id))
                uparts.append(u)
            out.append(replace(msg, content=tuple(uparts)))
    return out
