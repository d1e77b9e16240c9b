"""Faults, fault plans and the seeded draw that picks one per request.

Public API (stable; the Bedrock and OpenAI routes both build on it):

* :data:`FAULT_NAMES` - the 17 exact names. :class:`Fault` ``(name, arg)``;
  ``Fault.parse("stall_after:3")`` validates and raises :class:`InvalidFault` (both a
  ``ConfigError`` and a ``ValueError``) on an unknown name or a bad argument. Typed accessors:
  ``.count`` (``stall_after``), ``.status`` (``http_error``), ``.seconds`` (``latency``),
  ``.value`` (``stream_exception`` type, ``stop_reason`` value), ``.bytes_per_s``
  (``slow_body``). ``reject_reasoning_replay`` takes an optional ``:hang``.
  ``str(fault)`` gives the text back.
  ``.added_latency`` is the delay any fault adds before the first event (only ``latency``).
  :data:`FAULT_HEADER` is the request header that forces a fault.
* :func:`apply_to_turn(fault, turn, conversation) <apply_to_turn>`: the content faults
  (``empty_response``, ``stop_reason``, ``malformed_tool_args``, ``tool_call_in_text``) applied
  to a scripted :class:`~callproof.emulator.models.Turn`; other faults leave it unchanged.
* :func:`turn_type(conversation) <turn_type>` -> ``"first"`` or ``"after_tool_result"``.
* :func:`replays_reasoning(conversation) <replays_reasoning>`: an assistant turn carries
  reasoning (``reasoningContent`` on Bedrock, ``reasoning_content``/reasoning items on OpenAI);
  :func:`replay_rejection(fault, profile, conversation) <replay_rejection>` gives the
  ``reject_reasoning_replay`` fault that applies (forced, drawn, or the model's own quirk).
* :func:`tool_markup(model_id, calls) <tool_markup>`: tool calls as the model family writes them
  in text (``tool_call_in_text``).
* :class:`FaultRule` ``(model glob, api, turn, entries)`` and :class:`FaultPlan` ``(rules,
  models)``; ``FaultPlan.load(path)`` / ``FaultPlan.from_toml(text)`` read the TOML format of
  ``docs/faults.md``; ``plan.draw(api, model, turn, rng) -> Fault | None`` makes one seeded draw.
  ``plan.rng_for(seed, api, model, turn)`` gives the RNG stream a (model, turn type) draws from,
  so one model's fault sequence does not depend on how other models' requests interleave.
"""

from __future__ import annotations

import fnmatch
import json
import math
import random
import re
import tomllib
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

from callproof.conversation import (
    AssistantMessage,
    Conversation,
    ThinkingPart,
    ToolResult,
    UserMessage,
)
from callproof.emulator.models import ModelProfile, ScriptedCall, Turn
from callproof.errors import ConfigError
from callproof.events import STOP_REASONS

__all__ = [
    "ATTEMPT_KEY_HEADER",
    "CONTENT_FAULTS",
    "CURRENT_ATTEMPT_KEY",
    "FAULT_HEADER",
    "FAULT_NAMES",
    "KNOWN_STREAM_EXCEPTIONS",
    "AttemptKeyMiddleware",
    "Fault",
    "FaultEntry",
    "FaultPlan",
    "FaultRule",
    "InvalidFault",
    "TurnType",
    "apply_to_turn",
    "replay_rejection",
    "replays_reasoning",
    "tool_markup",
    "turn_type",
]

#: The request header that forces one fault on one request (any route).
FAULT_HEADER = "x-callproof-fault"

#: The request header that keys one request's fault draw: ``callproof run`` sets it to
#: ``target/scenario/attempt`` on requests to the embedded emulator, and the draw then comes from
#: (seed, key, api, model, turn type) alone, so the same seed fails the same attempts at any
#: concurrency. Without it, draws come from the per-(api, model, turn) stream.
ATTEMPT_KEY_HEADER = "x-callproof-attempt-key"
#: The attempt key of the request being handled (set by :class:`AttemptKeyMiddleware`).
CURRENT_ATTEMPT_KEY: ContextVar[str | None] = ContextVar("callproof_attempt_key", default=None)


