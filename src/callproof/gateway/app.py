"""The gateway's ASGI app: the Bedrock and OpenAI fronts over one :class:`Gateway`.

``create_gateway_app(serve)`` builds a Starlette app (:class:`~callproof.gateway.asgi.GatewayApp`,
which serves the fronts' POST routes without Starlette's middleware) from a loaded
:class:`~callproof.gateway.config.ServeConfig` whose emulator targets are already bound
(:class:`~callproof.gateway.server.GatewayServer` does that). It is the seam for other modules:
pass ``routes`` (e.g. ``/metrics``, ``/routes``) to mount them beside the fronts; they reach the
:class:`~callproof.gateway.core.Gateway` as ``request.app.state.gateway`` (its ``routers``
hold every breaker and counter) once the app started.

``GET /healthz`` answers 200 while the app runs; ``GET /readyz`` 200 until a drain began, then
503.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from callproof.client import Client
from callproof.emulator.bedrock import bedrock_error_response
from callproof.emulator.bedrock_validation import BedrockError
from callproof.emulator.state import Limits
from callproof.gateway.asgi import GatewayApp
from callproof.gateway.auth import ClientKeys
from callproof.gateway.bedrock_front import bedrock_front_fast, bedrock_front_routes
from callproof.gateway.config import ServeConfig
from callproof.gateway.core import Gateway
from callproof.gateway.evidence import EvidenceLog, default_evidence_dir
from callproof.gateway.openai_front import openai_front_fast, openai_front_routes
from callproof.telemetry.gateway import GatewayScale, scale_routes

__all__ = ["create_gateway_app"]

log = logging.getLogger("callproof.gateway")


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _readyz(request: Request) -> Response:
    gateway: Gateway | None = getattr(request.app.state, "gateway", None)
    if gateway is None or gateway.draining.is_set():
        return JSONResponse({"status": "draining"}, status_code=503)
    return JSONResponse({"status": "ready", "active": gateway.active})


async def _not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/v1"):
        body = {
            "error": {
                "message": f"Invalid URL ({request.method} {request.url.path})",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
        return Response(json.dumps(body), status_code=404, media_type="application/json")
    error = BedrockError(404, "UnknownOperationException", "Unknown operation")
    return bedrock_error_response(error, "gateway")


def create_gateway_app(
    serve: ServeConfig,
    *,
    keys: ClientKeys | None = None,
    routes: Sequence[BaseRoute] = (),
    limits: Limits | None = None,
    client_options: dict[str, Any] | None = None,
    argv: list[str] | None = None,
    scale_options: dict[str, Any] | None = None,
) -> Starlette:
    """The gateway as an ASGI app (see the module docstring). ``keys`` defaults to those
    ``[serve] auth`` names, read from the environment now (ConfigError when missing)."""
    keys = keys if keys is not None else ClientKeys.from_settings(serve.serve.auth)
    evidence_dir: Path | None
    if serve.serve.evidence is False:
        evidence_dir = None
    else:
        evidence_dir = serve.serve.evidence or default_evidence_dir()
        worker = os.environ.get("CALLPROOF_SERVE_WORKER")
        if worker:  # callproof serve --workers: one evidence directory per worker
            evidence_dir = evidence_dir / f"worker-{worker}"

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        evidence = EvidenceLog(evidence_dir, serve.config, argv=argv) if evidence_dir else None
        client = Client(**(client_options or {}))
        gateway = Gateway(serve, client, evidence)
        scale = GatewayScale(serve, **(scale_options or {}))
        await scale.start(gateway)
        app.state.gateway = gateway
        try:
            yield
        finally:
            await scale.aclose()
            await client.aclose()
            if evidence is not None:
                evidence.close()

    all_routes: list[BaseRoute] = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz, methods=["GET"]),
        *routes,
        *scale_routes(),
        *openai_front_routes(),
        *bedrock_front_routes(),
    ]
    app = GatewayApp(
        routes=all_routes,
        exception_handlers={404: _not_found, 405: _not_found},
        lifespan=lifespan,
        fast=openai_front_fast(),
        fast_prefix=bedrock_front_fast(),
    )
    app.state.keys = keys
    app.state.bedrock_auth = keys.bedrock()
    app.state.limits = limits or Limits()
    app.state.evidence_dir = evidence_dir
    return app
