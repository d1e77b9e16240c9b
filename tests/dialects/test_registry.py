"""The dialect registry."""

from __future__ import annotations

import pytest

from callproof.dialects import API_NAMES, get_dialect
from callproof.dialects.base import Dialect
from callproof.errors import ConfigError
from callproof.scenarios import tool_result


@pytest.mark.parametrize("api", API_NAMES)
def test_every_api_has_a_dialect(api: str) -> None:
    dialect: Dialect = get_dialect(api)
    assert dialect.name == api
    assert dialect.streaming is (api != "bedrock-converse")
    request = dialect.encode_request("some-model", tool_result().conversation)
    assert request.method == "POST"
    assert request.body.startswith(b"{")
    decoder = dialect.stream_decoder()
    assert decoder.keepalives == 0
    assert decoder.raw_items() == []
    err = dialect.decode_error(500, {}, b"")
    assert err.status == 500


def test_unknown_api_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        get_dialect("openai-chat")
    for name in API_NAMES:
        assert name in str(info.value)


def test_bad_options_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bedrock-converse"):
        get_dialect("bedrock-converse", reasoning_replay="reasoning")


def test_options_reach_the_dialect() -> None:
    dialect = get_dialect("openai-completions", max_tokens_field="max_completion_tokens")
    body = dialect.encode_request("m", tool_result().conversation).body
    assert b'"max_completion_tokens":100' in body


def test_wire_body_is_a_request_the_real_sdks_take() -> None:
    from callproof.dialects import wire_body
    from tests.dialects.test_bedrock_request import botocore_errors

    conversation = tool_result().conversation
    bedrock = wire_body("bedrock-converse-stream", "moonshotai.kimi-k2.5", conversation)
    assert "modelId" not in bedrock  # Bedrock carries the model in the path
    assert botocore_errors("moonshotai.kimi-k2.5", bedrock) == ""
    assert bedrock["messages"][2]["content"][0]["toolResult"]["toolUseId"] == "abc123xyz"
    chat = wire_body("openai-completions", "moonshotai/kimi-k2.5", conversation)
    assert chat["model"] == "moonshotai/kimi-k2.5"
    assert chat["stream"] is True
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant", "tool"]
    assert wire_body("openai-completions", "m", conversation, stream=False)["stream"] is False
