"""Conversation transforms: each one logged, none silent."""

from __future__ import annotations

import logging
import re

import pytest

from callproof.conversation import (
    AssistantMessage,
    Conversation,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolResult,
    UserMessage,
)
from callproof.transforms import TOOL_ID_RULES, TransformPolicy, prepare, valid_id
from tests.client.conftest import make_target

BEDROCK = make_target("bedrock-converse-stream", "moonshotai.kimi-k2.5")
OPENAI = make_target("openai-completions", "moonshotai/kimi-k2.5")


def call(id_: str) -> ToolCall:
    return ToolCall(id=id_, name="get_weather", arguments={"city": "Tokyo"}, arguments_raw="")


def conv(*messages: object) -> Conversation:
    return Conversation(messages=tuple(messages))  # type: ignore[arg-type]


def test_valid_ids_are_untouched_and_nothing_changes() -> None:
    c = conv(
        UserMessage.text("q"),
        AssistantMessage((call("functions.get_weather:0"),)),
        UserMessage((ToolResult("functions.get_weather:0", "22"),)),
    )
    assert prepare(c, BEDROCK) is c


def test_tool_ids_rewritten_stably_for_openai(caplog: pytest.LogCaptureFixture) -> None:
    kimi = "functions.get_weather:0"
    c = conv(
        UserMessage.text("q"),
        AssistantMessage((call(kimi),)),
        UserMessage((ToolResult(kimi, "22"),)),
    )
    with caplog.at_level(logging.DEBUG, logger="callproof.transforms"):
        out = prepare(c, OPENAI)
    new_id = out.messages[1].content[0].id  # type: ignore[union-attr]
    assert new_id != kimi
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", new_id)
    assert out.messages[2].content[0].tool_call_id == new_id  # type: ignore[union-attr]
    assert prepare(c, OPENAI) == out  # stable
    assert "rewritten" in caplog.text


def test_long_and_colliding_ids() -> None:
    rule = TOOL_ID_RULES["bedrock-converse"]
    long_id = "x" * 100
    assert len(valid_id(long_id, rule)) <= 64
    assert valid_id("a b", rule) != valid_id("a/b", rule)
    assert re.fullmatch(r"[a-zA-Z0-9_.:-]{1,64}", valid_id("bad id!", rule))
    assert re.fullmatch(r"[a-zA-Z0-9_.:-]{1,64}", valid_id("", rule))


def test_empty_text_dropped_and_empty_message_dropped(caplog: pytest.LogCaptureFixture) -> None:
    c = conv(
        UserMessage.text("q"),
        AssistantMessage((TextPart(""), call("t1"), TextPart("  "))),
        UserMessage((ToolResult("t1", "22"), TextPart(""))),
        AssistantMessage((TextPart(""),)),
        UserMessage.text("again"),
    )
    with caplog.at_level(logging.DEBUG, logger="callproof.transforms"):
        out = prepare(c, BEDROCK)
    assert out.messages[1].content == (call("t1"),)
    assert out.messages[2].content == (ToolResult("t1", "22"), TextPart("again"))  # merged
    assert len(out.messages) == 3
    assert "empty text" in caplog.text
    assert "merged" in caplog.text


def test_consecutive_assistant_turns_merged() -> None:
    c = conv(
        UserMessage.text("q"),
        AssistantMessage((TextPart("a"),)),
        AssistantMessage((TextPart("b"),), stop_reason="end_turn"),
    )
    out = prepare(c, BEDROCK)
    assert len(out.messages) == 2
    assert out.messages[1].content == (TextPart("a"), TextPart("b"))
    assert out.messages[1].stop_reason == "end_turn"  # type: ignore[union-attr]


def test_missing_tool_result_gets_synthetic_error(caplog: pytest.LogCaptureFixture) -> None:
    c = conv(
        UserMessage.text("q"),
        AssistantMessage((call("t1"), call("t2"))),
        UserMessage((ToolResult("t1", "22"),)),
        AssistantMessage((call("t3"),)),
    )
    with caplog.at_level(logging.DEBUG, logger="callproof.transforms"):
        out = prepare(c, BEDROCK)
    results = [p for p in out.messages[2].content if isinstance(p, ToolResult)]
    assert [r.tool_call_id for r in results] == ["t1", "t2"]
    assert results[1].is_error
    last = out.messages[-1]
    assert isinstance(last, UserMessage)
    first = last.content[0]
    assert isinstance(first, ToolResult)
    assert first.is_error
    assert "synthetic" in caplog.text


def test_signed_reasoning_only_to_its_signer(caplog: pytest.LogCaptureFixture) -> None:
    signed = ThinkingPart(
        "think", signature="sig", origin="bedrock-converse-stream:anthropic.claude"
    )
    c = conv(
        UserMessage.text("q"), AssistantMessage((signed, TextPart("a"))), UserMessage.text("more")
    )
    claude = make_target("bedrock-converse", "anthropic.claude")
    assert prepare(c, claude).messages[1].content[0] == signed  # same model, other flavour: kept
    with caplog.at_level(logging.DEBUG, logger="callproof.transforms"):
        dropped = prepare(c, BEDROCK)
    assert dropped.messages[1].content == (TextPart("a"),)
    assert "dropped reasoning" in caplog.text
    as_text = prepare(c, BEDROCK, TransformPolicy(foreign_reasoning="text"))
    assert as_text.messages[1].content[0] == TextPart("<thinking>\nthink\n</thinking>")


def test_redacted_foreign_reasoning_always_dropped() -> None:
    red = ThinkingPart(redacted=b"\x00\x01", origin="bedrock-converse-stream:anthropic.claude")
    c = conv(UserMessage.text("q"), AssistantMessage((red, TextPart("a"))), UserMessage.text("m"))
    out = prepare(c, OPENAI, TransformPolicy(foreign_reasoning="text"))
    assert out.messages[1].content == (TextPart("a"),)


def test_unsigned_reasoning_without_origin_is_kept() -> None:
    plain = ThinkingPart("hmm")
    c = conv(UserMessage.text("q"), AssistantMessage((plain, TextPart("a"))), UserMessage.text("m"))
    assert prepare(c, OPENAI).messages[1].content[0] == plain


def test_failed_turn_policy(caplog: pytest.LogCaptureFixture) -> None:
    failed = AssistantMessage(
        (TextPart("partial"), call("t9")), stop_reason="malformed_model_output"
    )
    c = conv(UserMessage.text("q"), failed, UserMessage((ToolResult("t9", "x"), TextPart("go on"))))
    with caplog.at_level(logging.DEBUG, logger="callproof.transforms"):
        kept = prepare(c, BEDROCK)
    assert kept.messages[1] == failed
    assert "kept failed" in caplog.text
    dropped = prepare(c, BEDROCK, TransformPolicy(failed_turns="drop"))
    assert len(dropped.messages) == 1
    assert dropped.messages[0].content == (TextPart("q"), TextPart("go on"))


def test_disabled_policy_is_identity() -> None:
    c = conv(UserMessage.text(""), UserMessage.text("x"))
    assert prepare(c, BEDROCK, TransformPolicy(enabled=False)) is c
