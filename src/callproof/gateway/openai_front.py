"""The OpenAI front: ``POST /v1/chat/completions``, ``POST /v1/responses`` (streamed or not)
and ``GET /v1/models``.

Requests go through the emulator's decoders (:func:`~callproof.emulator.openai_decode.
decode_chat`, :func:`~callproof.emulator.openai_responses.decode_responses`), so bad requests
get the real API's 400s; an id the gateway does not serve gets the real 404
``model_not_found``; a missing or wrong key (``auth = keys``) the real 401 ``invalid_api_key``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callproof.emulator.faults import FAULT_HEADER
from callproof.emulator.openai_decode import ChatRequest, OpenAIRequestError, decode_chat
from callproof.emulator.openai_responses import ResponsesRequest, decode_responses
from callproof.emulator.openai_routes import error_response, model_not_found, read_openai_body
from callproof.errors import AllAttemptsFailed, CallError
from callproof.gateway.asgi import Handler, StreamBody
from callproof.gateway.auth import ClientKeys
from callproof.gateway.chat_out import ChatStreamEncoder, chat_completion
from callproof.gateway.core import MODE_HEADER, Gateway, stream_wire
from callproof.gateway.failures import as_openai_error, deciding_error, in_band_message
from callproof.gateway.responses_out import ResponsesStreamEncoder, responses_body

__all__ = ["openai_front_fast", "openai_front_routes"]

log = logging.getLogger("callproof.gateway")

_SSE = "text/event-stream"


def _failed(error: BaseException, extra: dict[str, str]) -> Response:
    exc, own = as_openai_error(error)
    err = deciding_error(error)
    headers = dict(extra)
    wait = getattr(err, "retry_after_s", None)
    if isinstance(wait, int | float) and wait > 0:
        headers["retry-after"] = str(max(1, round(wait)))
    body = own if own is not None else exc.body()
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def _handle(request: Request, *, responses: bool) -> Response | StreamBody:
    try:
        return await _serve(request, responses=responses)
    except OpenAIRequestError as exc:
        return error_response(exc)
    except ClientDisconnect:
        return Response(status_code=400)
    except Exception:  # a bug answers 500, never kills the worker
        log.exception("gateway bug serving %s", request.url.path)
        return error_response(
            OpenAIRequestError("The gateway failed.", status=500, error_type="server_error")
        )


async def _serve(request: Request, *, responses: bool) -> Response | StreamBody:
    gateway: Gateway = request.app.state.gateway
    keys: ClientKeys = request.app.state.keys
    keys.check_bearer(request.headers.get("authorization", ""))
    body = await read_openai_body(request, request.app.state.limits)
    decoded: ChatRequest | ResponsesRequest = (
        decode_responses(body) if responses else decode_chat(body)
    )
    resolved = gateway.resolve(decoded.model)
    if resolved is None:
        raise model_not_found(decoded.model)
    if gateway.draining.is_set():
        raise OpenAIRequestError(
            "The gateway is shutting down; try again.", status=503, error_type="server_error"
        )
    api = "openai-responses" if responses else "openai-completions"
    front = ("responses" if responses else "chat") + ("-stream" if decoded.stream else "")
    buffered = not decoded.stream or request.headers.get(MODE_HEADER, "").lower() == "buffered"
    call = gateway.call(
        resolved,
        decoded.conversation,
        front=front,
        requested=decoded.model,
        buffered=buffered,
        faults=request.headers.get(FAULT_HEADER),
    )
    try:
        await call.open()
    except (AllAttemptsFailed, CallError) as group:
        return _failed(group, call.headers())

    def tool_id(raw: str) -> str:
        return call.tool_id(raw, api)

    if not decoded.stream:
        try:
            async for _ in call.events():
                pass
        except CallError as err:
            await call.aclose(err)
            return _failed(err, call.headers())
        await call.aclose()
        response = call.response
        assert response is not None
        payload: dict[str, Any]
        if isinstance(decoded, ResponsesRequest):
            payload = responses_body(response, decoded, model=call.model, tool_id=tool_id)
        else:
            payload = chat_completion(response, model=call.model, tool_id=tool_id)
        return Response(
            json.dumps(payload, ensure_ascii=False).encode(),
            headers=call.headers(),
            media_type="application/json",
        )
    encoder: ChatStreamEncoder | ResponsesStreamEncoder
    if isinstance(decoded, ResponsesRequest):
        encoder = ResponsesStreamEncoder(decoded, model=call.model, tool_id=tool_id)
    else:
        encoder = ChatStreamEncoder(
            model=call.model, tool_id=tool_id, include_usage=decoded.include_usage
        )
    headers = {"cache-control": "no-cache"}
    if buffered:
        chunks = [encoder.encode(e) async for e in call.events()]
        await call.aclose()
        headers.update(call.headers())
        return Response(b"".join(chunks), headers=headers, media_type=_SSE)
    headers.update(call.headers())
    return StreamBody(
        stream_wire(
            call, encoder.encode, lambda err: encoder.error(in_band_message(err), err.outcome)
        ),
        headers=headers,
        media_type=_SSE,
    )


async def _chat(request: Request) -> Response | StreamBody:
    return await _handle(request, responses=False)


async def _responses(request: Request) -> Response | StreamBody:
    return await _handle(request, responses=True)


async def _models(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    keys: ClientKeys = request.app.state.keys
    try:
        keys.check_bearer(request.headers.get("authorization", ""))
    except OpenAIRequestError as exc:
        return error_response(exc)
    data = [
        {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "callproof"}
        for model_id in gateway.model_ids()
    ]
    return JSONResponse({"object": "list", "data": data})


async def _model(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    keys: ClientKeys = request.app.state.keys
    model_id = request.path_params["model"]
    try:
        keys.check_bearer(request.headers.get("authorization", ""))
        if gateway.resolve(model_id) is None:
            raise model_not_found(model_id)
    except OpenAIRequestError as exc:
        return error_response(exc)
    return JSONResponse(
        {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "callproof"}
    )


def openai_front_routes() -> list[Route]:
    """The OpenAI-compatible routes."""
    return [
        Route("/v1/chat/completions", _chat, methods=["POST"]),
        Route("/v1/responses", _responses, methods=["POST"]),
        Route("/v1/models", _models, methods=["GET"]),
        Route("/v1/models/{model:path}", _model, methods=["GET"]),
    ]


def openai_front_fast() -> dict[str, Handler]:
    """The paths and handlers :class:`~callproof.gateway.asgi.GatewayApp` serves directly
    (``POST`` only)."""
    return {"/v1/chat/completions": _chat, "/v1/responses": _responses}
