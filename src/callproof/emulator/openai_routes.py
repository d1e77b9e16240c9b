"""The emulator's OpenAI-compatible routes: ``POST /v1/chat/completions``, ``POST /v1/responses``,
``GET /v1/models`` (and ``GET /v1/models/{model}``).

A request is decoded and validated (:mod:`.openai_decode`), its model looked up
(``state.profile("openai", model)``), a fault chosen (the ``x-callproof-fault`` header, else a
seeded draw from the plan), the scripted model's turn encoded (:mod:`.openai_chat`,
:mod:`.openai_responses`) and played with the model's latency by
:class:`~callproof.emulator.streaming.StepResponse`.

Faults on these routes (streamed / not streamed):

============================ ===========================================================
``hang_before_headers``      nothing at all until the client gives up
``hang_no_events``           headers, then no event. OpenRouter-flavoured models keep
                             sending ``: OPENROUTER PROCESSING`` comments every
                             ``KEEPALIVE_INTERVAL_S`` (as OpenRouter does while a provider
                             is silent), which defeats timeouts that count bytes rather
                             than events; plain ``openai`` models send nothing. Not
                             streamed: headers, then no body.
``stall_after:N``            N events (comments not counted), then as ``hang_no_events``.
                             Not streamed: as ``hang_no_events``.
``close_without_stop``       the stream ends without the finish chunk, the usage chunk and
                             ``[DONE]`` (Responses: without ``response.completed``). Not
                             streamed: ``finish_reason: null`` (Responses: ``in_progress``).
``truncate_frame``           the stream is cut in the middle of a ``data:`` line (mid
                             JSON), then closed; the openai SDK drops the half line and
                             ends silently. Not streamed: half the body under a
                             Content-Length for all of it, then the connection is cut
                             (HTTP/2: RST_STREAM), so the client sees a cut, not JSON.
``corrupt_crc``              SSE has no checksum: one ``data:`` line in mid-stream carries
                             JSON whose closing brace is replaced by ``#``; the stream then
                             goes on. Not streamed: the body's closing brace likewise.
``stream_exception:TYPE``    after half the events, an error: OpenRouter a chunk with a
                             top-level ``error`` and ``finish_reason: "error"`` then
                             ``[DONE]``; OpenAI an ``{"error": {...}}`` event and close;
                             Responses ``response.failed``. Not streamed: OpenRouter a 200
                             body with ``error`` (Responses: ``status: "failed"``); OpenAI
                             the HTTP error for TYPE.
``http_error:STATUS``        the flavour's error body with STATUS; ``Retry-After`` on 429
                             and 503.
``empty_response``           a well-formed answer with no text, reasoning or tool call.
``stop_reason:VALUE``        finish with VALUE mapped to a ``finish_reason`` (end_turn ->
                             stop, tool_use -> tool_calls, max_tokens -> length,
                             content_filtered / guardrail_intervened -> content_filter,
                             anything else raw); OpenRouter's ``native_finish_reason`` is
                             VALUE itself.
``malformed_tool_args``      a tool call whose arguments are not valid JSON.
``tool_call_in_text``        the tool call written in the text in the model family's own
                             markup (Kimi, Mistral, Llama, Qwen/Hermes), finish stop.
``latency:SECONDS``          SECONDS more before the first event (or the body).
``reset_mid_body``           half the events (or half the body), then a reset: a TCP RST
                             over HTTP/1.1, RST_STREAM over HTTP/2.
``reset_before_headers``     the request is read, then reset before any header.
``slow_body:BYTES_PER_S``    the answer trickles at BYTES_PER_S.
``reject_reasoning_replay``  when the history replays reasoning, a 400 (``:hang``: a hang
                             before headers); otherwise no effect.
============================ ===========================================================
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callproof.emulator.body import BodyTimeout, BodyTooLarge, lone_surrogates, read_body
from callproof.emulator.faults import (
    FAULT_HEADER,
    Fault,
    InvalidFault,
    apply_to_turn,
    replay_rejection,
)
from callproof.emulator.models import ModelProfile, Turn, script_turn
from callproof.emulator.openai_chat import (
    KEEPALIVE,
    ChatEncoder,
    Piece,
    finish_reason_for,
    stream_error_for,
)
from callproof.emulator.openai_decode import (
    BAD_JSON,
    ChatRequest,
    OpenAIRequestError,
    decode_chat,
)
from callproof.emulator.openai_responses import ResponsesEncoder, ResponsesRequest, decode_responses
from callproof.emulator.state import EmulatorState, Limits
from callproof.emulator.streaming import (
    Cut,
    Hang,
    Headers,
    Reset,
    Send,
    Sleep,
    Step,
    StepResponse,
    Trickle,
)

__all__ = [
    "KEEPALIVE_INTERVAL_S",
    "error_response",
    "model_not_found",
    "openai_headers",
    "openai_routes",
    "read_openai_body",
    "respond",
    "too_many_streams",
]

#: Seconds between OpenRouter keep-alive comments while a stream is silent.
KEEPALIVE_INTERVAL_S = 1.0
#: Seconds between the last bytes and a ``reset_mid_body`` reset.
_BEFORE_RESET_S = 0.05
#: The 400 for replayed reasoning (``reject_reasoning_replay``), as strict OpenAI-compatible
#: servers word it (DeepSeek's API for reasoning_content sent back: api-docs.deepseek.com,
#: "reasoning_model": "the reasoning_content field ... will return a 400 error").
REASONING_REPLAY_REJECTED = (
    "The reasoning_content of a previous assistant message must not be sent back in the "
    "input messages; remove it and try again."
)

_OPENAI_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: (
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    403: ("You are not allowed to sample from this model", "invalid_request_error", None),
    404: (
        "The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    408: ("Request timed out.", "timeout", None),
    409: ("The request conflicted with another request.", "invalid_request_error", None),
    429: (
        "Rate limit reached for {model} in organization org-callproof on requests per min "
        "(RPM): Limit 3, Used 3, Requested 1. Please try again in 1s.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}
_OPENROUTER_ERRORS: dict[int, str] = {
    400: "Provider returned error",
    401: "No auth credentials found",
    402: "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
    403: "Your chosen model requires moderation and your input was flagged",
    404: "No endpoints found for {model}.",
    408: "Timed out",
    429: "{model} is temporarily rate-limited upstream. Please retry shortly.",
    500: "Internal Server Error",
    502: "Provider returned error",
    503: "No instances available",
}


def openai_routes(state: EmulatorState) -> list[Route]:
    """The OpenAI-compatible routes, bound to ``state``."""

    async def chat(request: Request) -> Response:
        return await _handle(state, request, responses=False)

    async def responses(request: Request) -> Response:
        return await _handle(state, request, responses=True)

    async def models(request: Request) -> Response:
        data = [_model_object(p) for p in state.models if p.api == "openai"]
        return _with_headers(state, JSONResponse({"object": "list", "data": data}), None)

    async def model(request: Request) -> Response:
        model_id = request.path_params["model"]
        profile = state.profile("openai", model_id)
        if profile is None:
            return _with_headers(state, error_response(model_not_found(model_id)), None)
        return _with_headers(state, JSONResponse(_model_object(profile)), profile)

    return [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{model:path}", model, methods=["GET"]),
    ]


def _model_object(profile: ModelProfile) -> dict[str, Any]:
    owner = profile.id.split("/")[0] if "/" in profile.id else "callproof"
    return {"id": profile.id, "object": "model", "created": 1_700_000_000, "owned_by": owner}


def error_response(exc: OpenAIRequestError, headers: dict[str, str] | None = None) -> Response:
    """An OpenAI error body at its status (the emulator's and the gateway's OpenAI fronts)."""
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def model_not_found(model: str) -> OpenAIRequestError:
    """OpenAI's own 404 for an unknown model id."""
    return OpenAIRequestError(
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
        status=404,
    )


