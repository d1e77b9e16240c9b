"""Loaders for the real recorded traffic in tests/fixtures/recorded (origins: SOURCES.md there)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import yaml

RECORDED = Path(__file__).parent / "fixtures" / "recorded"

#: Cassettes whose responses are binary Bedrock eventstreams.
BEDROCK_STREAM_CASSETTES = (
    "pa_test_bedrock_model_iter_stream.yaml",
    "pa_test_bedrock_model_stream.yaml",
    "pa_test_stream_cancel.yaml",
    "pa_test_bedrock_model_thinking_part_stream.yaml",
    "pa_test_bedrock_model_thinking_part_redacted_stream.yaml",
    "pa_test_bedrock_model_stream_empty_text_delta.yaml",
    "pa_test_bedrock_model_code_execution_tool_stream.yaml",
)


def cassette(name: str) -> list[dict[str, Any]]:
    """The interactions of a VCR cassette."""
    data = yaml.safe_load((RECORDED / name).read_text())
    interactions: list[dict[str, Any]] = data["interactions"]
    return interactions


def binary_bodies(name: str) -> list[bytes]:
    """Every binary response body in a cassette (eventstreams)."""
    out = []
    for interaction in cassette(name):
        body = interaction["response"]["body"].get("string")
        if isinstance(body, bytes):
            out.append(body)
    return out


def live_sonnet_stream() -> tuple[bytes, dict[str, Any]]:
    """The raw ConverseStream body of a live call, and what the recorder observed."""
    data = json.loads((RECORDED / "vercel_live_converse_stream_sonnet46.json").read_text())
    return base64.b64decode(data["response"]["bodyBase64"]), data["observed"]


def chunks(name: str) -> list[dict[str, Any]]:
    """A vercel ``.chunks.txt`` file: one decoded Bedrock stream event per line."""
    lines = (RECORDED / name).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def text_bodies(name: str) -> list[str]:
    """Every text response body in a cassette (SSE streams or JSON)."""
    out = []
    for interaction in cassette(name):
        body = interaction["response"]["body"]
        if isinstance(body.get("string"), str) and body["string"]:
            out.append(body["string"])
        elif "parsed_body" in interaction["response"]:
            out.append(json.dumps(interaction["response"]["parsed_body"]))
    return out