class AttemptKeyMiddleware:
    """Pure ASGI middleware: the request's :data:`ATTEMPT_KEY_HEADER` into
    :data:`CURRENT_ATTEMPT_KEY` for the request's handler (the same task)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        key = None
        if scope.get("type") == "http":
            wanted = ATTEMPT_KEY_HEADER.encode()
            for name, value in scope.get("headers") or ():
                if name.lower() == wanted:
                    key = value.decode("latin-1")[:512]
                    break
        token = CURRENT_ATTEMPT_KEY.set(key)
        try:
            await self.app(scope, receive, send)
        finally:
            CURRENT_ATTEMPT_KEY.reset(token)


#: The exact fault names; those ending in ``:`` take an argument.
FAULT_NAMES: tuple[str, ...] = (
    "hang_before_headers",
    "hang_no_events",
    "stall_after:N",
    "close_without_stop",
    "truncate_frame",
    "corrupt_crc",
    "stream_exception:TYPE",
    "http_error:STATUS",
    "empty_response",
    "stop_reason:VALUE",
    "malformed_tool_args",
    "tool_call_in_text",
    "latency:SECONDS",
    "reset_mid_body",
    "reset_before_headers",
    "slow_body:BYTES_PER_S",
    "reject_reasoning_replay",
)
_WITH_ARG = {n.split(":")[0] for n in FAULT_NAMES if ":" in n}
_PLAIN = {n for n in FAULT_NAMES if ":" not in n}
#: Plain faults that also take an optional argument, and the arguments they accept.
_OPTIONAL_ARG = {"reject_reasoning_replay": ("error", "hang")}

#: Stream exception types Bedrock models (other camelCase names are accepted too).
KNOWN_STREAM_EXCEPTIONS = (
    "internalServerException",
    "modelStreamErrorException",
    "validationException",
    "throttlingException",
    "serviceUnavailableException",
)
BEDROCK_STOP_REASONS = tuple(s for s in STOP_REASONS if s != "unknown")

TurnType: TypeAlias = Literal["first", "after_tool_result"]
_TURNS = ("first", "after_tool_result", "any")


class InvalidFault(ConfigError, ValueError):
    """A fault name or argument is not valid."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: a name from :data:`FAULT_NAMES` and its argument (text) when it takes one."""

    name: str
    arg: str | None = None

    @classmethod
    def parse(cls, text: str) -> Fault:
        """Parse ``"name"`` or ``"name:arg"``; :class:`InvalidFault` when unknown or malformed."""
        text = text.strip()
        name, sep, arg = text.partition(":")
        if name in _OPTIONAL_ARG and sep:
            if arg not in _OPTIONAL_ARG[name]:
                choices = " or ".join(f"{name}:{a}" for a in _OPTIONAL_ARG[name])
                raise InvalidFault(f"{name} takes {choices} (got {text!r})")
            return cls(name, arg)
        if name in _PLAIN:
            if sep:
                raise InvalidFault(f"fault {name!r} takes no argument (got {text!r})")
            return cls(name)
        if name not in _WITH_ARG:
            raise InvalidFault(f"unknown fault {text!r}; known faults: {', '.join(FAULT_NAMES)}")
        if not arg:
            raise InvalidFault(f"fault {name!r} needs an argument, e.g. {_example(name)}")
        fault = cls(name, arg)
        fault._check()
        return fault

    def _check(self) -> None:
        arg = self.arg or ""
        if self.name == "stall_after":
            if not arg.isdigit() or int(arg) > 100_000:
                raise InvalidFault(f"stall_after needs a whole number of events, got {arg!r}")
        elif self.name == "http_error":
            if not arg.isdigit() or not 400 <= int(arg) <= 599:
                raise InvalidFault(f"http_error needs a status from 400 to 599, got {arg!r}")
        elif self.name == "latency":
            try:
                seconds = float(arg)
            except ValueError:
                seconds = math.nan
            if not 0 <= seconds <= 3600:
                raise InvalidFault(f"latency needs seconds from 0 to 3600, got {arg!r}")
        elif self.name == "stream_exception":
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,99}", arg):
                raise InvalidFault(
                    f"stream_exception needs an exception type such as "
                    f"{', '.join(KNOWN_STREAM_EXCEPTIONS)}; got {arg!r}"
                )
        elif self.name == "slow_body":
            if not arg.isdigit() or not 1 <= int(arg) <= 1_000_000_000:
                raise InvalidFault(f"slow_body needs bytes per second from 1 to 1e9, got {arg!r}")
        elif self.name == "stop_reason" and not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", arg):
            raise InvalidFault(f"stop_reason needs a value such as end_turn, got {arg!r}")

    def __str__(self) -> str:
        return self.name if self.arg is None else f"{self.name}:{self.arg}"

    @property
    def count(self) -> int:
        """Events before the silence of ``stall_after:N``."""
        return int(self.arg or 0)

    @property
    def status(self) -> int:
        """The status of ``http_error:STATUS``."""
        return int(self.arg or 500)

    @property
    def seconds(self) -> float:
        """The delay of ``latency:SECONDS``."""
        return float(self.arg or 0)

    @property
    def added_latency(self) -> float:
        """Seconds this fault adds before the first event: ``latency:SECONDS``, else 0."""
        return self.seconds if self.name == "latency" else 0.0

    @property
    def bytes_per_s(self) -> int:
        """The rate of ``slow_body:BYTES_PER_S``."""
        return int(self.arg or 1)

    @property
    def value(self) -> str:
        """The argument as text (the exception type, the stop reason)."""
        return self.arg or ""


