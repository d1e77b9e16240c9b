"""The gateway at scale and in view: shared state, metrics, traces, measured order, ``/routes``.

:class:`GatewayScale` is attached to a running :class:`~callproof.gateway.core.Gateway`
(``gateway.scale``) by the gateway app's lifespan. The gateway tells it when a router was made,
when a call started, ended and was recorded; from that it

* attaches every router to the ``[serve] state`` backend (:mod:`callproof.state`),
* keeps ``order = "measured"`` routes ordered (:mod:`callproof.resilience.measured`),
* counts each call into ``GET /metrics`` (:mod:`callproof.telemetry.metrics`),
* emits its spans when tracing is on (:mod:`callproof.telemetry.tracing`),
* serves ``GET /routes``: each route's order in force, the figures behind it, breaker states,
  and the state backend's health (never a password).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from callproof.errors import AllAttemptsFailed, CallError
from callproof.resilience.measured import MeasuredRouting
from callproof.state.base import StateBackend, state_from_url
from callproof.telemetry.metrics import Metrics
from callproof.telemetry.summary import CallSummary
from callproof.telemetry.tracing import Tracing, current_tracing, mark_routed

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from callproof.gateway.config import ServeConfig
    from callproof.gateway.core import Gateway, GatewayCall
    from callproof.resilience.router import Router

__all__ = ["GatewayScale", "config_name", "scale_routes"]

log = logging.getLogger("callproof.gateway")


def config_name(serve: ServeConfig) -> str:
    """The name keys are namespaced by: the config file's stem (``callproof`` for
    ``callproof.toml``), ``default`` for the embedded default."""
    name = serve.name
    if name.startswith("<"):
        return "default"
    return os.path.splitext(os.path.basename(name))[0] or "default"


class GatewayScale:
    """See the module docstring. ``metrics=False`` / ``tracing=None`` turn either off."""

    def __init__(
        self,
        serve: ServeConfig,
        *,
        state: StateBackend | None = None,
        metrics: bool = True,
        tracing: Tracing | bool | None = True,
        db_url: str | None = None,
    ) -> None:
        self.serve = serve
        self.state = (
            state
            if state is not None
            else state_from_url(serve.serve.state, config_name=config_name(serve))
        )
        self.metrics: Metrics | None = Metrics(routers=self._routers) if metrics else None
        if tracing is True:
            self.tracing = current_tracing()
        else:
            self.tracing = tracing or None
        #: The history store measured routes read: ``db_url``, else ``$CALLPROOF_DB`` (the
        #: variable ``callproof run --db`` reads), else the default store.
        self.db_url = db_url or os.environ.get("CALLPROOF_DB") or None
        self.measured: dict[str, MeasuredRouting] = {}
        self.gateway: Gateway | None = None
        self._pending: list[MeasuredRouting] = []
        self._started = False
        self._tasks: set[Any] = set()

    def _routers(self) -> list[Router]:
        return list(self.gateway.routers.values()) if self.gateway is not None else []

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, gateway: Gateway) -> None:
        """Attach to ``gateway``, make every route's router, start syncing and refreshing."""
        self.gateway = gateway
        gateway.scale = self
        for router in list(gateway.routers.values()):
            self.router_created(router)
        for name in gateway.config.routes:
            gateway.router("route", name)
        await self.state.start()
        for routing in self._pending:
            await routing.start()
        self._pending.clear()
        self._started = True

    async def aclose(self) -> None:
        """Stop refreshing and syncing."""
        for routing in self.measured.values():
            await routing.aclose()
        await self.state.aclose()

    # -- what the gateway tells us -----------------------------------------------------------

    def router_created(self, router: Router) -> None:
        """A router was made: share its state; keep it measured when its route says so."""
        self.state.attach(router)
        if self._key(router) != f"route:{router.name}":
            return  # a one-target router (``target:NAME``): nothing to order
        route = self.serve.config.routes[router.name]
        settings = route.measured
        if settings.enabled and router.name not in self.measured:
            routing = MeasuredRouting(router, settings, db_url=self.db_url)
            self.measured[router.name] = routing
            if self._started:  # made after start: refresh it in the background
                import asyncio

                task = asyncio.get_running_loop().create_task(routing.start())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._pending.append(routing)

    def _key(self, router: Router) -> str | None:
        """``route:NAME`` or ``target:NAME``: the gateway's key of ``router``."""
        routers = self.gateway.routers if self.gateway is not None else {}
        return next((k for k, r in routers.items() if r is router), None)

    def call_started(self, call: GatewayCall) -> None:
        """A call began: in flight, and the client's own spans stay quiet inside it."""
        mark_routed()
        if self.metrics is not None:
            self.metrics.in_flight.labels(call.front).inc()

    def call_ended(self, call: GatewayCall) -> None:
        if self.metrics is not None:
            self.metrics.in_flight.labels(call.front).dec()

    def call_recorded(self, call: GatewayCall, error: BaseException | None) -> None:
        """The call is over: count it and emit its spans (never raises)."""
        if self.metrics is None and self.tracing is None:
            return
        try:
            summary = self.summary(call, error)
            if self.metrics is not None:
                self.metrics.observe(summary)
            if self.tracing is not None:
                self.tracing.emit(summary)
        except Exception:  # telemetry must never fail a call
            log.debug("could not record telemetry for a call", exc_info=True)

    def evidence_fields(self, call: GatewayCall) -> dict[str, Any]:
        """Extra fields of the call's evidence record: the measured order in force."""
        routing = self.measured.get(call.resolved.router.name)
        if routing is None or not call.resolved.label.startswith("route:"):
            return {}
        return {"route_order": routing.current.to_dict()}

    # -- building a summary ------------------------------------------------------------------

    def summary(self, call: GatewayCall, error: BaseException | None) -> CallSummary:
        """The :class:`CallSummary` of a finished gateway call."""
        router = call.resolved.router
        response = call.response
        records: list[dict[str, Any]]
        stream = call._stream
        if isinstance(error, AllAttemptsFailed):
            from callproof.resilience.routes import final_error

            last = final_error(error)
            outcome, kind = last.outcome, type(last).__name__
            records = list(getattr(error, "attempts", []))
            response = None
        elif isinstance(error, CallError):
            outcome, kind = error.outcome, type(error).__name__
            records = stream.attempts if stream is not None else []
        elif response is not None:
            outcome, kind = "ok", None
            records = list(response.attempts) or (stream.attempts if stream is not None else [])
        else:
            outcome, kind = "abandoned", None
            records = stream.attempts if stream is not None else []
        served = call.served_by if outcome == "ok" else None
        return CallSummary.of_response(
            response if outcome == "ok" else None,
            request_model=call.requested,
            route=router.name,
            targets={t.name: t for t in router.targets},
            started_at=call.started_at,
            duration_s=time.monotonic() - call.started,
            outcome=outcome,
            error_type=kind,
            served_by=served,
            records=records,
            front=call.front,
            time_to_first_chunk_s=getattr(call, "first_chunk_s", None),
        )

    # -- /routes and /metrics ----------------------------------------------------------------

    def routes_view(self) -> dict[str, Any]:
        """What ``GET /routes`` shows."""
        out: dict[str, Any] = {"state": self.state.status(), "routes": {}}
        routers = self.gateway.routers if self.gateway is not None else {}
        for key, router in routers.items():
            entry: dict[str, Any] = {
                "label": key,
                "order": [t.name for t in router.targets],
                "breakers": router.breaker_states(),
                "mode": "configured",
            }
            routing = self.measured.get(router.name)
            if routing is not None and key.startswith("route:"):
                entry.update(routing.current.to_dict())
            out["routes"][key] = entry
        return out


def scale_routes() -> list[BaseRoute]:
    """``GET /metrics`` and ``GET /routes`` for the gateway app; they find the running
    :class:`GatewayScale` as ``request.app.state.gateway.scale`` (503 until it started)."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from callproof.telemetry.metrics import CONTENT_TYPE

    def current(request: Request) -> GatewayScale | None:
        gateway = getattr(request.app.state, "gateway", None)
        found: GatewayScale | None = getattr(gateway, "scale", None)
        return found

    async def metrics(request: Request) -> Response:
        scale = current(request)
        if scale is None or scale.metrics is None:
            return Response("metrics off or not ready\n", status_code=503, media_type="text/plain")
        return Response(scale.metrics.render(), media_type=CONTENT_TYPE)

    async def routes(request: Request) -> Response:
        scale = current(request)
        if scale is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse(scale.routes_view())

    return [Route("/metrics", metrics, methods=["GET"]), Route("/routes", routes, methods=["GET"])]