async def read_openai_body(request: Request, limits: Limits) -> bytes:
    """The request body within ``limits``; too large or too slow is OpenAI's 413 / 408."""
    try:
        return await read_body(request, limits)
    except BodyTooLarge:
        raise OpenAIRequestError(
            f"Request body too large: the limit is {limits.max_body_bytes} bytes.",
            code="request_too_large",
            status=413,
        ) from None
    except BodyTimeout:
        raise OpenAIRequestError(
            f"The request body was not received within {limits.body_timeout_s:g} s.",
            code="request_timeout",
            status=408,
        ) from None


def _with_headers(
    state: EmulatorState, response: Response, profile: ModelProfile | None
) -> Response:
    """Every OpenAI-flavoured answer and error carries ``x-request-id`` and the
    ``x-ratelimit-*`` headers, as api.openai.com's do (platform.openai.com/docs/guides/
    rate-limits, "Rate limits in headers"); OpenRouter sends neither."""
    if profile is not None and profile.flavour == "openrouter":
        return response
    status = getattr(response, "status_code", getattr(response, "status", 200))
    for key, value in openai_headers(state, status).items():
        response.headers.setdefault(key, value)
    return response


def openai_headers(state: EmulatorState, status: int) -> dict[str, str]:
    """The ``x-request-id`` and ``x-ratelimit-*`` headers of an answer with ``status`` (a
    fresh request id each call)."""
    throttled = status == 429
    return {
        "x-request-id": state.openai_request_id(),
        "openai-version": "2020-10-01",
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-limit-tokens": "30000000",
        "x-ratelimit-remaining-requests": "0" if throttled else "9999",
        "x-ratelimit-remaining-tokens": "0" if throttled else "29999000",
        "x-ratelimit-reset-requests": "1s" if throttled else "6ms",
        "x-ratelimit-reset-tokens": "1s" if throttled else "2ms",
    }


