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
from dataclasses import replace
from urllib.parse import unquote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from callproof.emulator.bedrock_auth import BedrockAuth
from callproof.emulator.bedrock_validation import (
    MALFORMED,
    BedrockError,
    decode_request,
    parse_body,
)
from callproof.emulator.bedrock_wire import (
    EVENTSTREAM,
    HTTP_ERRORS,
    converse_body,
    converse_steps,
    http_error,
    planned_delays,
    stream_events,
    stream_exception_as_http,
    stream_steps,
)
from callproof.emulator.body import BodyTimeout, BodyTooLarge, lone_surrogates, read_body
from callproof.emulator.faults import FAULT_HEADER, InvalidFault, apply_to_turn, replay_rejection
from callproof.emulator.models import script_turn
from callproof.emulator.state import EmulatorState
from callproof.emulator.streaming import Hang, Send, Sleep, Step, StepResponse

__all__ = ["bedrock_error_response", "bedrock_routes"]

log = logging.getLogger(__name__)

INVALID_MODEL = "The provided model identifier is invalid."
#: Bedrock's answer to a reasoning block replayed to a model that does not take one (a real
#: message: langchain-ai/langchain-aws#401, DeepSeek R1 on Converse).
REASONING_REPLAY_REJECTED = (
    "User messages cannot contain reasoning content. Please remove the reasoning content and "
    "try again."
)


def bedrock_error_response(error: BedrockError, request_id: str) -> Response:
    """The JSON error response the real service sends."""
    headers = {
        "x-amzn-requestid": request_id,
        "x-amzn-errortype": f"{error.error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        **error.headers,
    }
    body = json.dumps({"message": error.message, **error.fields}).encode()
    return Response(body, status_code=error.status, headers=headers, media_type="application/json")


def _split_path(raw_path: bytes) -> tuple[str, str] | None:
    """``/model/<id>/<operation>`` -> (decoded model id, operation)."""
    path = raw_path.decode("latin-1").split("?", 1)[0]
    if not path.startswith("/model/"):
        return None
    encoded, _, operation = path[len("/model/") :].rpartition("/")
    if not encoded or operation not in ("converse", "converse-stream"):
        return None
    return unquote(encoded), operation


async def _handle(request: Request) -> Response | StepResponse:
    state: EmulatorState = request.app.state.emulator
    auth: BedrockAuth = request.app.state.bedrock_auth
    rng = state.request_rng("bedrock")
    request_id = state.request_id(rng)
    try:
        return await _serve(request, state, auth, request_id)
    except BedrockError as error:
        return bedrock_error_response(error, request_id)
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is listening any more
    except Exception:  # a bug must answer 500, never kill the worker
        log.exception("emulator bug serving %s", request.url.path)
        internal = BedrockError(500, "InternalServerException", HTTP_ERRORS[500][1])
        return bedrock_error_response(internal, request_id)


async def _serve(
    request: Request, state: EmulatorState, auth: BedrockAuth, request_id: str
) -> Response | StepResponse:
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    parts = _split_path(raw_path)
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
    host = request.headers.get("host", "localhost")
    url = f"{request.url.scheme}://{host}{raw_path.decode('latin-1')}"
    auth.check(method=request.method, url=url, headers=request.headers, body=body)
    data = parse_body(body)
    if lone_surrogates(body):
        # no UTF-8 string holds one: the service refuses the input (a 400, never a 500)
        raise BedrockError(400, "ValidationException", MALFORMED)
    profile = state.profile("bedrock", model_id)
    if profile is None:
        raise BedrockError(400, "ValidationException", INVALID_MODEL)
    conversation = decode_request(data)
    try:
        fault = state.choose_fault(
            "bedrock", model_id, conversation, request.headers.get(FAULT_HEADER)
        )
    except InvalidFault as exc:
        raise BedrockError(400, "ValidationException", f"{FAULT_HEADER}: {exc}") from None
    rejection = replay_rejection(fault, profile, conversation)
    if fault is not None and fault.name == "reject_reasoning_replay" and rejection is None:
        fault = None  # nothing replayed: the request is answered as usual
    if rejection is not None:
        log.debug("request %s to %s: reasoning replay rejected", request_id, model_id)
        if rejection.arg == "hang":
            return _steps_response(state, [Hang()], {"x-amzn-requestid": request_id}, EVENTSTREAM)
        raise BedrockError(400, "ValidationException", REASONING_REPLAY_REJECTED)
    if fault is not None:
        log.debug("request %s to %s: fault %s", request_id, model_id, fault)
        if fault.name == "http_error":
            raise http_error(fault.status)
        if fault.name == "stream_exception" and operation == "converse":
            raise stream_exception_as_http(fault.value)
    rng = state.request_rng(model_id)
    turn = apply_to_turn(fault, script_turn(profile, conversation, rng), conversation, model_id)
    headers = {"x-amzn-requestid": request_id}
    steps: list[Step]
    if operation == "converse-stream":
        media_type = EVENTSTREAM
        events = stream_events(profile, turn, 0)
        delays = planned_delays(events, profile.latency, rng)
        extra = fault.added_latency if fault is not None else 0.0
        metadata = events[-1]
        metrics = {"latencyMs": int((sum(delays) + extra) * 1000)}
        events[-1] = replace(metadata, payload={**metadata.payload, "metrics": metrics})
        steps = stream_steps(events, delays, fault, rng)
    else:
        media_type = "application/json"
        delay = profile.latency.response_delay(rng, turn.output_tokens)
        if fault is not None:
            delay += fault.added_latency
        payload = json.dumps(converse_body(turn, int(delay * 1000), profile)).encode()
        plain = converse_steps(payload, delay, fault)
        steps = [Sleep(delay), Send(payload)] if plain is None else plain
        headers["content-length"] = str(len(payload))
    return _steps_response(state, steps, headers, media_type)


def _steps_response(
    state: EmulatorState, steps: list[Step], headers: dict[str, str], media_type: str
) -> StepResponse:
    # the slot is taken last, once nothing can fail before StepResponse releases it
    if not state.open_stream():
        raise BedrockError(
            429, "ThrottlingException", "Too many requests, please wait before trying again."
        )
    return StepResponse(
        steps,
        headers=headers,
        media_type=media_type,
        closing=state.closing,
        on_close=state.close_stream,
    )


def bedrock_routes() -> list[Route]:
    """The Bedrock Runtime routes (any method, so wrong methods get Bedrock's 404)."""
    return [
        Route(
            "/model/{rest:path}",
            _handle,
            methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"],
        )
    ]
