"""LiteLLM (1.80.17, pinned in the bench group) against the emulator, run with .venv-bench's
interpreter so the project's environment never holds it (``make interop`` installs it there).

What the real services make it do, from LiteLLM's source (litellm/llms/bedrock/chat/
converse_transformation.py, invoke_handler.py; exception_mapping_utils.py): a Converse
``toolUse`` becomes an OpenAI-style ``tool_calls`` with ``finish_reason: "tool_calls"``; a
modeled ``throttlingException`` in the stream is raised as ``litellm.RateLimitError``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from callproof.emulator import EmulatorServer

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv-bench" / "bin" / "python"
CASE = Path(__file__).parent / "litellm_case.py"

pytestmark = pytest.mark.skipif(
    not PYTHON.exists(), reason="LiteLLM lives in .venv-bench: `make interop` installs it"
)


CASES: dict[str, dict[str, Any]] = {
    "tool": {"case": "bedrock-tool"},
    "stream": {"case": "bedrock-stream"},
    "throttled": {"case": "bedrock-stream", "fault": "stream_exception:throttlingException"},
    "openai": {"case": "openai-stream"},
}


@pytest.fixture(scope="module")
def results(emulator: EmulatorServer, openai_emulator: EmulatorServer) -> dict[str, Any]:
    """Every case in one LiteLLM process (its import alone takes seconds)."""
    tokenizers = next(
        (ROOT / ".venv-bench" / "lib").glob(
            "python3*/site-packages/litellm/litellm_core_utils/tokenizers"
        )
    )
    env = {
        **os.environ,
        # offline: LiteLLM's bundled cost map and tiktoken files, never a download
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "TIKTOKEN_CACHE_DIR": str(tokenizers),
    }
    specs = [
        {**spec, "url": (openai_emulator if name == "openai" else emulator).url}
        for name, spec in CASES.items()
    ]
    done = subprocess.run(
        [str(PYTHON), "-W", "ignore", str(CASE), json.dumps(specs)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(CASES), done.stderr[-2000:]
    return {name: json.loads(line) for name, line in zip(CASES, lines, strict=True)}


def test_bedrock_tool_call(results: dict[str, Any]) -> None:
    result = results["tool"]
    assert result["error"] is None
    assert result["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Tokyo"}}]
    assert result["finish"] == "tool_calls"


def test_bedrock_stream(results: dict[str, Any]) -> None:
    result = results["stream"]
    assert result["error"] is None
    assert result["text"] == "Hello! How can I help you today?"
    assert result["finish"] == "stop"


def test_bedrock_mid_stream_throttling_is_a_rate_limit_error(results: dict[str, Any]) -> None:
    result = results["throttled"]
    assert result["error"]["type"] == "RateLimitError"
    assert result["text"]  # the events before the exception reached the caller


def test_openai_stream_with_usage(results: dict[str, Any]) -> None:
    result = results["openai"]
    assert result["error"] is None
    assert result["finish"] == "stop"
    assert result["usage"]["completion_tokens"] > 0
