"""An openai-SDK tool-use agent tested against a bad provider (docs/testing.md)."""

import json

import openai
import pytest

MODEL = "moonshotai/kimi-k2.5"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def run_agent(question: str) -> str:
    """The agent under test: chat completions with tools, its own timeout and retries."""
    client = openai.OpenAI(timeout=2.0, max_retries=2)
    messages = [{"role": "user", "content": question}]
    for _ in range(5):
        reply = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
        message = reply.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            return message.content or ""
        for call in message.tool_calls:
            json.loads(call.function.arguments)  # a malformed call is a bug to surface
            messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    raise RuntimeError("no answer after 5 turns")


def test_a_hang_before_headers_is_rescued_by_the_sdk_retry(callproof_env):
    callproof_env.schedule("hang_before_headers", api="openai-completions")
    assert run_agent("What is the weather in Tokyo?")
    assert callproof_env.requests[0]["fault"] == "hang_before_headers"
    assert all(r["fault"] is None for r in callproof_env.requests[1:])


def test_a_throttle_that_outlasts_the_retries_surfaces(callproof_env):
    callproof_env.schedule("http_error:429", times=3)
    with pytest.raises(openai.RateLimitError):
        run_agent("What is the weather in Tokyo?")
    assert [r["fault"] for r in callproof_env.requests] == ["http_error:429"] * 3


@pytest.mark.callproof_repeat(20, 0.8, gate="lower")
def test_the_agent_answers_when_a_tenth_of_tool_turns_hang(callproof_env):
    callproof_env.fault_rate("hang_no_events", 0.1, turn="tool_result")
    assert run_agent("What is the weather in Tokyo?")
