"""The client names a JSON body where an event stream was expected (issue 9, "a client-side
miss"): ``protocol_error`` with the message "a JSON body where an event stream was expected"
and the body kept, instead of ``incomplete_stream`` with "0 data events".

The answers are the ones a proxy that ignores ``stream`` sends: a complete ``chat.completion``
(OpenAI API reference, the chat completion object) and a Converse body (Bedrock's Converse
response, as in tests/fixtures/recorded) with ``Content-Type: application/json``.
"""

from __future__ import annotations

import json

import httpx
import pytest

from callproof.attempt import run_attempt
from callproof.client import Client
from callproof.outcomes import Outcome
from callproof.scenarios import tool_result
from tests.client.conftest import make_target

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "test-model",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "It is 22 degrees."},
            "finish_reason": "stop",
        }
    ],
}
CONVERSE = {
    "output": {"message": {"role": "assistant", "content": [{"text": "It is 22 degrees."}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
}


@pytest.mark.parametrize(
    ("api", "body"),
    [("openai-completions", COMPLETION), ("bedrock-converse-stream", CONVERSE)],
)
async def test_json_where_a_stream_was_expected_is_named(api: str, body: dict[str, object]) -> None:
    payload = json.dumps(body).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "application/json"}, content=payload)

    async with Client(transport=httpx.MockTransport(handler)) as client:
        attempt = await run_attempt(client, make_target(api), tool_result())
    assert attempt.outcome is Outcome.PROTOCOL_ERROR
    assert attempt.error is not None
    assert attempt.error.message.startswith("a JSON body where an event stream was expected")
    assert "It is 22 degrees." in attempt.error.message  # the body is kept


async def test_a_json_answer_to_a_json_request_is_fine() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=CONVERSE)

    async with Client(transport=httpx.MockTransport(handler)) as client:
        attempt = await run_attempt(client, make_target("bedrock-converse"), tool_result())
    assert attempt.outcome is not Outcome.PROTOCOL_ERROR
    assert attempt.response.text == "It is 22 degrees."
