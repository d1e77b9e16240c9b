"""openai-node (``openai`` 6.30.1, locked in tests/node) streaming chat completions and Responses
from the emulator.

What the real services make it do, from the SDK's source (src/core/streaming.ts: an SSE
``data: {"error": ...}`` event is thrown as APIError; ``[DONE]`` ends the iterator) and the
providers' docs: OpenAI sends usage only with ``stream_options.include_usage`` and an
``x-request-id`` on every answer; OpenRouter sends usage in the last chunk always
(openrouter.ai/docs, usage accounting); a 429 is thrown as RateLimitError.
"""

from __future__ import annotations

from callproof.emulator import EmulatorServer

from .conftest import NodeRunner


def test_chat_stream_openai_flavour(node: NodeRunner, openai_emulator: EmulatorServer) -> None:
    result = node("openai.mjs", openai_emulator.url, {"api": "chat", "model": "gpt-4o"})
    assert result["error"] is None
    assert result["finish"] == "stop"
    assert result["text"]
    assert result["usage"] is None  # not asked for: OpenAI sends none
    assert result["requestId"].startswith("req_")


def test_chat_stream_usage_when_asked(node: NodeRunner, openai_emulator: EmulatorServer) -> None:
    spec = {"api": "chat", "model": "gpt-4o", "includeUsage": True}
    result = node("openai.mjs", openai_emulator.url, spec)
    assert result["usage"]["completion_tokens"] > 0


def test_chat_stream_openrouter_usage_always(
    node: NodeRunner, openai_emulator: EmulatorServer
) -> None:
    spec = {"api": "chat", "model": "moonshotai/kimi-k2.5"}
    result = node("openai.mjs", openai_emulator.url, spec)
    assert result["error"] is None
    assert result["usage"]["total_tokens"] > 0


def test_chat_stream_mid_stream_error_is_thrown(
    node: NodeRunner, openai_emulator: EmulatorServer
) -> None:
    spec = {"api": "chat", "model": "gpt-4o", "fault": "stream_exception:internalServerException"}
    result = node("openai.mjs", openai_emulator.url, spec)
    assert result["error"] is not None
    assert "Internal server error" in result["error"]["message"]
    assert result["finish"] is None


def test_chat_429_is_a_rate_limit_error(node: NodeRunner, openai_emulator: EmulatorServer) -> None:
    spec = {"api": "chat", "model": "gpt-4o", "fault": "http_error:429"}
    result = node("openai.mjs", openai_emulator.url, spec)
    assert result["error"]["name"] == "RateLimitError"
    assert result["error"]["status"] == 429


def test_responses_stream(node: NodeRunner, openai_emulator: EmulatorServer) -> None:
    result = node("openai.mjs", openai_emulator.url, {"api": "responses", "model": "gpt-4o"})
    assert result["error"] is None
    assert result["events"][:2] == ["response.created", "response.in_progress"]
    assert result["events"][-1] == "response.completed"
    assert result["finish"] == "completed"
    assert result["text"]
    assert result["usage"]["output_tokens"] > 0


def test_responses_stream_failure_event(node: NodeRunner, openai_emulator: EmulatorServer) -> None:
    # response.failed is an event, not an exception, in openai-node's Responses stream
    spec = {
        "api": "responses",
        "model": "gpt-4o",
        "fault": "stream_exception:internalServerException",
    }
    result = node("openai.mjs", openai_emulator.url, spec)
    assert result["events"][-1] == "response.failed"
    assert result["finish"] == "failed"
