"""``openai-responses`` with ``stream: false``: one JSON response object, decoded through the
same handlers as the stream, against the real emulator and hand-made edge cases."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from callproof.attempt import run_attempt
from callproof.client import Client
from callproof.dialects import get_dialect
from callproof.errors import IncompleteStreamError, StreamExceptionError
from callproof.events import StreamStop, TextDelta, ToolCallEnd
from callproof.scenarios import tool_call, tool_result
from callproof.targets import Timeouts
from tests.client.conftest import emulator_target


@pytest.mark.parametrize("scenario", [tool_result, tool_call])
async def test_non_streamed_responses_agree_with_the_stream(emulator: Any, scenario: Any) -> None:
    streamed = emulator_target(emulator, "openai-responses", "moonshotai/kimi-k2.5")
    single = dataclasses.replace(streamed, dialect_options={"stream": False})
    request = json.loads(Client().build(single, scenario().conversation).content)
    assert request["stream"] is False
    async with Client() as client:
        a = await run_attempt(client, streamed, scenario())
        b = await run_attempt(client, single, scenario())
    assert a.outcome == b.outcome == "ok"
    assert a.response is not None
    assert b.response is not None
    assert b.response.text == a.response.text
    assert [c.name for c in b.response.tool_calls] == [c.name for c in a.response.tool_calls]
    assert [c.arguments for c in b.response.tool_calls] == [
        c.arguments for c in a.response.tool_calls
    ]
    assert b.response.stop_reason == a.response.stop_reason
    assert b.response.usage is not None


def decode(doc: Any) -> list[Any]:
    decoder = get_dialect("openai-responses", stream=False).stream_decoder()
    raw = json.dumps(doc).encode()
    events = decoder.feed(raw[:7]) + decoder.feed(raw[7:])
    return events + decoder.close()


def test_a_body_with_text_a_call_and_incomplete_status() -> None:
    events = decode(
        {
            "id": "resp_1",
            "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
            "output": [
                {"type": "message", "content": [{"type": "output_text", "text": "It is 22"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
            ],
            "usage": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
        }
    )
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["It is 22"]
    assert [(e.id, e.arguments) for e in events if isinstance(e, ToolCallEnd)] == [
        ("c1", '{"a":1}')
    ]
    (stop,) = [e for e in events if isinstance(e, StreamStop)]
    assert (stop.stop_reason, stop.raw_stop_reason) == ("max_tokens", "max_output_tokens")


def test_failed_and_incomplete_bodies_are_errors() -> None:
    with pytest.raises(StreamExceptionError, match="overloaded"):
        decode({"status": "failed", "error": {"code": "server_error", "message": "overloaded"}})
    with pytest.raises(IncompleteStreamError, match="no status"):
        decode({"output": []})
    decoder = get_dialect("openai-responses", stream=False).stream_decoder()
    decoder.feed(b'{"status": "completed", "output": [')
    with pytest.raises(IncompleteStreamError, match="mid-document"):
        decoder.close()


async def test_non_streamed_chat_completions_through_the_option(emulator: Any) -> None:
    # no headers until the whole answer is generated: the first-event clock must allow for it
    slow_enough = Timeouts(first_event=10, idle=10, deadline=20)
    target = dataclasses.replace(
        emulator_target(
            emulator, "openai-completions", "moonshotai/kimi-k2.5", timeouts=slow_enough
        ),
        dialect_options={"stream": False},
    )
    assert json.loads(Client().build(target, tool_result().conversation).content)["stream"] is False
    async with Client() as client:
        attempt = await run_attempt(client, target, tool_result())
    assert attempt.outcome == "ok"
    assert attempt.response is not None
    assert "22" in attempt.response.text
