"""The Bedrock Runtime front: ``POST /model/{modelId}/converse`` and ``/converse-stream``.

A request goes through the emulator's own checks, so its errors are the real service's:
auth (SigV4 verified with botocore, or a Bedrock API key) -> bounded body
(:func:`~callproof.emulator.body.read_body`) -> JSON -> model id (an id the gateway does not
serve: 404 ``ResourceNotFoundException``) -> validation into a
:class:`~callproof.conversation.Conversation`
(:func:`~callproof.emulator.bedrock_validation.decode_request`). Then the call runs through
its router (:class:`~callproof.gateway.core.GatewayCall`) and the events come back as
eventstream frames or the Converse JSON body.
"""

from __future__ import annotations

import json
import logging
import uuid

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from callproof.emulator.bedrock import bedrock_error_response
from callproof.emulator.bedrock_auth import BedrockAuth
from callproof.emulator.bedrock_validation import BedrockError, decode_request, parse_body
from callproof.emulator.bedrock_wire import EVENTSTREAM
from callproof.emulator.body import BodyTimeout, BodyTooLarge, read_body
from callproof.emulator.faults import FAULT_HEADER
from callproof.emulator.plans import split_path
from callproof.emulator.state import Limits
from callproof.errors import AllAttemptsFailed, CallError
from callproof.gateway.asgi import Handler, StreamBody
from callproof.gateway.bedrock_out import BedrockStreamEncoder, converse_body
from callproof.gateway.core import MODE_HEADER, Gateway, GatewayCall, stream_wire
from callproof.gateway.failures import as_bedrock_error, in_band_message

__all__ = ["bedrock_front_fast", "bedrock_front_routes"]

log = logging.getLogger("callproof.gateway")

_API = "bedrock-converse-stream"
_NOT_FOUND = "The requested resource could not be found."


async def _read(request: Request, limits: Limits) -> bytes:
    try:
        return await read_body(request, limits)
    except BodyTooLarge:
        raise BedrockError(
            400, "ValidationException", "Input is too long for requested model."
        ) from None
    except BodyTimeout:
        raise BedrockError(
            408,
            "RequestTimeoutException",
            f"The request body was not received within {limits.body_timeout_s:g} s.",
        ) from None


async def _handle(request: Request) -> Response | StreamBody:
    request_id = str(uuid.uuid4())
    try:
        return await _serve(request, request_id)
    except BedrockError as error:
        return bedrock_error_response(error, request_id)
    except ClientDisconnect:
        return Response(status_code=400)
    except Exception:  # a bug answers 500, never kills the worker
        log.exception("gateway bug serving %s", request.url.path)
        internal = BedrockError(500, "InternalServerException", "The gateway failed.")
        return bedrock_error_response(internal, request_id)


async def _serve(request: Request, request_id: str) -> Response | StreamBody:
    gateway: Gateway = request.app.state.gateway
    auth: BedrockAuth = request.app.state.bedrock_auth
    limits: Limits = request.app.state.limits
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    parts = split_path(raw_path)
    if parts is None or request.method != "POST":
        raise BedrockError(404, "UnknownOperationException", "Unknown operation")
    model_id, operation = parts
    body = await _read(request, limits)
    host = request.headers.get("host") or request.headers.get(":authority") or "localhost"
    url = f"{request.url.scheme}://{host}{raw_path.decode('latin-1')}"
    auth.check(method=request.method, url=url, headers=request.headers, body=body)
    data = parse_body(body)
    resolved = gateway.resolve(model_id)
    if resolved is None:
        raise BedrockError(404, "ResourceNotFoundException", _NOT_FOUND)
    conversation = decode_request(data)
    if gateway.draining.is_set():
        raise BedrockError(
            503, "ServiceUnavailableException", "The gateway is shutting down; try again."
        )
    streaming = operation == "converse-stream"
    buffered = not streaming or request.headers.get(MODE_HEADER, "").lower() == "buffered"
    call = gateway.call(
        resolved,
        conversation,
        front=operation,
        requested=model_id,
        buffered=buffered,
        faults=request.headers.get(FAULT_HEADER),
    )
    try:
        await call.open()
    except (AllAttemptsFailed, CallError) as group:
        error = as_bedrock_error(group)
        error.headers.update(call.headers())
        raise error from None
    headers = {"x-amzn-requestid": request_id}
    if not streaming:
        return await _converse(call, headers)
    encoder = BedrockStreamEncoder(
        tool_id=lambda raw: call.tool_id(raw, _API), latency_ms=call.elapsed_ms
    )
    if buffered:
        # everything is here already: the raw stop reason can go in a header
        frames = [encoder.encode(e) async for e in call.events()]
        await call.aclose()
        headers.update(call.headers())
        return Response(b"".join(frames), headers=headers, media_type=EVENTSTREAM)
    headers.update(call.headers())
    return StreamBody(
        stream_wire(call, encoder.encode, lambda err: encoder.error(in_band_message(err))),
        headers=headers,
        media_type=EVENTSTREAM,
    )


async def _converse(call: GatewayCall, headers: dict[str, str]) -> Response:
    try:
        async for _ in call.events():
            pass
    except CallError as err:
        await call.aclose(err)
        error = as_bedrock_error(err)
        error.headers.update(call.headers())
        raise error from None
    await call.aclose()
    response = call.response
    assert response is not None
    body = converse_body(
        response, tool_id=lambda raw: call.tool_id(raw, _API), latency_ms=call.elapsed_ms()
    )
    headers.update(call.headers())
    return Response(json.dumps(body).encode(), headers=headers, media_type="application/json")


def bedrock_front_routes() -> list[Route]:
    """The Bedrock Runtime routes (any method, so wrong methods get Bedrock's 404)."""
    return [
        Route(
            "/model/{rest:path}",
            _handle,
            methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"],
        )
    ]


def bedrock_front_fast() -> tuple[str, Handler]:
    """The path prefix and handler :class:`~callproof.gateway.asgi.GatewayApp` serves
    directly (``POST /model/...``)."""
    return "/model/", _handle
