"""Deterministic, tool-aware scripted models: no LLM, the same answer for the same request.

Public API (stable; the Bedrock and OpenAI routes both build on it):

* :class:`Latency` - time to first event and tokens per second, with jitter.
* :class:`ModelProfile` - one emulated model: ``id``, ``flavour`` (``"bedrock"``, ``"openai"`` or
  ``"openrouter"``), ``thinking``, quirks (``kimi_tool_ids``, ``empty_text_blocks``,
  ``inline_think``), ``latency``, ``provider`` (the OpenRouter ``provider`` field),
  ``rejects_reasoning_replay`` (``"error"``, ``"hang"`` or None). ``.api`` is
  ``"bedrock"`` or ``"openai"``.
* :func:`script_turn(profile, conversation, rng) <script_turn>` -> :class:`Turn` with
  ``reasoning``, ``text``, ``tool_calls`` (tuple of :class:`ScriptedCall` ``(id, name,
  arguments)`` named tuples; ``arguments`` is a JSON string), ``stop_reason`` (Bedrock
  vocabulary), ``input_tokens``, ``output_tokens`` and ``.usage``.
* :func:`split_tokens(text) <split_tokens>` - token-ish deltas that join back to ``text``;
  :func:`split_arguments(json_text) <split_arguments>` - argument fragments as OpenAI streams them.

The script works from the conversation's task (the first user turn) and the tool results, never
from a later retry or correction prompt. With tools and a question, call the fitting tool with
arguments taken from the task
("Weather for Tokyo?" -> ``get_weather({"city": "Tokyo"})``; "Tokyo and Paris" -> two parallel
calls). After tool results, call the next fitting tool not called yet (multi-step), else answer in
text that uses every result ("The current temperature in Tokyo is 22°C.").
"""

from __future__ import annotations

import contextlib
import json
import random
import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple, TypeAlias

from callproof.conversation import (
    AssistantMessage,
    Conversation,
    TextPart,
    ToolCall,
    ToolResult,
    ToolSpec,
    UserMessage,
)
from callproof.emulator.ids import ALPHANUMERIC, token
from callproof.events import Usage

__all__ = [
    "Flavour",
    "Latency",
    "ModelProfile",
    "ScriptedCall",
    "Turn",
    "script_turn",
    "split_arguments",
    "split_tokens",
]

Flavour: TypeAlias = Literal["bedrock", "openai", "openrouter"]


@dataclass(frozen=True, slots=True)
class Latency:
    """When events come: ``first_event_s`` before the first event, then ``tokens_per_s``.

    ``jitter`` is absolute seconds for the first event (uniform in +-jitter) and a fraction of
    the per-token gap for later deltas.
    """

    first_event_s: float = 0.2
    tokens_per_s: float = 200.0
    jitter: float = 0.1

    def first_delay(self, rng: random.Random) -> float:
        """Seconds before the first event."""
        if self.first_event_s <= 0:
            return 0.0
        return max(0.0, self.first_event_s + rng.uniform(-self.jitter, self.jitter))

    def token_delay(self, rng: random.Random, tokens: int = 1) -> float:
        """Seconds before a delta of ``tokens`` tokens."""
        if self.tokens_per_s <= 0 or tokens <= 0:
            return 0.0
        gap = tokens / self.tokens_per_s
        frac = min(self.jitter, 1.0)
        return max(0.0, gap * (1 + rng.uniform(-frac, frac)))

    def response_delay(self, rng: random.Random, tokens: int) -> float:
        """Seconds before a whole non-streamed answer of ``tokens`` tokens."""
        return self.first_delay(rng) + sum(self.token_delay(rng) for _ in range(tokens))


INSTANT = Latency(first_event_s=0.0, tokens_per_s=0.0, jitter=0.0)


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """One emulated model and its habits."""

    id: str
    flavour: Flavour = "bedrock"
    thinking: bool = False
    #: Tool ids like Kimi's ``functions.get_weather:0``.
    kimi_tool_ids: bool = False
    #: Empty text blocks around reasoning and tool blocks (gpt-oss, Kimi on Bedrock).
    empty_text_blocks: bool = False
    #: Reasoning inline in the text as ``<think> ... </think>`` instead of a reasoning block.
    inline_think: bool = False
    latency: Latency = field(default_factory=Latency)
    #: The ``provider`` an OpenRouter-flavoured model reports in its chunks.
    provider: str | None = None
    #: How the model answers a replayed reasoning block: ``"error"`` (a ValidationException /
    #: 400), ``"hang"``, or None (accepted). The seed's third suspect, opt-in per preset.
    rejects_reasoning_replay: str | None = None

    @property
    def api(self) -> Literal["bedrock", "openai"]:
        """Which wire API serves this model."""
        return "bedrock" if self.flavour == "bedrock" else "openai"

    def with_id(self, model_id: str) -> ModelProfile:
        """The same habits under another id (for wildcard default profiles)."""
        return replace(self, id=model_id)


