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


def test_the_api_list_is_the_dialect_classes_names() -> None:
    from typing import get_args

    from callproof.dialects import DIALECTS
    from callproof.dialects.base import ApiName
    from callproof.targets import Api

    assert tuple(DIALECTS) == API_NAMES
    assert set(get_args(ApiName)) == set(API_NAMES)
    assert Api is ApiName
    for name, cls in DIALECTS.items():
        assert cls.name == name


def test_each_dialect_declares_its_wire_facts() -> None:
    from callproof.dialects import api_family, base_path, tool_id_rule

    assert {api: api_family(api) for api in API_NAMES} == {
        "bedrock-converse-stream": "bedrock",
        "bedrock-converse": "bedrock",
        "openai-completions": "openai",
        "openai-responses": "openai",
    }
    assert [base_path(api) for api in API_NAMES] == ["", "", "/v1", "/v1"]
    assert tool_id_rule("bedrock-converse").pattern.fullmatch("tooluse_a.b:c-1")
    assert not tool_id_rule("openai-completions").pattern.fullmatch("tooluse_a.b:c-1")
    assert tool_id_rule("openai-responses").max_length == 40
    assert tool_id_rule("bedrock-converse-stream").max_length == 64
    with pytest.raises(ConfigError, match="unknown api"):
        api_family("openai-chat")


def test_the_transforms_tool_id_rules_come_from_the_dialects() -> None:
    from callproof.dialects import DIALECTS
    from callproof.transforms import TOOL_ID_RULES

    assert {name: cls.tool_ids for name, cls in DIALECTS.items()} == TOOL_ID_RULES


@pytest.mark.parametrize(
    ("path", "api"),
    [
        ("/v1/chat/completions", "openai-completions"),
        ("/v1/responses", "openai-responses"),
        ("/model/moonshotai.kimi-k2.5/converse-stream", "bedrock-converse-stream"),
        ("/model/amazon.nova-pro-v1%3A0/converse", "bedrock-converse"),
        ("/v1/models", None),
        ("/converse", None),
    ],
)
def test_a_request_path_names_its_api(path: str, api: str | None) -> None:
    from callproof.dialects import api_of_path

    assert api_of_path(path) == api


@pytest.mark.parametrize("api", API_NAMES)
def test_each_dialect_posts_to_its_own_request_path(api: str) -> None:
    from callproof.dialects import api_of_path

    request = get_dialect(api).encode_request("some/model:1", tool_result().conversation)
    assert api_of_path(request.path) == api
