"""A small OpenAI-compatible provider on loopback whose model name selects a behaviour the
emulator has no fault for (failoverbench works the same way):

* ``no-done``: a complete chat stream (finish_reason ``stop``, a usage chunk), then a clean
  close without ``data: [DONE]``;
* ``throttle``: 429 ``rate_limit_exceeded`` without ``Retry-After``;
* ``throttle-long``: the same with ``Retry-After: 30``;
* ``context-length``: 400 ``context_length_exceeded`` (OpenAI's own words);
* ``content-filter``: 400 ``content_filter`` (Azure OpenAI's content management policy);
* ``no-prefill``: 400 when the conversation ends with an assistant message (a prefill);
  answers normally otherwise.

Served by the real hypercorn server (:class:`callproof.http_server.HTTPServer`).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ANSWER = "The current temperature in Tokyo is 22°C."
CONTEXT_MESSAGE = (
    "This model's maximum context length is 8192 tokens. However, your messages resulted in "
    "9001 tokens. Please reduce the length of the messages."
)
FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management "
    "policy."
)
PREFILL_MESSAGE = "This model does not support assistant message prefill."


def _error(status: int, message: str, code: str) -> Response:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }
    return JSONResponse(body, status_code=status)


def _chunk(
    model: str, delta: dict[str, Any], finish: str | None = None, usage: Any = None
) -> bytes:
    choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
    obj: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": choices,
    }
    if usage:
        obj["usage"] = usage
    return f"data: {json.dumps(obj)}\n\n".encode()


async def _chat(request: Request) -> Response:
    body = await request.json()
    model = body.get("model", "")
    messages = body.get("messages") or []
    if model == "throttle":  # a 429 with no Retry-After
        return _error(429, "Rate limit reached for requests", "rate_limit_exceeded")
    if model == "throttle-long":  # a 429 asking for a wait longer than a gateway waits out
        response = _error(429, "Rate limit reached for requests", "rate_limit_exceeded")
        response.headers["retry-after"] = "30"
        return response
    if model == "context-length":
        return _error(400, CONTEXT_MESSAGE, "context_length_exceeded")
    if model == "content-filter":
        return _error(400, FILTER_MESSAGE, "content_filter")
    if model == "no-prefill" and messages and messages[-1].get("role") == "assistant":
        return _error(400, PREFILL_MESSAGE, "invalid_request_error")
    usage = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
    if not body.get("stream"):
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": ANSWER},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )

    async def events() -> Any:
        yield _chunk(model, {"role": "assistant", "content": ""})
        for word in ANSWER.split(" "):
            yield _chunk(model, {"content": word + " "})
        yield _chunk(model, {}, "stop")
        yield _chunk(model, {}, usage=usage)
        if model != "no-done":
            yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def fake_provider_app() -> Starlette:
    return Starlette(routes=[Route("/v1/chat/completions", _chat, methods=["POST"])])
