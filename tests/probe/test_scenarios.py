"""Built-in and TOML scenarios: what is sent and what passes."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from callproof.conversation import AssistantMessage, ThinkingPart, ToolCall, ToolResult, UserMessage
from callproof.probe.scenarios import (
    BUILTIN_NAMES,
    LOOP_TOOLS,
    ScenarioModel,
    builtin,
    builtins,
)
from callproof.scenarios import tool_result


def test_builtin_names() -> None:
    assert BUILTIN_NAMES == (
        "tool-result",
        "tool-call",
        "multi-step",
        "parallel-tools",
        "thinking-replay",
    )
    assert set(builtins()) == set(BUILTIN_NAMES)
    with pytest.raises(KeyError):
        builtin("nope")


def test_tool_result_is_the_shared_seed_conversation() -> None:
    probe = builtin("tool-result")
    assert probe.conversation == tool_result().conversation
    assert probe.loop is None
    assert probe.min_tool_calls == 0


def test_thinking_replay_puts_reasoning_before_the_call() -> None:
    conv = builtin("thinking-replay").conversation
    assistant = conv.messages[1]
    assert isinstance(assistant, AssistantMessage)
    assert isinstance(assistant.content[0], ThinkingPart)
    assert isinstance(assistant.content[-1], ToolCall)
    last = conv.messages[-1]
    assert isinstance(last, UserMessage)
    assert isinstance(last.content[0], ToolResult)


def test_parallel_tools_needs_two_calls() -> None:
    assert builtin("parallel-tools").min_tool_calls == 2


def test_multi_step_script_and_final_check() -> None:
    probe = builtin("multi-step")
    loop = probe.loop
    assert loop is not None
    assert loop.min_calls == 3
    assert [t.name for t in probe.conversation.tools] == list(LOOP_TOOLS)
    call = ToolCall(id="c1", name="get_local_time", arguments={"city": "Tokyo"}, arguments_raw="")
    result = loop.script(call)
    assert result.tool_call_id == "c1"
    assert json.loads(str(result.content)) == {"time": "14:05"}
    unknown = loop.script(ToolCall(id="c2", name="rm_rf", arguments={}, arguments_raw=""))
    assert unknown.is_error
    regex = probe.expectation.text_regex
    assert regex is not None
    full = "It is 22°C, the time is 14:05 and 13960000 people live there."
    assert re.search(regex, full)
    assert not re.search(regex, "It is 22°C and the time is 14:05.")


def test_toml_scenario_maps_roles_and_merges_tool_results() -> None:
    model = ScenarioModel.model_validate(
        {
            "system": "be brief",
            "max_tokens": 50,
            "tools": ["get_weather", {"name": "get_time", "parameters": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "Weather and time for Tokyo?"},
                {
                    "role": "assistant",
                    "thinking": "two tools",
                    "tool_calls": [
                        {"id": "a", "name": "get_weather", "arguments": {"city": "Tokyo"}},
                        {"id": "b", "name": "get_time", "arguments": {}},
                    ],
                },
                {"role": "tool", "tool_call_id": "a", "content": {"temp": 22}},
                {"role": "tool", "tool_call_id": "b", "content": "14:05", "is_error": False},
            ],
            "expect": {"text_regex": "22", "stop_reasons": ["end_turn"], "min_tool_calls": 0},
        }
    )
    probe = model.to_probe("mine")
    conv = probe.conversation
    assert probe.name == "mine"
    assert conv.system == "be brief"
    assert conv.settings.max_tokens == 50
    assert [t.name for t in conv.tools] == ["get_weather", "get_time"]
    assert len(conv.messages) == 3  # the two tool results share one user turn
    assistant = conv.messages[1]
    assert isinstance(assistant, AssistantMessage)
    assert assistant.stop_reason == "tool_use"
    assert [c.id for c in assistant.tool_calls] == ["a", "b"]
    results = conv.messages[2]
    assert isinstance(results, UserMessage)
    assert [p.tool_call_id for p in results.content if isinstance(p, ToolResult)] == ["a", "b"]
    assert probe.expectation.stop_reasons == ("end_turn",)


def test_toml_scenario_rejects_tool_message_without_id() -> None:
    with pytest.raises(ValidationError, match="tool_call_id"):
        ScenarioModel.model_validate({"messages": [{"role": "tool", "content": "x"}]})
