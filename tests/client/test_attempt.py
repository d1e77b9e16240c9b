"""Attempt records and the client's public surface."""

from __future__ import annotations

import httpx

import callproof.attempt
import callproof.capture
import callproof.client
import callproof.endpoints
import callproof.transforms
from callproof.attempt import attempt_from, run_attempt
from callproof.client import Client
from callproof.errors import StallNoEvents
from callproof.events import Response, Timings, ToolCall, Usage
from callproof.outcomes import Outcome
from callproof.scenarios import tool_call, tool_result
from tests.client.conftest import Paced, make_target
from tests.client.streams import chat_frames

RECORD_KEYS = {
    "outcome",
    "passed",
    "detail",
    "stop_reason",
    "raw_stop_reason",
    "text",
    "thinking",
    "tool_calls",
    "usage",
    "timings",
    "error",
    "request_id",
}


def test_record_of_a_passing_tool_call() -> None:
    resp = Response(
        tool_calls=[ToolCall.from_raw("c1", "get_weather", '{"city": "Tokyo"}')],
        stop_reason="tool_use",
        raw_stop_reason="tool_calls",
        usage=Usage(1, 2, 3),
        request_id="r1",
        timings=Timings(0.1, 0.2, 0.3, 0.4, 0.05),
    )
    attempt = attempt_from(resp, tool_call())
    record = attempt.to_record()
    assert set(record) == RECORD_KEYS
    assert record["outcome"] == "ok"
    assert record["passed"] is True
    assert record["tool_calls"] == [
        {"id": "c1", "name": "get_weather", "arguments": {"city": "Tokyo"}}
    ]
    assert record["usage"] == {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}
    assert record["timings"]["first_content_s"] == 0.3
    assert record["request_id"] == "r1"
    assert record["error"] is None


def test_record_of_a_failed_call() -> None:
    err = StallNoEvents("nothing", elapsed_s=1.0, limit_s=1.0, request_id="r2")
    err.response = Response(timings=Timings(headers_s=0.01, total_s=1.0))
    attempt = attempt_from(err, tool_result())
    record = attempt.to_record()
    assert attempt.outcome is Outcome.STALL_NO_EVENTS
    assert not attempt.passed
    assert record["error"] == {
        "kind": "StallNoEvents",
        "type": None,
        "message": "nothing",
        "status": None,
    }
    assert record["timings"]["headers_s"] == 0.01
    assert record["request_id"] == "r2"
    assert record["text"] == ""
    assert record["tool_calls"] == []


async def test_run_attempt_never_raises_for_call_failures() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            stream=Paced([(0, f) for f in chat_frames("22 degrees")[:2]]),
        )

    async with Client(transport=httpx.MockTransport(handler)) as client:
        attempt = await run_attempt(client, make_target("openai-completions"), tool_result())
    assert attempt.outcome is Outcome.INCOMPLETE_STREAM
    assert attempt.error is not None
    assert attempt.response is attempt.error.response


async def test_expectation_failed_when_text_misses_the_result() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=b"".join(chat_frames("I do not know")),
        )

    async with Client(transport=httpx.MockTransport(handler)) as client:
        attempt = await run_attempt(client, make_target("openai-completions"), tool_result())
    assert attempt.outcome is Outcome.EXPECTATION_FAILED


def test_all_matches_public_surface() -> None:
    for module in (
        callproof.client,
        callproof.attempt,
        callproof.capture,
        callproof.endpoints,
        callproof.transforms,
    ):
        public = {
            n
            for n, v in vars(module).items()
            if not n.startswith("_")
            and getattr(v, "__module__", None) == module.__name__
            and callable(v)
        }
        assert public <= set(module.__all__), module
        for name in module.__all__:
            assert hasattr(module, name), name


async def test_build_shows_the_exact_request() -> None:
    async with Client() as client:
        req = client.build(
            make_target("bedrock-converse-stream", "us.amazon.nova-micro-v1:0"),
            tool_result().conversation,
        )
    assert req.url.raw_path == b"/model/us.amazon.nova-micro-v1%3A0/converse-stream"
    assert b"Tokyo" in req.content
