"""Bedrock Runtime routes: ``POST /model/{modelId}/converse`` and ``/converse-stream``.

The model id is percent-decoded from the *raw* path, so ARNs with ``%2F`` work. Each request:
auth -> bounded body -> JSON -> model lookup (unknown ids get the real 400 "The provided model
identifier is invalid.") -> validation into a :class:`Conversation` -> fault (forced by
``x-callproof-fault`` or drawn from the plan) -> scripted turn -> wire bytes with the fault's
timing. Errors are JSON ``{"message": ...}`` with ``x-amzn-ErrorType``; every response carries
``x-amzn-requestid``.
"""

from __future__ import annotations

import json
import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from callproof.emulator.bedrock_validation import BedrockError
from callproof.emulator.body import BodyTimeout, BodyTooLarge, read_body
from callproof.emulator.plans import (
    INVALID_MODEL,
    REASONING_REPLAY_REJECTED,
    Answer,
    BedrockPlanner,
    split_path,
)
from callproof.emulator.streaming import StepResponse

__all__ = [
    "INVALID_MODEL",
    "REASONING_REPLAY_REJECTED",
    "bedrock_error_response",
    "bedrock_routes",
    "handle",
    "planner_of",
]

log = logging.getLogger(__name__)


def bedrock_error_response(error: BedrockError, request_id: str) -> Response:
    """The JSON error response the real service sends."""
    headers = {
        "x-amzn-requestid": request_id,
        "x-amzn-errortype": f"{error.error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        **error.headers,
    }
    body = json.dumps({"message": error.message, **error.fields}).encode()
    return Response(body, status_code=error.status, headers=headers, media_type="application/json")


def planner_of(request: Request) -> BedrockPlanner:
    """The app's :class:`BedrockPlanner` (made on first use for apps built by hand)."""
    app_state = request.app.state
    planner: BedrockPlanner | None = getattr(app_state, "bedrock_planner", None)
    if planner is None:
        planner = BedrockPlanner(app_state.emulator, app_state.bedrock_auth)
        app_state.bedrock_planner = planner
    return planner


async def handle(request: Request) -> Response | StepResponse:
    """One Bedrock request (any ``/model/...`` path and method), answered."""
    planner = planner_of(request)
    state = planner.state
    request_id = state.fresh_request_id()
    try:
        answer = await _serve(request, planner, request_id)
    except BedrockError as error:
        return bedrock_error_response(error, request_id)
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is listening any more
    except Exception:  # a bug must answer 500, never kill the worker
        log.exception("emulator bug serving %s", request.url.path)
        return bedrock_error_response(planner.internal_error(), request_id)
    return StepResponse(
        answer.steps,
        status=answer.status,
        headers=answer.headers,
        closing=state.closing,
        on_close=answer.on_close,
    )


async def _serve(request: Request, planner: BedrockPlanner, request_id: str) -> Answer:
    state = planner.state
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    parts = split_path(raw_path)
    if parts is None or request.method != "POST":
        raise BedrockError(404, "UnknownOperationException", "Unknown operation")
    model_id, operation = parts
    try:
        body = await read_body(request, state.limits)
    except BodyTooLarge:
        raise BedrockError(
            400, "ValidationException", "Input is too long for requested model."
        ) from None
    except BodyTimeout:
        raise BedrockError(
            408,
            "RequestTimeoutException",
            f"The request body was not received within {state.limits.body_timeout_s:g} s.",
        ) from None
    return planner.answer(
        method=request.method,
        raw_path=raw_path,
        model_id=model_id,
        operation=operation,
        scheme=request.url.scheme,
        headers=request.headers,
        body=body,
        request_id=request_id,
    )


def bedrock_routes() -> list[Route]:
    """The Bedrock Runtime routes (any method, so wrong methods get Bedrock's 404)."""
    return [
        Route(
            "/model/{rest:path}",
            handle,
            methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"],
        )
    ]
