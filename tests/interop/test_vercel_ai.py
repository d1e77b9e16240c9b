"""The Vercel AI SDK v5 (``ai`` 5.0.277, @ai-sdk/amazon-bedrock 3.0.137, @ai-sdk/openai 2.0.130;
locked in tests/node) running its own tool loop against the emulator.

What the real services make it do: on Bedrock, step 1 ends in ``tool_use``, the SDK runs the
tool and sends the result as a ``toolResult`` block, step 2 answers in text (Converse API
reference). On OpenAI's Responses API with a reasoning model and ``store`` on (the default),
step 2 sends the reasoning and the call back as ``item_reference`` items (the provider's
source, openai-responses-language-model.ts / convert-to-openai-responses-input.ts), which
OpenAI resolves; issue 9 G2 is that the emulator answered them with a 400.
"""

from __future__ import annotations

from callproof.emulator import EmulatorServer

from .conftest import NodeRunner


def test_bedrock_tool_loop(node: NodeRunner, emulator: EmulatorServer) -> None:
    spec = {"provider": "bedrock", "model": "amazon.nova-pro-v1:0"}
    result = node("vercel.mjs", emulator.url, spec)
    assert result["error"] is None
    assert result["steps"] == 2
    assert result["toolCalls"] == [{"name": "get_weather", "input": {"city": "Tokyo"}}]
    assert "22" in result["text"]
    assert result["finishReason"] == "stop"
    step2 = result["bodies"][1]["messages"]
    assert any("toolResult" in block for block in step2[-1]["content"])


def test_openai_responses_two_step_loop_with_a_reasoning_model(
    node: NodeRunner, openai_emulator: EmulatorServer
) -> None:
    spec = {"provider": "openai-responses", "model": "o4-mini"}
    result = node("vercel.mjs", openai_emulator.url, spec)
    assert result["error"] is None
    assert result["steps"] == 2
    assert "22" in result["text"]
    assert result["usage"]["reasoningTokens"] > 0
    step2 = result["bodies"][1]["input"]
    references = [item for item in step2 if item.get("type") == "item_reference"]
    assert [r["id"][:3] for r in references] == ["rs_", "fc_"]  # resolved, not refused