def _example(name: str) -> str:
    return next(n for n in FAULT_NAMES if n.startswith(name + ":"))


def turn_type(conversation: Conversation) -> TurnType:
    """``after_tool_result`` when the last message is a user turn holding a tool result."""
    if conversation.messages:
        last = conversation.messages[-1]
        if isinstance(last, UserMessage) and any(isinstance(p, ToolResult) for p in last.content):
            return "after_tool_result"
    return "first"


def replays_reasoning(conversation: Conversation) -> bool:
    """True when an assistant turn of the history carries reasoning (a replayed thought)."""
    return any(
        isinstance(m, AssistantMessage) and any(isinstance(p, ThinkingPart) for p in m.content)
        for m in conversation.messages
    )


def replay_rejection(
    fault: Fault | None, profile: ModelProfile, conversation: Conversation
) -> Fault | None:
    """The ``reject_reasoning_replay`` fault that applies to this request, if any: the forced or
    drawn one, else the model's own ``rejects_reasoning_replay`` habit; only when reasoning is
    replayed (a first turn, or a history without reasoning, is answered as usual)."""
    if not replays_reasoning(conversation):
        return None
    if fault is not None and fault.name == "reject_reasoning_replay":
        return fault
    if fault is None and profile.rejects_reasoning_replay is not None:
        return Fault("reject_reasoning_replay", profile.rejects_reasoning_replay)
    return None


@dataclass(frozen=True, slots=True)
class FaultEntry:
    fault: Fault
    probability: float


