"""What the probe sends: built-in scenarios and scenarios written in ``callproof.toml``.

A :class:`ProbeScenario` wraps a :class:`callproof.scenarios.Scenario` (the first request and
what its answer must satisfy, ``min_tool_calls`` included: how many tool calls must come back
in one response, as ``parallel-tools`` needs) with what a single request cannot express:
``loop``, an :class:`AgentLoop` the runner drives like an agent would, appending each assistant
turn and a scripted tool result until the model answers in text (``multi-step``). Every
verdict, a loop's included, comes from :func:`callproof.outcomes.classify`.

Built-ins: ``tool-result`` and ``tool-call`` (shared with ``callproof call``), ``multi-step``,
``parallel-tools`` and ``thinking-replay``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from callproof import scenarios as base
from callproof.conversation import (
    AssistantMessage,
    AssistantPart,
    Conversation,
    Message,
    Settings,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolResult,
    ToolSpec,
    UserMessage,
)
from callproof.errors import CallError
from callproof.events import Response, StopReason
from callproof.outcomes import Expectation, LoopProgress, Verdict, classify
from callproof.scenarios import CITY_ARGUMENTS, WEATHER_TOOL, Scenario

__all__ = [
    "BUILTIN_NAMES",
    "LOOP_TOOLS",
    "AgentLoop",
    "ExpectModel",
    "MessageModel",
    "ProbeScenario",
    "ScenarioModel",
    "ToolCallModel",
    "ToolModel",
    "attempts_of",
    "builtin",
    "builtins",
    "drive_loop",
    "multi_step",
    "parallel_tools",
    "thinking_replay",
]


@dataclass(frozen=True, slots=True)
class AgentLoop:
    """An agent loop: every tool call gets ``script(call)`` as its result, until the model
    answers without calling a tool (then the scenario's expectation judges that answer) or
    ``max_turns`` requests have been spent (then the attempt fails its expectation)."""

    script: Callable[[ToolCall], ToolResult]
    max_turns: int = 6
    #: At least this many tool calls over the loop before the final answer counts.
    min_calls: int = 1


@dataclass(frozen=True, slots=True)
class ProbeScenario:
    """A scenario as the probe runs it (see the module docstring)."""

    scenario: Scenario
    loop: AgentLoop | None = None
    builtin: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def description(self) -> str:
        return self.scenario.description

    @property
    def conversation(self) -> Conversation:
        return self.scenario.conversation

    @property
    def expectation(self) -> Expectation:
        return self.scenario.expectation

    @property
    def min_tool_calls(self) -> int:
        """Tool calls required in one response (the expectation's; ``classify`` checks it)."""
        return self.expectation.min_tool_calls


def _city_tool(name: str, description: str) -> ToolSpec:
    return ToolSpec(
        name=name,
        description=description,
        parameters={
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    )


#: The tools of ``multi-step`` and what each returns for any city.
LOOP_TOOLS: dict[str, tuple[ToolSpec, dict[str, Any], str]] = {
    "get_weather": (WEATHER_TOOL, {"temp": 22}, "22"),
    "get_local_time": (
        _city_tool("get_local_time", "Get the current local time in a city."),
        {"time": "14:05"},
        "14:05",
    ),
    "get_population": (
        _city_tool("get_population", "Get the population of a city."),
        {"population": 13960000},
        "13960000",
    ),
}


def _loop_script(call: ToolCall) -> ToolResult:
    entry = LOOP_TOOLS.get(call.name)
    if entry is None:
        return ToolResult(
            tool_call_id=call.id,
            content=json.dumps({"error": f"unknown tool {call.name!r}"}),
            is_error=True,
        )
    return ToolResult(tool_call_id=call.id, content=json.dumps(entry[1]))


def _all_of(values: list[str]) -> str:
    """A regex (for ``re.search``) that matches text containing every value as a word."""
    return "(?s)^" + "".join(rf"(?=.*\b{re.escape(v)}\b)" for v in values)


def multi_step() -> ProbeScenario:
    """An agent loop of three tool calls (weather, local time, population of Tokyo), one per
    request, each answered by a scripted result; passes when the final answer uses all three.
    Each request after a tool result is one more chance to hang: a 40% hang rate per request
    leaves 0.6^3 = 22% of loops finishing."""
    tools = tuple(spec for spec, _, _ in LOOP_TOOLS.values())
    values = [value for _, _, value in LOOP_TOOLS.values()]
    conversation = Conversation(
        messages=(
            UserMessage.text(
                "What is the weather in Tokyo, the local time in Tokyo and the population of "
                "Tokyo? Use one tool at a time, then answer with all three."
            ),
        ),
        tools=tools,
        settings=Settings(max_tokens=200),
    )
    k = len(tools)
    return ProbeScenario(
        scenario=Scenario(
            name="multi-step",
            conversation=conversation,
            expectation=Expectation(text_regex=_all_of(values)),
            description=(
                f"An agent loop of {k} tool calls with scripted results; passes when the final "
                f"answer uses them all ({', '.join(values)})."
            ),
        ),
        loop=AgentLoop(script=_loop_script, max_turns=k + 2, min_calls=k),
        builtin=True,
    )


def parallel_tools(cities: tuple[str, ...] = ("Tokyo", "Paris")) -> ProbeScenario:
    """One request that should yield one get_weather call per city, all in the same response."""
    conversation = Conversation(
        messages=(
            UserMessage.text(
                f"Weather for {' and '.join(cities)}? Call get_weather for each city at once."
            ),
        ),
        tools=(WEATHER_TOOL,),
        settings=Settings(max_tokens=200),
    )
    return ProbeScenario(
        scenario=Scenario(
            name="parallel-tools",
            conversation=conversation,
            expectation=Expectation(
                tool_name="get_weather",
                arguments_schema=CITY_ARGUMENTS,
                min_tool_calls=len(cities),
            ),
            description=(
                f"One request expecting {len(cities)} get_weather calls in the same response."
            ),
        ),
        builtin=True,
    )


def thinking_replay() -> ProbeScenario:
    """The seed's tool-result request with the assistant's reasoning replayed before its call,
    as agents do with thinking models (the seeds' third suspect)."""
    call = ToolCall(
        id="abc123xyz", name="get_weather", arguments={"city": "Tokyo"}, arguments_raw=""
    )
    thinking = ThinkingPart(
        text="The user wants the current weather in Tokyo. I should call get_weather."
    )
    conversation = Conversation(
        messages=(
            UserMessage.text("Weather for Tokyo?"),
            AssistantMessage(
                content=(thinking, TextPart("Getting it."), call), stop_reason="tool_use"
            ),
            UserMessage(content=(ToolResult(tool_call_id="abc123xyz", content='{"temp":22}'),)),
        ),
        tools=(WEATHER_TOOL,),
        settings=base.SEED_SETTINGS,
    )
    return ProbeScenario(
        scenario=Scenario(
            name="thinking-replay",
            conversation=conversation,
            expectation=Expectation(text_regex=r"\b22\b"),
            description=(
                "The tool-result request with the assistant's reasoning replayed before the "
                "tool result; passes when the answer mentions 22."
            ),
        ),
        builtin=True,
    )


def _wrap(factory: Callable[[], Scenario]) -> Callable[[], ProbeScenario]:
    return lambda: ProbeScenario(scenario=factory(), builtin=True)


_BUILTIN: dict[str, Callable[[], ProbeScenario]] = {
    **{name: _wrap(factory) for name, factory in base.BUILTIN.items()},
    "multi-step": multi_step,
    "parallel-tools": parallel_tools,
    "thinking-replay": thinking_replay,
}
BUILTIN_NAMES: tuple[str, ...] = tuple(_BUILTIN)


def builtin(name: str) -> ProbeScenario:
    """A built-in scenario by name; ``KeyError`` when there is none."""
    return _BUILTIN[name]()


def builtins() -> dict[str, ProbeScenario]:
    """Every built-in scenario, by name."""
    return {name: factory() for name, factory in _BUILTIN.items()}


# --- the agent loop, as the runner drives it --------------------------------------------------


async def drive_loop(
    call: Callable[[Conversation], Awaitable[Response]],
    scenario: ProbeScenario,
    origin: str | None,
) -> tuple[Verdict, Response | None, CallError | None, int, list[dict[str, Any]]]:
    """Run ``scenario``'s agent loop through ``call`` (one request per turn): each tool call
    gets its scripted result and the conversation grows, until a text answer comes.

    Returns the verdict, the last response (timings summed over the turns), the error that
    ended it, the requests spent and the route attempts of every turn.
    """
    loop = scenario.loop
    assert loop is not None
    conversation = scenario.conversation
    requests = 0
    calls_made = 0
    route_attempts: list[dict[str, Any]] = []
    first: Response | None = None
    total_s = 0.0
    max_gap: float | None = None

    def merge(resp: Response | None) -> Response | None:
        nonlocal max_gap
        if resp is None:
            return first
        t = resp.timings
        total_s_here = total_s + (t.total_s or 0.0)
        if t.max_gap_s is not None:
            max_gap = max(max_gap or 0.0, t.max_gap_s)
        if first is not None:
            t.headers_s = first.timings.headers_s
            t.first_event_s = first.timings.first_event_s
            t.first_content_s = first.timings.first_content_s or t.first_content_s
        t.total_s = total_s_here
        t.max_gap_s = max_gap
        return resp

    for _ in range(loop.max_turns):
        requests += 1
        try:
            response = await call(conversation)
        except CallError as exc:
            route_attempts.extend(attempts_of(exc.response))
            return classify(exc), merge(exc.response), exc, requests, route_attempts
        route_attempts.extend(attempts_of(response))
        if first is None:
            first = response
        if not response.tool_calls:
            progress = LoopProgress(calls=calls_made, min_calls=loop.min_calls, requests=requests)
            verdict = classify(response, scenario.expectation, conversation, progress)
            return verdict, merge(response), None, requests, route_attempts
        verdict = classify(response, Expectation(), conversation)
        if not verdict.passed:
            return verdict, merge(response), None, requests, route_attempts
        calls_made += len(response.tool_calls)
        turn_total = response.timings.total_s or 0.0
        if response.timings.max_gap_s is not None:
            max_gap = max(max_gap or 0.0, response.timings.max_gap_s)
        total_s += turn_total
        results = tuple(loop.script(c) for c in response.tool_calls)
        conversation = conversation.append(
            AssistantMessage.from_response(response, origin=origin),
            UserMessage(content=results),
        )
    exhausted = LoopProgress(calls=calls_made, requests=loop.max_turns, exhausted=True)
    verdict = classify(first or Response(), loop=exhausted)
    return verdict, merge(None), None, requests, route_attempts


def attempts_of(response: Response | None) -> list[dict[str, Any]]:
    """The route attempt records a response carries (none for a plain target)."""
    return list(response.attempts) if response is not None else []


# --- scenarios written in callproof.toml -------------------------------------------------------

_STRICT = ConfigDict(extra="forbid")


class ToolCallModel(BaseModel):
    model_config = _STRICT
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class MessageModel(BaseModel):
    """One message: ``role = "user" | "assistant" | "tool"``."""

    model_config = _STRICT
    role: Literal["user", "assistant", "tool"]
    content: str | dict[str, Any] | list[Any] = ""
    #: assistant: reasoning to replay before the text and calls.
    thinking: str | None = None
    #: assistant: tool calls made in this turn.
    tool_calls: list[ToolCallModel] = Field(default_factory=list)
    #: tool: the call this result answers.
    tool_call_id: str | None = None
    is_error: bool = False

    @model_validator(mode="after")
    def _tool_needs_id(self) -> MessageModel:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        return self


class ToolModel(BaseModel):
    model_config = _STRICT
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ExpectModel(BaseModel):
    model_config = _STRICT
    text_regex: str | None = None
    tool_name: str | None = None
    arguments_schema: dict[str, Any] | None = None
    stop_reasons: list[str] | None = None
    min_tool_calls: int = Field(default=0, ge=0)


class ScenarioModel(BaseModel):
    """``[scenarios.NAME]``: a conversation to send N times and what its answer must satisfy.
    ``tools`` entries are tables, or the name ``"get_weather"`` for the built-in weather tool."""

    model_config = _STRICT
    description: str = ""
    system: str | None = None
    messages: list[MessageModel] = Field(min_length=1)
    tools: list[ToolModel | Literal["get_weather"]] = Field(default_factory=list)
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = None
    tool_choice: Literal["auto", "any", "none"] | None = None
    expect: ExpectModel = Field(default_factory=ExpectModel)

    def to_probe(self, name: str) -> ProbeScenario:
        """The scenario this table describes (regexes checked by the caller)."""
        tools = tuple(
            WEATHER_TOOL
            if t == "get_weather"
            else ToolSpec(name=t.name, description=t.description, parameters=t.parameters)
            for t in self.tools
        )
        exp = self.expect
        expectation = Expectation(
            text_regex=exp.text_regex,
            tool_name=exp.tool_name,
            arguments_schema=exp.arguments_schema,
            stop_reasons=tuple(exp.stop_reasons) if exp.stop_reasons else None,
            min_tool_calls=exp.min_tool_calls,
        )
        conversation = Conversation(
            messages=_messages(self.messages),
            system=self.system,
            tools=tools,
            settings=Settings(
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                tool_choice=self.tool_choice,
            ),
        )
        return ProbeScenario(
            scenario=Scenario(
                name=name,
                conversation=conversation,
                expectation=expectation,
                description=self.description,
            ),
        )


def _messages(models: list[MessageModel]) -> tuple[Message, ...]:
    """Map TOML messages to the neutral conversation; consecutive ``tool`` results merge into
    one user turn, as every wire API expects them."""
    out: list[Message] = []
    for m in models:
        match m.role:
            case "user":
                text = m.content if isinstance(m.content, str) else json.dumps(m.content)
                out.append(UserMessage.text(text))
            case "assistant":
                parts: list[AssistantPart] = []
                if m.thinking:
                    parts.append(ThinkingPart(text=m.thinking))
                if isinstance(m.content, str) and m.content:
                    parts.append(TextPart(m.content))
                parts.extend(
                    ToolCall(
                        id=c.id,
                        name=c.name,
                        arguments=c.arguments,
                        arguments_raw=json.dumps(c.arguments),
                    )
                    for c in m.tool_calls
                )
                stop: StopReason = "tool_use" if m.tool_calls else "end_turn"
                out.append(AssistantMessage(content=tuple(parts), stop_reason=stop))
            case "tool":
                result = ToolResult(
                    tool_call_id=m.tool_call_id or "", content=m.content, is_error=m.is_error
                )
                last = out[-1] if out else None
                if isinstance(last, UserMessage) and all(
                    isinstance(p, ToolResult) for p in last.content
                ):
                    out[-1] = replace(last, content=(*last.content, result))
                else:
                    out.append(UserMessage(content=(result,)))
    return tuple(out)
