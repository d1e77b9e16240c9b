"""A plain boto3 tool-use agent tested against a bad provider (docs/testing.md)."""

import boto3
import botocore.config
import botocore.exceptions
import pytest

MODEL = "amazon.nova-pro-v1:0"
TOOLS = {
    "tools": [
        {
            "toolSpec": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "inputSchema": {
                    "json": {"type": "object", "properties": {"city": {"type": "string"}}}
                },
            }
        }
    ]
}


def run_agent(question: str) -> str:
    """The agent under test: ask, run the tools the model asks for, return its answer."""
    # its own resilience: a read timeout and three attempts per call
    config = botocore.config.Config(
        read_timeout=2, retries={"total_max_attempts": 3, "mode": "standard"}
    )
    client = boto3.client("bedrock-runtime", config=config)
    messages = [{"role": "user", "content": [{"text": question}]}]
    for _ in range(5):
        out = client.converse(modelId=MODEL, messages=messages, toolConfig=TOOLS)
        message = out["output"]["message"]
        messages.append(message)
        uses = [block["toolUse"] for block in message["content"] if "toolUse" in block]
        if not uses:
            return "".join(block.get("text", "") for block in message["content"])
        results = [
            {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "sunny"}]}}
            for use in uses
        ]
        messages.append({"role": "user", "content": results})
    raise RuntimeError("no answer after 5 turns")


def test_a_hang_after_the_tool_result_is_rescued_by_the_retry(callproof_env):
    callproof_env.schedule("hang_no_events", turn="tool_result")
    assert run_agent("What is the weather in Tokyo?")
    faults = [(r["turn"], r["fault"]) for r in callproof_env.requests]
    assert faults == [("first", None), ("tool_result", "hang_no_events"), ("tool_result", None)]


def test_a_throttle_that_outlasts_the_retries_surfaces(callproof_env):
    callproof_env.schedule("http_error:429", times=3)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        run_agent("What is the weather in Tokyo?")
    assert err.value.response["Error"]["Code"] == "ThrottlingException"
    assert len(callproof_env.requests) == 3


@pytest.mark.callproof_repeat(20, 0.8, gate="lower")
def test_the_agent_answers_when_a_tenth_of_calls_hang(callproof_env):
    callproof_env.fault_rate("hang_no_events", 0.1)
    assert run_agent("What is the weather in Tokyo?")
