"""A strands-agents agent (its BedrockModel, unmodified) tested against a bad provider."""

import botocore.config
import pytest
from strands import Agent, tool
from strands.models import BedrockModel

MODEL = "amazon.nova-pro-v1:0"


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def make_agent() -> Agent:
    # the agent's own resilience: botocore's read timeout and retries under BedrockModel
    config = botocore.config.Config(
        read_timeout=2, retries={"total_max_attempts": 3, "mode": "standard"}
    )
    model = BedrockModel(model_id=MODEL, boto_client_config=config)
    return Agent(model=model, tools=[get_weather], callback_handler=None)


def test_a_hang_before_headers_is_rescued_by_the_retry(callproof_env):
    callproof_env.schedule("hang_before_headers", api="bedrock-converse-stream")
    result = make_agent()("What is the weather in Tokyo?")
    assert str(result)
    assert callproof_env.requests[0]["fault"] == "hang_before_headers"


def test_a_throttle_in_the_stream_is_seen_and_retried(callproof_env):
    # strands retries a throttle itself with a backoff from 4 s (so one, not twenty, here):
    # the request log shows the throttle the agent absorbed
    callproof_env.schedule("stream_exception:throttlingException")
    assert str(make_agent()("What is the weather in Tokyo?"))
    faults = [r["fault"] for r in callproof_env.requests]
    assert faults[0] == "stream_exception:throttlingException"
    assert faults[1:]
    assert all(f is None for f in faults[1:])


@pytest.mark.callproof_repeat(10, 0.6, gate="lower")
def test_the_agent_answers_when_a_tenth_of_calls_hang(callproof_env):
    callproof_env.fault_rate("hang_before_headers", 0.1)
    assert str(make_agent()("What is the weather in Tokyo?"))
