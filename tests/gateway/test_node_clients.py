"""Unmodified Node clients through the gateway: the AWS SDK for JavaScript v3 with its default
request handler (HTTP/2 with prior knowledge on http://, ALPN h2 under TLS) and openai-node."""

from __future__ import annotations

import pytest

from tests.gateway.conftest import GatewayFactory, NodeRunner


@pytest.mark.parametrize("op", ["converse", "converse-stream"])
def test_aws_sdk_js_default_handler_tool_loop(
    make_gateway: GatewayFactory, node: NodeRunner, op: str
) -> None:
    gw = make_gateway()
    result = node("bedrock_loop.mjs", gw.url, {"op": op})
    assert result["error"] is None, result
    assert result["handler"] == "NodeHttp2Handler"
    turns = result["turns"]
    assert [t["stopReason"] for t in turns] == ["tool_use", "end_turn"]
    assert turns[0]["toolUses"][0]["input"] == {"city": "Tokyo"}
    assert "22" in turns[1]["text"]
    assert turns[0]["headers"]["x-callproof-served-by"] == "bedrock-kimi-k2.5"


def test_aws_sdk_js_over_tls_alpn_h2(make_gateway: GatewayFactory, node: NodeRunner) -> None:
    gw = make_gateway(tls=True)
    assert gw.ca_path is not None
    result = node("bedrock_loop.mjs", gw.url, {"op": "converse-stream"}, ca=gw.ca_path)
    assert result["error"] is None, result
    assert [t["stopReason"] for t in result["turns"]] == ["tool_use", "end_turn"]


def test_aws_sdk_js_falls_over_to_an_openai_upstream(
    make_gateway: GatewayFactory, node: NodeRunner
) -> None:
    gw = make_gateway()
    result = node("bedrock_loop.mjs", gw.url, {"op": "converse-stream", "fault": "hang_no_events"})
    assert result["error"] is None, result
    first = result["turns"][0]
    assert first["stopReason"] == "tool_use"
    assert first["headers"]["x-callproof-served-by"] == "openrouter-kimi-k2.5"
    assert first["headers"]["x-callproof-attempts"] == "2"


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "chat-stream"])
def test_openai_node_chat_tool_loop(
    make_gateway: GatewayFactory, node: NodeRunner, stream: bool
) -> None:
    gw = make_gateway()
    result = node("openai_loop.mjs", gw.url + "/v1", {"stream": stream})
    assert result["error"] is None, result
    turns = result["turns"]
    assert [t["finish"] for t in turns] == ["tool_calls", "stop"]
    assert "22" in turns[1]["text"]
    assert turns[0]["servedBy"] == "bedrock-kimi-k2.5"


def test_openai_node_responses(make_gateway: GatewayFactory, node: NodeRunner) -> None:
    gw = make_gateway()
    result = node("openai_loop.mjs", gw.url + "/v1", {"api": "responses"})
    assert result["error"] is None, result
    turn = result["turns"][0]
    assert turn["finish"] == "completed"
    assert turn["toolCalls"][0]["name"] == "get_weather"


def test_aws_sdk_js_paced_stream_survives_its_own_goaway(
    make_gateway: GatewayFactory, node: NodeRunner
) -> None:
    # The SDK closes its isolated HTTP/2 session (GOAWAY) when the response headers arrive;
    # a paced stream's frames come after that and must still arrive.
    from tests.gateway.test_catalogue import PACED

    gw = make_gateway(plan=PACED)
    result = node("bedrock_loop.mjs", gw.url, {"op": "converse-stream"})
    assert result["error"] is None, result
    assert [t["stopReason"] for t in result["turns"]] == ["tool_use", "end_turn"]
    assert result["turns"][1]["events"][-1] == "metadata"
    assert "22" in result["turns"][1]["text"]
