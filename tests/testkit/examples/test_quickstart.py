"""Quick start: unmodified boto3 against the emulator, one scheduled fault, the request log."""

import boto3

MESSAGES = [{"role": "user", "content": [{"text": "What is the weather in Tokyo?"}]}]


def test_boto3_retries_two_503s_and_the_log_shows_them(callproof_env):
    callproof_env.schedule("http_error:503", times=2, model="amazon.nova-pro-v1:0")
    client = boto3.client("bedrock-runtime")  # endpoint and credentials from callproof_env
    answer = client.converse(modelId="amazon.nova-pro-v1:0", messages=MESSAGES)
    assert answer["stopReason"] == "end_turn"
    # boto3 retried silently; the emulator saw all three requests
    faults = [r["fault"] for r in callproof_env.requests]
    assert faults == ["http_error:503", "http_error:503", None]
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2