@dataclass(frozen=True, slots=True)
class FaultRule:
    """Faults for the models matching ``model`` (a glob) on ``api`` for one turn type."""

    model: str = "*"
    api: Literal["bedrock", "openai", "any"] = "any"
    turn: Literal["first", "after_tool_result", "any"] = "any"
    entries: tuple[FaultEntry, ...] = ()

    def matches(self, api: str, model: str, turn: TurnType) -> bool:
        return (
            self.api in ("any", api)
            and self.turn in ("any", turn)
            and fnmatch.fnmatchcase(model, self.model)
        )


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Fault rules plus model declarations (raw mappings, turned into profiles by presets)."""

    rules: tuple[FaultRule, ...] = ()
    models: tuple[dict[str, Any], ...] = ()
    seed: int | None = None
    source: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> FaultPlan:
        """Read a TOML fault plan; ``ConfigError`` naming the file and key when it is wrong."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read fault plan: {exc.strerror}", where=str(path)) from exc
        return cls.from_toml(text, source=str(path))

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<faults>") -> FaultPlan:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", where=source) from exc
        return cls.from_mapping(data, source=source)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, source: str = "<faults>") -> FaultPlan:
        unknown = set(data) - {"seed", "rules", "faults", "models"}
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(sorted(unknown))}", where=source)
        if "faults" in data:  # [[faults]] is accepted as another name for [[rules]]
            if "rules" in data:
                raise ConfigError("give [[rules]] or [[faults]], not both", where=source)
            data = {**data, "rules": data["faults"]}
        seed = data.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ConfigError("seed must be an integer", where=f"{source}: seed")
        raw_rules = data.get("rules", [])
        if not isinstance(raw_rules, list):
            raise ConfigError("rules must be an array of tables ([[rules]])", where=source)
        rules = tuple(_rule(r, f"{source}: rules[{i}]") for i, r in enumerate(raw_rules))
        raw_models = data.get("models", [])
        if not isinstance(raw_models, list) or not all(isinstance(m, dict) for m in raw_models):
            raise ConfigError("models must be an array of tables ([[models]])", where=source)
        return cls(rules, tuple(raw_models), seed, source)

    def entries_for(self, api: str, model: str, turn: TurnType) -> list[FaultEntry]:
        """Every fault that may hit this request, in file order."""
        return [e for r in self.rules if r.matches(api, model, turn) for e in r.entries]

    def draw(self, api: str, model: str, turn: TurnType, rng: random.Random) -> Fault | None:
        """One seeded draw: one uniform number walks the cumulative probabilities in file order
        (so entries whose probabilities sum past 1 are cut off at 1)."""
        entries = self.entries_for(api, model, turn)
        if not entries:
            return None
        u = rng.random()
        total = 0.0
        for entry in entries:
            total += entry.probability
            if u < total:
                return entry.fault
        return None

    @staticmethod
    def rng_for(seed: int, api: str, model: str, turn: TurnType) -> random.Random:
        """The RNG stream for one (api, model, turn type); string seeds are stable across runs."""
        return random.Random(f"{seed}:{api}:{model}:{turn}")

    @staticmethod
    def rng_for_attempt(seed: int, key: str, api: str, model: str, turn: TurnType) -> random.Random:
        """The RNG of one keyed request (:data:`ATTEMPT_KEY_HEADER`): independent of every
        other request, so order and concurrency never change which attempts fail."""
        return random.Random(f"{seed}:attempt:{key}:{api}:{model}:{turn}")


def _rule(raw: Any, where: str) -> FaultRule:
    if not isinstance(raw, dict):
        raise ConfigError("each rule must be a table", where=where)
    unknown = set(raw) - {"model", "api", "turn", "faults", "fault", "probability"}
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(unknown))}", where=where)
    model = raw.get("model", "*")
    api = raw.get("api", "any")
    turn = raw.get("turn", "any")
    if not isinstance(model, str) or not model:
        raise ConfigError("model must be a non-empty string (a glob)", where=f"{where}.model")
    if api not in ("bedrock", "openai", "any"):
        raise ConfigError(f"api must be bedrock, openai or any, got {api!r}", where=f"{where}.api")
    if turn not in _TURNS:
        raise ConfigError(
            f"turn must be first, after_tool_result or any, got {turn!r}", where=f"{where}.turn"
        )
    if "fault" in raw:  # the one-fault shorthand
        items: list[Any] = [{"fault": raw["fault"], "probability": raw.get("probability", 1.0)}]
        if "faults" in raw:
            raise ConfigError("give either fault or faults, not both", where=where)
    else:
        items = raw.get("faults", [])
        if "probability" in raw:
            raise ConfigError("probability belongs to each entry of faults", where=where)
    if not isinstance(items, list) or not items:
        raise ConfigError("faults must be a non-empty array of {fault, probability}", where=where)
    entries = []
    for j, item in enumerate(items):
        at = f"{where}.faults[{j}]"
        if isinstance(item, str):
            item = {"fault": item, "probability": 1.0}
        if not isinstance(item, dict) or set(item) - {"fault", "probability"}:
            raise ConfigError("each entry is {fault = NAME, probability = P}", where=at)
        name = item.get("fault")
        if not isinstance(name, str):
            raise ConfigError("fault must be a string", where=at)
        try:
            fault = Fault.parse(name)
        except InvalidFault as exc:
            raise ConfigError(str(exc), where=at) from exc
        p = item.get("probability", 1.0)
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
            raise ConfigError(f"probability must be a number from 0 to 1, got {p!r}", where=at)
        entries.append(FaultEntry(fault, float(p)))
    if sum(e.probability for e in entries) > 1 + 1e-9:
        raise ConfigError("probabilities of one rule sum to more than 1", where=where)
    return FaultRule(model, api, turn, tuple(entries))


