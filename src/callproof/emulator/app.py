"""The emulator's ASGI app: Bedrock Runtime and OpenAI-compatible routes over one state.

``create_app(preset="seed", faults=None, seed=None)`` gives a Starlette app for
``httpx.ASGITransport`` or any ASGI server (:class:`~callproof.emulator.server.EmulatorServer`
runs it with hypercorn). Unknown routes answer as the service the path belongs to: OpenAI-style
``{"error": {...}}`` under ``/v1``, Bedrock's ``UnknownOperationException`` elsewhere.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from callproof.emulator.bedrock import bedrock_error_response, bedrock_routes
from callproof.emulator.bedrock import handle as bedrock_handle
from callproof.emulator.bedrock_auth import BedrockAuth
from callproof.emulator.bedrock_validation import BedrockError
from callproof.emulator.fastfront import FastRoutes
from callproof.emulator.faults import AttemptKeyMiddleware, FaultPlan
from callproof.emulator.openai_routes import _handle as openai_handle
from callproof.emulator.openai_routes import openai_routes
from callproof.emulator.plans import BedrockPlanner
from callproof.emulator.schedule import FaultSchedule
from callproof.emulator.state import EmulatorState, Limits

__all__ = ["HotRoutes", "create_app"]

log = logging.getLogger(__name__)


def _openai_error(status: int, message: str, code: str | None = None) -> Response:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }
    return Response(json.dumps(body), status_code=status, media_type="application/json")


async def _not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/v1"):
        return _openai_error(404, f"Invalid URL ({request.method} {request.url.path})")
    state: EmulatorState = request.app.state.emulator
    request_id = state.request_id(state.request_rng("404"))
    return bedrock_error_response(
        BedrockError(404, "UnknownOperationException", "Unknown operation"), request_id
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("emulator bug on %s %s", request.method, request.url.path, exc_info=exc)
    if request.url.path.startswith("/v1"):
        body = {
            "error": {
                "message": "The server had an error while processing your request.",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
        return Response(json.dumps(body), status_code=500, media_type="application/json")
    state: EmulatorState = request.app.state.emulator
    request_id = state.request_id(state.request_rng("500"))
    error = BedrockError(
        500,
        "InternalServerException",
        "The system encountered an unexpected error during processing. Try your request again.",
    )
    return bedrock_error_response(error, request_id)


class HotRoutes:
    """Pure ASGI in front of Starlette's router: the model routes (Bedrock Converse and
    ConverseStream, OpenAI chat completions and Responses, POST) go straight to their handlers,
    past routing and the exception middleware (each handler answers its own errors). Everything
    else, and every other method, goes through Starlette as before. It sits after the schedule
    and attempt-key middlewares, so their context is set."""

    def __init__(self, app: Any, state: EmulatorState) -> None:
        self.app = app
        self.state = state
        self._openai = openai_handle

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            response: Any = None
            if path.startswith("/model/"):
                response = await bedrock_handle(Request(scope, receive))
            elif path in ("/v1/chat/completions", "/v1/responses"):
                request = Request(scope, receive)
                response = await self._openai(
                    self.state, request, responses=path == "/v1/responses"
                )
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    *,
    preset: str = "seed",
    faults: str | Path | FaultPlan | None = None,
    seed: int | None = None,
    limits: Limits | None = None,
    bedrock_auth: BedrockAuth | None = None,
    schedule: FaultSchedule | None = None,
) -> Starlette:
    """The emulator as an ASGI app.

    ``preset`` names the models and default faults (``seed``, ``healthy``, ``fast``); ``faults``
    is a TOML fault plan (docs/faults.md) replacing the preset's rules; ``seed`` makes the fault
    draws reproducible (random when None, unless the plan sets one). ``limits`` bounds body size
    and concurrent streams; ``bedrock_auth`` turns on credential checks. ``schedule`` (a
    :class:`~callproof.emulator.schedule.FaultSchedule`, used by the pytest plugin) picks faults
    per request before the plan does and logs every model request. Raises ``ConfigError`` on a
    bad preset or plan.
    """
    options: dict[str, Any] = {"preset": preset, "faults": faults, "seed": seed, "limits": limits}
    state = EmulatorState(**options) if schedule is None else schedule.new_state(**options)
    routes: list[BaseRoute] = [*bedrock_routes(), *openai_routes(state)]
    handlers: dict[Any, Any] = {404: _not_found, 405: _not_found, Exception: _server_error}
    middleware = [] if schedule is None else [schedule.middleware()]
    middleware.append(Middleware(AttemptKeyMiddleware))  # keyed fault draws (probe attempts)
    middleware.append(Middleware(HotRoutes, state=state))
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=middleware)
    app.state.emulator = state
    app.state.bedrock_auth = auth = bedrock_auth or BedrockAuth()
    app.state.bedrock_planner = BedrockPlanner(state, auth)
    #: the fast HTTP/1.1 front's routes (EmulatorServer serves them); none with a schedule,
    #: whose request log lives in ASGI middleware
    fast = FastRoutes(app.state.bedrock_planner, openai=openai_handle)
    app.state.fast_routes = None if schedule is not None else fast
    return app