async def _handle(state: EmulatorState, request: Request, *, responses: bool) -> Response:
    seen: list[ModelProfile] = []
    response = await _answer(state, request, responses=responses, seen=seen)
    return _with_headers(state, response, seen[0] if seen else None)


async def _answer(
    state: EmulatorState, request: Request, *, responses: bool, seen: list[ModelProfile]
) -> Response:
    try:
        body = await read_openai_body(request, state.limits)
        if lone_surrogates(body):
            raise OpenAIRequestError(BAD_JSON)  # the API's own answer to unparseable input
        decoded: ChatRequest | ResponsesRequest = (
            decode_responses(body, state.responses) if responses else decode_chat(body)
        )
        profile = state.profile("openai", decoded.model)
        if profile is None:
            raise model_not_found(decoded.model)
        seen.append(profile)
        forced = request.headers.get(FAULT_HEADER)
        try:
            fault = state.choose_fault("openai", decoded.model, decoded.conversation, forced)
        except InvalidFault as exc:
            raise OpenAIRequestError(
                f"Invalid {FAULT_HEADER} header: {exc}", param=FAULT_HEADER, code="invalid_fault"
            ) from None
        rejection = replay_rejection(fault, profile, decoded.conversation)
        if fault is not None and fault.name == "reject_reasoning_replay" and rejection is None:
            fault = None  # nothing replayed: answered as usual
        if rejection is not None and rejection.arg != "hang":
            raise OpenAIRequestError(
                REASONING_REPLAY_REJECTED, param="messages", code="invalid_request_message_order"
            )
    except OpenAIRequestError as exc:
        return error_response(exc)
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is left to read it
    if rejection is not None:
        fault = Fault("hang_before_headers")  # the hang variant
    return respond(state, decoded, profile, fault)


def too_many_streams() -> Response:
    """The 429 when every stream slot of the emulator is taken."""
    return error_response(
        OpenAIRequestError(
            "Too many concurrent requests to the emulator.",
            error_type="requests",
            code="rate_limit_exceeded",
            status=429,
        ),
        headers={"retry-after": "1"},
    )


def respond(
    state: EmulatorState,
    decoded: ChatRequest | ResponsesRequest,
    profile: ModelProfile,
    fault: Fault | None,
) -> Response:
    """The answer to a decoded, validated request once its fault is chosen (the request's
    RNG is drawn from here on; the response plans answer the common cases themselves)."""
    rng = state.request_rng(decoded.model)
    turn = script_turn(profile, decoded.conversation, rng)
    if not decoded.parallel_tool_calls and len(turn.tool_calls) > 1:
        turn = turn.replace(tool_calls=turn.tool_calls[:1])
    turn = apply_to_turn(fault, turn, decoded.conversation, decoded.model)
    if _reasoning_off(decoded):
        turn = turn.replace(reasoning="")
    if fault is not None and fault.name == "http_error":
        return _http_error(profile, decoded.model, fault.status)
    created = int(time.time())
    encoder: ChatEncoder | ResponsesEncoder
    if isinstance(decoded, ResponsesRequest):
        encoder = ResponsesEncoder(profile, decoded, created=created, rng=rng)
    else:
        encoder = ChatEncoder(
            profile,
            model=decoded.model,
            created=created,
            rng=rng,
            # OpenRouter sends usage in the last chunk always (openrouter.ai/docs, "Usage
            # accounting": "the usage data is returned in the final SSE message"); OpenAI only
            # with stream_options.include_usage
            include_usage=decoded.include_usage or profile.flavour == "openrouter",
        )
    if decoded.stream:
        steps: Iterator[Step] = _stream_steps(state, profile, encoder, turn, fault, rng)
        headers = _stream_headers(profile, encoder.id, rng)
    else:
        non_stream = _body_steps(state, profile, encoder, turn, fault, rng)
        if isinstance(non_stream, Response):
            return non_stream
        steps, headers = non_stream
    if isinstance(encoder, ResponsesEncoder) and isinstance(decoded, ResponsesRequest):
        steps = _storing(state, decoded, encoder, steps)
    if not state.open_stream():
        return too_many_streams()
    return StepResponse(  # type: ignore[return-value]  # an ASGI app Starlette accepts
        steps, status=200, headers=headers, closing=state.closing, on_close=state.close_stream
    )


