"""The Bedrock front with unmodified boto3: converse and converse_stream tool-use loops, the
real validation errors, the not-found error, headers and Bedrock metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from callproof.gateway.config import load_serve_config
from callproof.gateway.server import GatewayServer
from tests.gateway.conftest import TOOLS, GatewayFactory, bedrock_client, read_evidence

QUESTION = [{"role": "user", "content": [{"text": "Weather for Tokyo?"}]}]


def _stream(client: Any, **kwargs: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """converse_stream collected: (response headers, events)."""
    response = client.converse_stream(**kwargs)
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    return headers, list(response["stream"])


def _assemble(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message, stop reason and metadata a boto3 agent builds from a stream."""
    blocks: dict[int, dict[str, Any]] = {}
    stop = None
    metadata = None
    for event in events:
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            tool = start["start"]["toolUse"]
            blocks[start["contentBlockIndex"]] = {"toolUse": {**tool, "input": ""}}
        elif "contentBlockDelta" in event:
            d = event["contentBlockDelta"]
            block = blocks.setdefault(d["contentBlockIndex"], {})
            delta = d["delta"]
            if "text" in delta:
                block["text"] = block.get("text", "") + delta["text"]
            elif "toolUse" in delta:
                block["toolUse"]["input"] += delta["toolUse"]["input"]
        elif "messageStop" in event:
            stop = event["messageStop"]["stopReason"]
        elif "metadata" in event:
            metadata = event["metadata"]
    content = []
    for index in sorted(blocks):
        block = blocks[index]
        if "toolUse" in block:
            raw = block["toolUse"]["input"]
            block["toolUse"]["input"] = json.loads(raw) if raw else {}
        if block.get("text", None) == "":
            continue
        if block:
            content.append(block)
    return {"content": content, "stop": stop, "metadata": metadata}


def _tool_result(tool_use: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [
            {
                "toolResult": {
                    "toolUseId": tool_use["toolUseId"],
                    "content": [{"json": {"temp": 22}}],
                    "status": "success",
                }
            }
        ],
    }


def test_boto3_converse_tool_loop_through_the_embedded_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no callproof.toml here: the embedded default
    with GatewayServer(load_serve_config(None)) as gw:
        client = bedrock_client(gw.url)
        first = client.converse(
            modelId="moonshotai.kimi-k2.5", messages=QUESTION, toolConfig={"tools": TOOLS}
        )
        assert first["stopReason"] == "tool_use"
        headers = first["ResponseMetadata"]["HTTPHeaders"]
        assert headers["x-callproof-served-by"] in ("bedrock-kimi-k2.5", "openrouter-kimi-k2.5")
        assert int(headers["x-callproof-attempts"]) >= 1
        assert headers["x-callproof-raw-stop-reason"] in ("tool_use", "tool_calls")
        tool = next(b["toolUse"] for b in first["output"]["message"]["content"] if "toolUse" in b)
        assert tool["input"] == {"city": "Tokyo"}
        messages = [*QUESTION, first["output"]["message"], _tool_result(tool)]
        second = client.converse(
            modelId="moonshotai.kimi-k2.5", messages=messages, toolConfig={"tools": TOOLS}
        )
        assert second["stopReason"] == "end_turn"
        text = "".join(b.get("text", "") for b in second["output"]["message"]["content"])
        assert "22" in text
        assert second["usage"]["inputTokens"] > 0
        assert second["metrics"]["latencyMs"] >= 0
        records = read_evidence(gw, 2)
        assert [r["scenario"] for r in records] == ["serve:converse", "serve:converse"]
        assert all(r["target"] == "route:kimi" for r in records)
        assert records[-1]["outcome"] == "ok"


def test_boto3_converse_stream_tool_loop(gateway: GatewayServer) -> None:
    client = bedrock_client(gateway.url)
    headers, events = _stream(
        client, modelId="moonshotai.kimi-k2.5", messages=QUESTION, toolConfig={"tools": TOOLS}
    )
    assert headers["x-callproof-served-by"] == "bedrock-kimi-k2.5"
    assert headers["x-callproof-attempts"] == "1"
    assert "messageStart" in events[0]
    turn = _assemble(events)
    assert turn["stop"] == "tool_use"
    tool = next(b["toolUse"] for b in turn["content"] if "toolUse" in b)
    assert tool["name"] == "get_weather"
    assert tool["input"] == {"city": "Tokyo"}
    assert turn["metadata"]["usage"]["totalTokens"] > 0
    assert "latencyMs" in turn["metadata"]["metrics"]
    messages = [*QUESTION, {"role": "assistant", "content": turn["content"]}, _tool_result(tool)]
    _, events = _stream(
        client, modelId="moonshotai.kimi-k2.5", messages=messages, toolConfig={"tools": TOOLS}
    )
    answer = _assemble(events)
    assert answer["stop"] == "end_turn"
    assert "22" in "".join(b.get("text", "") for b in answer["content"])


def test_unknown_model_is_bedrocks_resource_not_found(gateway: GatewayServer) -> None:
    client = bedrock_client(gateway.url)
    with pytest.raises(ClientError) as info:
        client.converse(modelId="no.such-model", messages=QUESTION)
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_validation_errors_are_the_real_ones(gateway: GatewayServer) -> None:
    client = bedrock_client(gateway.url)
    messages = [
        {"role": "user", "content": [{"text": "a"}]},
        {"role": "user", "content": [{"text": "b"}]},
    ]
    with pytest.raises(ClientError) as info:
        client.converse(modelId="moonshotai.kimi-k2.5", messages=messages)
    error = info.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert "must alternate between user and assistant" in error["Message"]


def test_a_target_name_is_served_without_a_mapping(gateway: GatewayServer) -> None:
    client = bedrock_client(gateway.url)
    response = client.converse(modelId="openrouter-kimi-k2.5", messages=QUESTION)
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-callproof-served-by"] == "openrouter-kimi-k2.5"
    assert response["stopReason"] == "end_turn"


def test_openai_upstream_streams_back_as_eventstream(make_gateway: GatewayFactory) -> None:
    gw = make_gateway()
    client = bedrock_client(gw.url, fault="http_error:500")  # the Bedrock primary fails
    headers, events = _stream(
        client, modelId="moonshotai.kimi-k2.5", messages=QUESTION, toolConfig={"tools": TOOLS}
    )
    assert headers["x-callproof-served-by"] == "openrouter-kimi-k2.5"
    assert headers["x-callproof-attempts"] == "2"
    turn = _assemble(events)
    assert turn["stop"] == "tool_use"
    tool = next(b["toolUse"] for b in turn["content"] if "toolUse" in b)
    assert tool["input"] == {"city": "Tokyo"}
    reasoning = [
        e for e in events if "reasoningContent" in e.get("contentBlockDelta", {}).get("delta", {})
    ]
    assert reasoning, "reasoning comes back as Bedrock reasoningContent"
    assert turn["metadata"]["usage"]["outputTokens"] > 0
