"""The scripted models: deterministic, tool-aware answers."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from callproof.conversation import (
    AssistantMessage,
    Conversation,
    Settings,
    ToolCall,
    ToolResult,
    ToolSpec,
    UserMessage,
)
from callproof.emulator.models import ModelProfile, script_turn, split_arguments, split_tokens
from callproof.scenarios import WEATHER_TOOL, tool_call, tool_result

KIMI = ModelProfile(
    "moonshotai.kimi-k2.5", thinking=True, kimi_tool_ids=True, empty_text_blocks=True
)
NOVA = ModelProfile("amazon.nova-pro-v1:0")
TIME_TOOL = ToolSpec(
    name="get_time",
    description="Current local time in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def answer(
    conversation: Conversation, turn_calls: tuple[tuple[str, str, str], ...], results: list[Any]
) -> Conversation:
    calls = tuple(ToolCall.from_raw(i, n, a) for i, n, a in turn_calls)
    return conversation.append(
        AssistantMessage(content=calls, stop_reason="tool_use"),
        UserMessage(
            content=tuple(ToolResult(c.id, r) for c, r in zip(calls, results, strict=True))
        ),
    )


def test_first_turn_calls_the_tool_with_the_city_from_the_prompt() -> None:
    turn = script_turn(NOVA, tool_call().conversation, random.Random(0))
    assert turn.stop_reason == "tool_use"
    assert [(c.name, json.loads(c.arguments)) for c in turn.tool_calls] == [
        ("get_weather", {"city": "Tokyo"})
    ]
    assert turn.tool_calls[0].id.startswith("tooluse_")


def test_the_seed_conversation_is_answered_from_the_result() -> None:
    turn = script_turn(NOVA, tool_result().conversation, random.Random(0))
    assert turn.text == "The current temperature in Tokyo is 22°C."
    assert turn.stop_reason == "end_turn"
    assert turn.tool_calls == ()
    assert turn.usage.total_tokens == turn.input_tokens + turn.output_tokens


def test_kimi_ids_and_reasoning() -> None:
    turn = script_turn(KIMI, tool_call().conversation, random.Random(0))
    assert turn.tool_calls[0].id == "functions.get_weather:0"
    assert turn.reasoning.startswith(" ")
    assert turn.text == ""


def test_inline_think_puts_reasoning_in_the_text() -> None:
    profile = ModelProfile("k", thinking=True, inline_think=True)
    turn = script_turn(profile, tool_result().conversation, random.Random(0))
    assert turn.reasoning == ""
    assert turn.text.startswith(" <think> ")
    assert "</think>" in turn.text
    assert "22°C" in turn.text


def test_same_input_same_turn() -> None:
    a = script_turn(NOVA, tool_call().conversation, random.Random(7))
    b = script_turn(NOVA, tool_call().conversation, random.Random(7))
    assert a == b


def test_parallel_calls_then_an_answer_using_every_result() -> None:
    conversation = Conversation(
        messages=(UserMessage.text("What's the weather in Tokyo, Paris and New York?"),),
        tools=(WEATHER_TOOL,),
    )
    turn = script_turn(KIMI, conversation, random.Random(0))
    assert [json.loads(c.arguments)["city"] for c in turn.tool_calls] == [
        "Tokyo",
        "Paris",
        "New York",
    ]
    assert [c.id for c in turn.tool_calls] == [f"functions.get_weather:{i}" for i in range(3)]
    final = script_turn(
        KIMI,
        answer(conversation, turn.tool_calls, [{"temp": 22}, {"temp": 18}, '{"temperature": 25}']),
        random.Random(0),
    )
    assert final.text == (
        "The current temperature in Tokyo is 22°C. The current temperature in Paris is 18°C. "
        "The current temperature in New York is 25°C."
    )


def test_multi_step_calls_each_named_tool_in_turn() -> None:
    conversation = Conversation(
        messages=(UserMessage.text("What is the weather and the time in Tokyo?"),),
        tools=(TIME_TOOL, WEATHER_TOOL),
    )
    first = script_turn(NOVA, conversation, random.Random(0))
    assert [c.name for c in first.tool_calls] == ["get_weather"]
    step2 = answer(conversation, first.tool_calls, [{"temp": 22}])
    second = script_turn(NOVA, step2, random.Random(0))
    assert [c.name for c in second.tool_calls] == ["get_time"]
    assert json.loads(second.tool_calls[0].arguments) == {"city": "Tokyo"}
    final = script_turn(NOVA, answer(step2, second.tool_calls, ["09:30"]), random.Random(0))
    assert final.stop_reason == "end_turn"
    assert "22°C" in final.text
    assert "09:30" in final.text


def test_tool_errors_and_plain_questions() -> None:
    conversation = tool_call().conversation
    turn = script_turn(NOVA, conversation, random.Random(0))
    calls = tuple(ToolCall.from_raw(*c) for c in turn.tool_calls)
    failed = conversation.append(
        AssistantMessage(content=calls),
        UserMessage(content=(ToolResult(calls[0].id, "city not found", is_error=True),)),
    )
    assert "failed" in script_turn(NOVA, failed, random.Random(0)).text
    hello = Conversation(messages=(UserMessage.text("Hello there"),))
    assert script_turn(NOVA, hello, random.Random(0)).text.startswith("Hello")
    no_tools = Conversation(
        messages=(UserMessage.text("Weather for Tokyo?"),),
        tools=(WEATHER_TOOL,),
        settings=Settings(tool_choice="none"),
    )
    assert script_turn(NOVA, no_tools, random.Random(0)).tool_calls == ()


def test_limits_cut_the_text() -> None:
    conversation = tool_result().conversation
    short = Conversation(
        messages=conversation.messages, tools=conversation.tools, settings=Settings(max_tokens=3)
    )
    turn = script_turn(NOVA, short, random.Random(0))
    assert turn.stop_reason == "max_tokens"
    assert turn.text == "The current temperat"
    stop = Conversation(
        messages=conversation.messages,
        tools=conversation.tools,
        settings=Settings(stop_sequences=("Tokyo",)),
    )
    turn = script_turn(NOVA, stop, random.Random(0))
    assert turn.stop_reason == "stop_sequence"
    assert turn.text == "The current temperature in "


@given(st.text())
def test_split_tokens_joins_back(text: str) -> None:
    assert "".join(split_tokens(text)) == text


@given(st.text(), st.integers(min_value=1, max_value=20))
def test_split_arguments_joins_back(text: str, size: int) -> None:
    assert "".join(split_arguments(text, size)) == text


def test_the_tool_is_found_by_its_description_and_no_arg_tools_are_called_once() -> None:
    files = ToolSpec(name="glob_search", description="Find files whose path matches a pattern.")
    clock = ToolSpec(name="now", description="The current date and time.")
    conversation = Conversation(
        messages=(UserMessage.text("Which files match 'src/*.py'?"),), tools=(clock, files)
    )
    turn = script_turn(NOVA, conversation, random.Random(0))
    assert [(c.name, json.loads(c.arguments)) for c in turn.tool_calls] == [("glob_search", {})]
    asked = Conversation(
        messages=(UserMessage.text("What time is it in Tokyo and Paris?"),), tools=(clock,)
    )
    assert len(script_turn(NOVA, asked, random.Random(0)).tool_calls) == 1


def test_answer_is_bounded_like_a_real_models_output_limit() -> None:
    # 3,000 tool results and no maxTokens: the answer stops at the default output limit with
    # max_tokens, instead of growing with the request (a hostile request must not make the
    # emulator build a response ten times its size)
    n = 3000
    calls = tuple((f"id{i}", "get_weather", json.dumps({"city": f"City{i}"})) for i in range(n))
    big = answer(
        Conversation(messages=(UserMessage.text("Weather?"),), tools=(WEATHER_TOOL,)),
        calls,
        [{"temp": i} for i in range(n)],
    )
    turn = script_turn(NOVA, big, random.Random(0))
    assert turn.stop_reason == "max_tokens"
    assert len(split_tokens(turn.text)) == 4096
    # an explicit limit above the model's maximum is still capped
    capped = script_turn(
        NOVA,
        Conversation(messages=big.messages, tools=big.tools, settings=Settings(max_tokens=10**6)),
        random.Random(0),
    )
    assert len(split_tokens(capped.text)) <= 32768
    # an ordinary answer is untouched
    assert script_turn(NOVA, tool_result().conversation, random.Random(0)).stop_reason == "end_turn"