def _storing(
    state: EmulatorState,
    request: ResponsesRequest,
    encoder: ResponsesEncoder,
    steps: Iterator[Step],
) -> Iterator[Step]:
    """The steps, storing the response (when the request says ``store``) once they are built:
    a stream's output items exist only after its generator has run."""
    yield from steps
    if request.store and encoder.output_items:
        state.responses.put(encoder.id, list(request.input_items), encoder.output_items)


def _reasoning_off(request: ChatRequest | ResponsesRequest) -> bool:
    """OpenRouter's ``reasoning: {exclude: true}`` / ``{enabled: false}`` /
    ``{effort: "none"}`` and the legacy ``include_reasoning: false`` hide the reasoning."""
    options = request.reasoning or {}
    return (
        options.get("exclude") is True
        or options.get("enabled") is False
        or options.get("effort") == "none"
        or request.raw.get("include_reasoning") is False
    )


# -- responses: errors, headers, steps ------------------------------------------------------


def _http_error(profile: ModelProfile, model: str, status: int) -> Response:
    headers = {"retry-after": "1"} if status in (429, 503) else {}
    if profile.flavour == "openrouter":
        message = _OPENROUTER_ERRORS.get(status, f"HTTP {status}").format(model=model)
        error: dict[str, Any] = {"code": status, "message": message}
        if status in (429, 502):
            error["metadata"] = {"provider_name": profile.provider, "raw": message}
        return JSONResponse({"error": error, "user_id": "user_callproof"}, status, headers)
    text, kind, code = _OPENAI_ERRORS.get(status, (f"HTTP {status}", "server_error", None))
    body = {
        "error": {"message": text.format(model=model), "type": kind, "param": None, "code": code}
    }
    return JSONResponse(body, status, headers)


def _stream_headers(profile: ModelProfile, response_id: str, rng: random.Random) -> dict[str, str]:
    if profile.flavour == "openrouter":
        return {
            "content-type": "text/event-stream",
            "cache-control": "no-cache",
            "x-generation-id": response_id,
        }
    return {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        "openai-processing-ms": str(rng.randint(80, 900)),
    }


def _events(pieces: list[Piece]) -> list[int]:
    return [i for i, p in enumerate(pieces) if p.kind != "keepalive"]


