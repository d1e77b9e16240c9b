"""Built-in scenarios shared by ``callproof call`` and ``callproof run``.

``tool-result`` is the seed's exact conversation: the request after a tool result, which is
where Kimi K2.5 on Bedrock hung 40% of the time. ``tool-call`` asks the same question with the
tool available. The probe adds more scenarios (see ``callproof.probe.scenarios``).
"""

from __future__ import annotations

from dataclasses import dataclass

from callproof.conversation import (
    AssistantMessage,
    Conversation,
    Settings,
    TextPart,
    ToolCall,
    ToolResult,
    ToolSpec,
    UserMessage,
)
from callproof.outcomes import Expectation

__all__ = ["BUILTIN", "CITY_ARGUMENTS", "WEATHER_TOOL", "Scenario", "tool_call", "tool_result"]

WEATHER_TOOL = ToolSpec(
    name="get_weather",
    description="Get the current weather for a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name"}},
        "required": ["city"],
    },
)

#: What a well-formed get_weather call carries: a string ``city``.
CITY_ARGUMENTS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}

#: The seeds' request setting.
SEED_SETTINGS = Settings(max_tokens=100)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A conversation to send and what its answer must satisfy."""

    name: str
    conversation: Conversation
    expectation: Expectation
    description: str = ""


def tool_result() -> Scenario:
    """The seed's conversation: question, tool call, tool result; the answer must say 22."""
    call = ToolCall(
        id="abc123xyz", name="get_weather", arguments={"city": "Tokyo"}, arguments_raw=""
    )
    conversation = Conversation(
        messages=(
            UserMessage.text("Weather for Tokyo?"),
            AssistantMessage(content=(TextPart("Getting it."), call), stop_reason="tool_use"),
            UserMessage(content=(ToolResult(tool_call_id="abc123xyz", content='{"temp":22}'),)),
        ),
        tools=(WEATHER_TOOL,),
        settings=SEED_SETTINGS,
    )
    return Scenario(
        name="tool-result",
        conversation=conversation,
        expectation=Expectation(text_regex=r"\b22\b"),
        description="The seed's request after a tool result; passes when the answer mentions 22.",
    )


def tool_call() -> Scenario:
    """The same question with the tool available; a well-formed get_weather call must come."""
    conversation = Conversation(
        messages=(UserMessage.text("Weather for Tokyo?"),),
        tools=(WEATHER_TOOL,),
        settings=SEED_SETTINGS,
    )
    return Scenario(
        name="tool-call",
        conversation=conversation,
        expectation=Expectation(
            tool_name="get_weather",
            arguments_schema=CITY_ARGUMENTS,
        ),
        description="The first turn; passes when a well-formed get_weather call comes back.",
    )


BUILTIN = {"tool-result": tool_result, "tool-call": tool_call}