class ScriptedCall(NamedTuple):
    """One tool call of a scripted turn; ``arguments`` is the JSON text sent on the wire."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Turn:
    """What a scripted model says in one turn. ``stop_reason`` uses Bedrock's vocabulary."""

    reasoning: str
    text: str
    tool_calls: tuple[ScriptedCall, ...]
    stop_reason: str
    input_tokens: int
    output_tokens: int

    @property
    def usage(self) -> Usage:
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            total_tokens=self.input_tokens + self.output_tokens,
        )

    def replace(self, **changes: Any) -> Turn:
        """A copy with some fields changed (faults use this)."""
        return replace(self, **changes)


_TOKEN = re.compile(r"\s*\S{1,8}|\s+")


def split_tokens(text: str) -> list[str]:
    """Token-ish deltas (a word or 8 characters, leading space kept); they join to ``text``."""
    return _TOKEN.findall(text)


def split_arguments(arguments: str, size: int = 6) -> list[str]:
    """Argument fragments of at most ``size`` characters, as OpenAI models stream them."""
    if not arguments:
        return [""]
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


# -- reading the conversation ---------------------------------------------------------------

_STOP_WORDS = frozenset(
    {"get", "set", "fetch", "find", "lookup", "look", "list", "search", "current", "the", "a"}
)
_ENTITY = r"[A-Z][\w'.-]*(?:\s+[A-Z][\w'.-]*)*"
_PREPOSITION_LIST = re.compile(
    rf"\b(?:for|in|at|of|about|from|to)\s+({_ENTITY}(?:\s*(?:,|\band\b|&)\s*(?:in\s+)?{_ENTITY})*)"
)
_CAPITALISED = re.compile(_ENTITY)
_QUOTED = re.compile(r"[\"'`]([^\"'`]+)[\"'`]")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _question(conversation: Conversation) -> str:
    """The conversation's task: the text of the first user message that holds text.

    Not the last one: agent frameworks add retry and self-correction turns ("Please try
    again", "Your answer must be JSON") that are not a new task, and a model keeps working on
    the task it was given (issue 9: a retry prompt must not become ``city="Please"``)."""
    for message in conversation.messages:
        if isinstance(message, UserMessage):
            texts = [p.text for p in message.content if isinstance(p, TextPart) and p.text.strip()]
            if texts:
                return " ".join(texts)
    return ""


def _calls_since_question(conversation: Conversation) -> list[tuple[ToolCall, ToolResult | None]]:
    """Every tool call of the conversation, each with its result when one came back (the
    task's results, whatever turns came in between)."""
    results: dict[str, ToolResult] = {}
    calls: list[ToolCall] = []
    for message in conversation.messages:
        if isinstance(message, UserMessage):
            for part in message.content:
                if isinstance(part, ToolResult):
                    results[part.tool_call_id] = part
        elif isinstance(message, AssistantMessage):
            calls.extend(message.tool_calls)
    return [(call, results.get(call.id)) for call in calls]


def _entities(question: str) -> list[str]:
    """Names in the question: "Weather for Tokyo and Paris?" -> ["Tokyo", "Paris"]."""
    found: list[str] = []
    for match in _PREPOSITION_LIST.finditer(question):
        for piece in re.split(r"\s*(?:,|\band\b|&)\s*", match.group(1)):
            name = re.sub(r"^in\s+", "", piece).strip(" .?!")
            if name and name not in found:
                found.append(name)
    if found:
        return found
    found = [q.strip() for q in _QUOTED.findall(question) if q.strip()]
    if found:
        return found
    words = _CAPITALISED.findall(question)
    # the first word of a sentence is capitalised anyway
    if words and question.lstrip().startswith(words[0]):
        words = words[1:]
    return [w.strip(" .?!") for w in words if w.strip(" .?!")]


def _name_words(tool: ToolSpec) -> list[str]:
    words = re.split(r"[_\-\s]+|(?<=[a-z])(?=[A-Z])", tool.name)
    return [w.lower() for w in words if w and w.lower() not in _STOP_WORDS]