def _stream_steps(
    state: EmulatorState,
    profile: ModelProfile,
    encoder: ChatEncoder | ResponsesEncoder,
    turn: Turn,
    fault: Fault | None,
    rng: random.Random,
) -> Iterator[Step]:
    openrouter = profile.flavour == "openrouter"
    keepalive = (
        (KEEPALIVE if isinstance(encoder, ChatEncoder) else b": \n\n") if openrouter else None
    )
    name = fault.name if fault is not None else None
    if name == "hang_before_headers":
        yield Hang()
        return
    if name == "reset_before_headers":
        yield Reset()
        return
    yield Headers()
    if name == "slow_body" and fault is not None:
        yield Trickle(fault.bytes_per_s)
    if name == "hang_no_events":
        yield from _silence(state, keepalive)
        return
    if isinstance(encoder, ChatEncoder):
        finish, native = finish_reason_for(turn.stop_reason), turn.stop_reason
        if fault is None or fault.name != "stop_reason":
            native = finish
        pieces = encoder.stream(turn, finish=finish, native=native)
        if openrouter:
            pieces.insert(0, encoder.keepalive())
    else:
        pieces = encoder.stream(turn)
    events = _events(pieces)
    stall = False
    match name:
        case "close_without_stop":
            pieces = [p for p in pieces if not p.final]
        case "truncate_frame":
            cut = events[len(events) // 2]
            data = pieces[cut].data
            pieces = [*pieces[:cut], Piece(data[: max(7, len(data) // 2)])]
        case "corrupt_crc":
            at = events[len(events) // 2]
            data = pieces[at].data.rstrip(b"\n")
            pieces[at] = Piece(data[:-1] + b"#\n\n")
        case "stream_exception":
            cut = events[max(1, len(events) // 2)]
            kept = pieces[:cut]
            if isinstance(encoder, ResponsesEncoder):
                encoder.seq = sum(1 for p in kept if p.kind == "event")
            pieces = kept + encoder.error(fault.value if fault else "")
        case "stall_after":
            count = fault.count if fault else 0
            pieces = pieces[: events[count]] if count < len(events) else pieces
            stall = True
        case "reset_mid_body":
            pieces = pieces[: events[len(events) // 2]]
    extra = fault.added_latency if fault is not None else 0.0
    yield from _paced(pieces, profile, rng, extra, keepalive)
    if stall:
        yield from _silence(state, keepalive)
    if name == "reset_mid_body":
        yield Sleep(_BEFORE_RESET_S)
        yield Reset()


def _paced(
    pieces: list[Piece],
    profile: ModelProfile,
    rng: random.Random,
    extra: float,
    keepalive: bytes | None,
) -> Iterator[Step]:
    """Pieces with the model's timing; keep-alive comments fill the wait for the first token."""
    wait = profile.latency.first_delay(rng) + extra
    first = True
    for piece in pieces:
        if piece.kind == "keepalive":
            yield Send(piece.data)
            continue
        if first:
            first = False
            if keepalive is not None:
                while wait > KEEPALIVE_INTERVAL_S:
                    yield Send(keepalive, delay=KEEPALIVE_INTERVAL_S)
                    wait -= KEEPALIVE_INTERVAL_S
            yield Send(piece.data, delay=wait)
            continue
        yield Send(piece.data, delay=profile.latency.token_delay(rng, piece.tokens))


def _silence(state: EmulatorState, keepalive: bytes | None) -> Iterator[Step]:
    """Nothing more: a plain hang, or keep-alive comments (OpenRouter) until the client leaves."""
    if keepalive is None:
        yield Hang()
        return
    while not state.closing.is_set():
        yield Send(keepalive, delay=KEEPALIVE_INTERVAL_S)


def _body_steps(
    state: EmulatorState,
    profile: ModelProfile,
    encoder: ChatEncoder | ResponsesEncoder,
    turn: Turn,
    fault: Fault | None,
    rng: random.Random,
) -> tuple[Iterator[Step], dict[str, str]] | Response:
    """Steps for a non-streamed answer (one JSON body), or a plain error response."""
    name = fault.name if fault is not None else None
    if name == "stream_exception" and fault is not None and profile.flavour != "openrouter":
        code = stream_error_for(fault.value)[0]
        status = code if isinstance(code, int) else 500
        return _http_error(profile, encoder.model, status)
    if isinstance(encoder, ChatEncoder):
        finish: str | None = finish_reason_for(turn.stop_reason)
        native: str | None = turn.stop_reason if name == "stop_reason" else finish
        if name == "close_without_stop":
            finish = native = None
        body = encoder.completion(turn, finish=finish, native=native)
        if name == "stream_exception" and fault is not None:
            code, _, _, message = stream_error_for(fault.value)
            body["error"] = {"code": code, "message": message}
            body["choices"][0]["finish_reason"] = "error"
    else:
        body = encoder.body(turn)
        if name == "close_without_stop":
            body["status"] = "in_progress"
            body["completed_at"] = None
        if name == "stream_exception" and fault is not None:
            # OpenRouter reports a failed generation in the 200 body, as its chat flavour does
            _, _, failed_code, failed_message = stream_error_for(fault.value)
            error = {"code": failed_code or "server_error", "message": failed_message}
            body = encoder.response(status="failed", output=[], error=error)
    data = json.dumps(body, ensure_ascii=False).encode()
    headers = {"content-type": "application/json"}
    wait = profile.latency.response_delay(rng, turn.output_tokens)
    if fault is not None:
        wait += fault.added_latency
    headers["content-length"] = str(len(data))
    half = data[: len(data) // 2]
    match name:
        case "hang_before_headers":
            return iter([Hang()]), headers
        case "reset_before_headers":
            return iter([Reset()]), headers
        case "hang_no_events" | "stall_after":
            return iter([Headers(), Hang()]), headers
        case "truncate_frame":
            # half the declared body, then the connection is cut: a cut, not broken JSON
            return iter([Sleep(wait), Send(half), Cut()]), headers
        case "reset_mid_body":
            return iter([Sleep(wait), Send(half), Sleep(_BEFORE_RESET_S), Reset()]), headers
        case "slow_body" if fault is not None:
            return iter([Sleep(wait), Trickle(fault.bytes_per_s), Send(data)]), headers
        case "corrupt_crc":
            data = data.rstrip()[:-1] + b"#"
            headers["content-length"] = str(len(data))
    return iter([Sleep(wait), Send(data)]), headers