# -- faults that change what the model says (shared by every route) -------------------------

#: Faults that change the turn's content; the others change timing or framing.
CONTENT_FAULTS = frozenset(
    {"empty_response", "stop_reason", "malformed_tool_args", "tool_call_in_text"}
)


def apply_to_turn(
    fault: Fault | None, turn: Turn, conversation: Conversation, model_id: str = ""
) -> Turn:
    """The turn as ``fault`` bends it; unchanged for timing and framing faults.

    * ``empty_response``: no text, no reasoning, no tool calls, ``end_turn`` (Kimi K2.5's "stops
      with no final assistant output"), output tokens still counted.
    * ``stop_reason:VALUE``: the same content with stop reason VALUE (any string).
    * ``malformed_tool_args``: tool arguments cut off mid-JSON; when the turn had no call and
      tools exist, a call to the first tool is made up so the fault still shows.
    * ``tool_call_in_text``: the call written in the text as ``model_id``'s family writes it
      (:func:`tool_markup`), ``end_turn``.
    """
    if fault is None or fault.name not in CONTENT_FAULTS:
        return turn
    if fault.name == "empty_response":
        return turn.replace(reasoning="", text="", tool_calls=(), stop_reason="end_turn")
    if fault.name == "stop_reason":
        return turn.replace(stop_reason=fault.value)
    calls = turn.tool_calls
    if not calls and conversation.tools:
        tool = conversation.tools[0]
        calls = (ScriptedCall(f"functions.{tool.name}:0", tool.name, '{"city": "Tokyo"}'),)
    if not calls:
        return turn
    if fault.name == "malformed_tool_args":
        broken = tuple(c._replace(arguments=_break_json(c.arguments)) for c in calls)
        return turn.replace(tool_calls=broken, stop_reason="tool_use")
    text = f"{turn.text} {tool_markup(model_id, calls)}"
    return turn.replace(text=text.strip(), tool_calls=(), stop_reason="end_turn")


def _json_arguments(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def tool_markup(model_id: str, calls: tuple[ScriptedCall, ...]) -> str:
    """``calls`` as the family of ``model_id`` writes them when they leak into the text."""
    family = model_id.lower()
    if "kimi" in family or "moonshot" in family:
        # Kimi K2's native section tokens, as leaked on Bedrock with stopReason end_turn
        # (vercel/ai#11409, opencode#14221; the K2 chat template in moonshotai/Kimi-K2-Instruct
        # tokenizer_config.json)
        markup = "".join(
            f"<|tool_call_begin|> functions.{c.name}:{i} <|tool_call_argument_begin|> "
            f"{c.arguments} <|tool_call_end|>"
            for i, c in enumerate(calls)
        )
        return f"<|tool_calls_section_begin|> {markup} <|tool_calls_section_end|>"
    if "mistral" in family or "mixtral" in family or "magistral" in family:
        # Mistral's [TOOL_CALLS] control token followed by a JSON list of {name, arguments}
        # (mistral-common's v3 tokenizer; vLLM's mistral_tool_parser.py parses exactly this)
        listed = [{"name": c.name, "arguments": _json_arguments(c.arguments)} for c in calls]
        return "[TOOL_CALLS] " + json.dumps(listed, ensure_ascii=False)
    if "llama" in family:
        # Llama 3.1's custom tool-call format `<function=NAME>{json}</function>` (Meta's Llama
        # 3.1 model card, "custom tool calling"; vLLM's llama tool parsers)
        return "".join(f"<function={c.name}>{c.arguments}</function>" for c in calls)
    # Qwen 2.5 / QwQ and DeepSeek-R1-Distill-Qwen (Hermes format, the Qwen2.5 chat template):
    # <tool_call>{"name": ..., "arguments": ...}</tool_call>; also the fallback for other
    # families (Nova has no documented text form), since it is the most common leaked form
    return "\n".join(
        "<tool_call>\n"
        + json.dumps(
            {"name": c.name, "arguments": _json_arguments(c.arguments)}, ensure_ascii=False
        )
        + "\n</tool_call>"
        for c in calls
    )


def _break_json(arguments: str) -> str:
    cut = arguments.rstrip("}").rstrip()
    return cut if cut and cut != arguments else '{"city": "Tok'