def _relevant_tools(conversation: Conversation, question: str) -> list[ToolSpec]:
    """Tools the question asks for, in the order the question mentions them."""
    choice = conversation.settings.tool_choice
    if choice == "none" or not conversation.tools:
        return []
    if isinstance(choice, dict) and "tool" in choice:
        named = conversation.tool(choice["tool"])
        return [named] if named else []
    lowered = question.lower()
    scored: list[tuple[int, ToolSpec]] = []
    for tool in conversation.tools:
        positions = [lowered.find(w) for w in _name_words(tool) if w in lowered]
        if positions:
            scored.append((min(positions), tool))
    if scored:
        return [tool for _, tool in sorted(scored, key=lambda item: item[0])]
    # no tool named: the one whose description shares the most words with the question
    asked = set(re.findall(r"[a-z]{4,}", lowered))
    overlap = [
        (len(asked & set(re.findall(r"[a-z]{4,}", t.description.lower()))), i, t)
        for i, t in enumerate(conversation.tools)
    ]
    best = max(overlap, key=lambda item: (item[0], -item[1]))
    if best[0] > 0:
        return [best[2]]
    if len(conversation.tools) == 1 or choice == "any":
        return [conversation.tools[0]]
    return []


def _takes_text(tool: ToolSpec) -> bool:
    properties: dict[str, Any] = tool.parameters.get("properties") or {}
    return any(
        isinstance(schema, dict)
        and schema.get("type") in ("string", None)
        and not schema.get("enum")
        for schema in properties.values()
    )


def _arguments(tool: ToolSpec, question: str, entity: str | None) -> dict[str, Any]:
    properties: dict[str, Any] = tool.parameters.get("properties") or {}
    required = set(tool.parameters.get("required") or ())
    numbers = _NUMBER.findall(question)
    args: dict[str, Any] = {}
    entity_used = False
    for name, schema in properties.items():
        kind = schema.get("type") if isinstance(schema, dict) else None
        enum = schema.get("enum") if isinstance(schema, dict) else None
        if enum:
            lowered = question.lower()
            args[name] = next((v for v in enum if str(v).lower() in lowered), enum[0])
        elif kind in ("number", "integer") and numbers:
            value = float(numbers.pop(0))
            args[name] = int(value) if kind == "integer" else value
        elif kind == "boolean" and name in required:
            args[name] = True
        elif kind in ("string", None) and entity is not None and not entity_used:
            args[name] = entity
            entity_used = True
        elif name in required and kind == "string":
            args[name] = question.strip()
    return args


# -- the script ------------------------------------------------------------------------------


def _tool_id(profile: ModelProfile, name: str, index: int, rng: random.Random) -> str:
    if profile.kimi_tool_ids:
        return f"functions.{name}:{index}"
    if profile.flavour == "bedrock":
        return "tooluse_" + token(rng, 22, ALPHANUMERIC + "_-")
    return "call_" + token(rng, 24)


def _describe(call: ToolCall, result: ToolResult) -> str:
    """One sentence that uses a tool result."""
    content: Any = result.content
    if isinstance(content, str):
        with contextlib.suppress(ValueError):
            content = json.loads(content)
    subject = next(
        (str(v) for v in (call.arguments or {}).values() if isinstance(v, str) and v), None
    )
    where = f" in {subject}" if subject else ""
    if result.is_error:
        return f"The {call.name} tool failed{where}: {_flat(content)}."
    if isinstance(content, dict):
        for key in ("temp", "temperature", "temp_c", "temperature_c"):
            if key in content and isinstance(content[key], int | float | str):
                unit = content.get("unit", "C")
                unit = "°C" if str(unit).upper() in ("C", "CELSIUS") else f"°{unit}"
                return f"The current temperature{where} is {content[key]}{unit}."
    return f"The {call.name} result{where} is {_flat(content)}."


def _flat(content: Any) -> str:
    if isinstance(content, dict):
        return ", ".join(f"{k} {_flat(v)}" for k, v in content.items())
    if isinstance(content, list):
        return ", ".join(_flat(v) for v in content)
    return str(content)


def _count_tokens(conversation: Conversation) -> int:
    size = len(conversation.system or "")
    for message in conversation.messages:
        for part in message.content:
            if isinstance(part, TextPart):
                size += len(part.text)
            elif isinstance(part, ToolResult):
                size += len(json.dumps(part.content))
            elif isinstance(part, ToolCall):
                size += len(part.name) + len(part.arguments_raw or json.dumps(part.arguments))
    size += sum(
        len(json.dumps(t.parameters)) + len(t.name) + len(t.description) for t in conversation.tools
    )
    return max(1, size // 4) + 8 * len(conversation.messages)


def _previous_call_count(conversation: Conversation) -> int:
    return sum(len(m.tool_calls) for m in conversation.messages if isinstance(m, AssistantMessage))


def script_turn(profile: ModelProfile, conversation: Conversation, rng: random.Random) -> Turn:
    """The next assistant turn of ``profile`` for ``conversation``; ``rng`` only picks ids."""
    question = _question(conversation)
    done = _calls_since_question(conversation)
    called = {call.name for call, _ in done}
    pending = [t for t in _relevant_tools(conversation, question) if t.name not in called]
    if conversation.settings.tool_choice in (None, "auto") and done:
        # after results, only tools the question names explicitly are still worth calling
        lowered = question.lower()
        pending = [t for t in pending if any(w in lowered for w in _name_words(t))]

    calls: tuple[ScriptedCall, ...] = ()
    if pending:
        tool = pending[0]
        # bounded, like the work a hostile prompt ("A and B and C and ...") can cause
        named: list[str | None] = list(_entities(question)[:MAX_PARALLEL_CALLS])
        entities = named or [None]
        if not _takes_text(tool):
            entities = entities[:1]  # nothing to vary between parallel calls
        base = _previous_call_count(conversation)
        taken = {
            c.id
            for m in conversation.messages
            if isinstance(m, AssistantMessage)
            for c in m.tool_calls
        }
        made: list[ScriptedCall] = []
        for i, entity in enumerate(entities):
            call_id = _tool_id(profile, tool.name, base + i, rng)
            while call_id in taken:  # ids are unique within a conversation, as real ones are
                call_id = _tool_id(profile, tool.name, base + i + len(taken), rng)
            taken.add(call_id)
            made.append(
                ScriptedCall(call_id, tool.name, json.dumps(_arguments(tool, question, entity)))
            )
        calls = tuple(made)
        plain = profile.flavour != "bedrock" or profile.empty_text_blocks
        text = "" if plain else _preamble(tool, entities)
        reasoning = f"The user asks: {question!r}. I should call {tool.name}."
    elif done:
        sentences = [_describe(call, result) for call, result in done if result is not None]
        text = " ".join(sentences) or "I could not get a result from the tool."
        reasoning = "The tool results are in; I will answer from them."
    else:
        text = _plain_answer(question)
        reasoning = "A direct question; no tool is needed."

    if not profile.thinking:
        reasoning = ""
    elif profile.inline_think:
        text = f" <think> {reasoning} </think> {text}".rstrip() if text else text
        reasoning = ""
    elif profile.kimi_tool_ids:
        reasoning = " " + reasoning  # Kimi's reasoning starts with a space [REC]

    stop = "tool_use" if calls else "end_turn"
    text, stop = _apply_limits(conversation, text, stop)
    out_tokens = (
        len(split_tokens(text))
        + len(split_tokens(reasoning))
        + sum(len(c.arguments) // 4 + 2 for c in calls)
    )
    limit = _output_limit(conversation)
    if out_tokens > limit:
        # the cap holds for every answer, tool calls included (issue 10: 19,100 output
        # tokens of calls with no maxTokens): cut off mid-call, as a real model is
        kept = split_tokens(reasoning)[:limit]
        reasoning = "".join(kept)
        text = "".join(split_tokens(text)[: max(0, limit - len(kept))])
        calls, stop, out_tokens = (), "max_tokens", limit
    return Turn(
        reasoning=reasoning,
        text=text,
        tool_calls=calls if stop == "tool_use" else (),
        stop_reason=stop,
        input_tokens=_count_tokens(conversation),
        output_tokens=max(1, out_tokens),
    )


def _preamble(tool: ToolSpec, entities: list[str | None]) -> str:
    names = [e for e in entities if e]
    target = f" for {', '.join(names)}" if names else ""
    return f"I'll use {tool.name}{target}."


def _plain_answer(question: str) -> str:
    if not question:
        return "Hello! How can I help?"
    if re.search(r"\b(hi|hello|hey)\b", question, re.IGNORECASE):
        return "Hello! How can I help you today?"
    return f"You asked: {question.strip()} This is a scripted answer from the callproof emulator."


#: Output tokens when the request sets no limit, and the most any request gets: real models
#: have both, and they keep one hostile request from producing an unbounded answer.
DEFAULT_MAX_OUTPUT_TOKENS = 4096
#: Parallel calls in one turn at most (OpenAI allows 128 tools per request).
MAX_PARALLEL_CALLS = 128
MAX_OUTPUT_TOKENS = 32768


def _output_limit(conversation: Conversation) -> int:
    return min(conversation.settings.max_tokens or DEFAULT_MAX_OUTPUT_TOKENS, MAX_OUTPUT_TOKENS)


def _apply_limits(conversation: Conversation, text: str, stop: str) -> tuple[str, str]:
    settings = conversation.settings
    for sequence in settings.stop_sequences:
        if sequence and sequence in text:
            return text[: text.index(sequence)], "stop_sequence"
    limit = _output_limit(conversation)
    pieces = split_tokens(text)
    if len(pieces) > limit:
        return "".join(pieces[:limit]), "max_tokens"
    return text, stop
