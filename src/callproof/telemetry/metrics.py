"""Prometheus metrics for the gateway, in the OpenTelemetry GenAI names, via ``prometheus_client``.

Each :class:`Metrics` owns its own :class:`~prometheus_client.CollectorRegistry` (never the
process-global one), so two gateways in one process, or a test, never see each other's series.
``GET /metrics`` (:func:`metrics_route`) serves it in the Prometheus text format.

OpenTelemetry names contain dots, which Prometheus names cannot; the mapping is the
OpenTelemetry-to-Prometheus convention (dots to underscores, the unit appended, ``{token}``-style
annotations dropped, ``_total`` on counters)::

    gen_ai.client.operation.duration
        -> gen_ai_client_operation_duration_seconds (histogram)
    gen_ai.client.operation.time_to_first_chunk
        -> gen_ai_client_operation_time_to_first_chunk_seconds (histogram)
    gen_ai.client.token.usage
        -> gen_ai_client_token_usage (histogram)
    attribute gen_ai.request.model   -> label gen_ai_request_model
    attribute gen_ai.provider.name   -> label gen_ai_provider_name
    attribute gen_ai.operation.name  -> label gen_ai_operation_name
    attribute gen_ai.token.type      -> label gen_ai_token_type (input | output)
    attribute error.type             -> label error_type (empty on success)

callproof's own::

    callproof_attempts_total{target,outcome}    every attempt (outcome, abandoned, skipped)
    callproof_calls_total{route,result}         every call (result: ok or the outcome)
    callproof_hedges_total{route,result}        hedged backups (won, lost, failed)
    callproof_fallbacks_total{route,from,to}    a call moving from one target to the next
    callproof_breaker_state{target}             0 closed, 1 half-open, 2 open (worst of routes)
    callproof_in_flight{front}                  calls running now, per gateway front

Every label value is a configured name or from a fixed vocabulary: no prompt, answer, key or
request id, and nothing a client can make up (unknown model ids are answered with the front's
not-found error before a call exists).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from callproof.telemetry.summary import CallSummary

if TYPE_CHECKING:
    from starlette.routing import Route

    from callproof.resilience.router import Router

__all__ = [
    "BREAKER_VALUES",
    "CONTENT_TYPE",
    "DURATION_BUCKETS",
    "TOKEN_BUCKETS",
    "BreakerStateCollector",
    "Metrics",
    "metrics_route",
]

#: The OpenTelemetry GenAI semantic conventions' advisory buckets (seconds).
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
#: ... and for token counts.
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
#: The Prometheus text format's content type.
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: ``callproof_breaker_state`` values.
BREAKER_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

_GENAI = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")


class BreakerStateCollector(Collector):
    """``callproof_breaker_state{target}``, read from the routers at scrape time (a target in
    several routes reports its worst state)."""

    def __init__(self, routers: Callable[[], Iterable[Router]]) -> None:
        self._routers = routers

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "callproof_breaker_state",
            "Circuit state per target: 0 closed, 1 half-open, 2 open",
            labels=["target"],
        )
        worst: dict[str, float] = {}
        for router in self._routers():
            for target, state in router.breaker_states().items():
                worst[target] = max(worst.get(target, 0.0), BREAKER_VALUES.get(state, 0.0))
        for target in sorted(worst):
            family.add_metric([target], worst[target])
        yield family


class Metrics:
    """The gateway's metrics in their own registry; feed :meth:`observe` one finished call."""

    def __init__(
        self,
        *,
        routers: Callable[[], Iterable[Router]] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.duration = Histogram(
            "gen_ai_client_operation_duration",
            "GenAI operation duration (OpenTelemetry gen_ai.client.operation.duration)",
            labelnames=(*_GENAI, "error_type"),
            unit="seconds",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.time_to_first_chunk = Histogram(
            "gen_ai_client_operation_time_to_first_chunk",
            "Time to the first chunk sent to the caller "
            "(OpenTelemetry gen_ai.client.operation.time_to_first_chunk)",
            labelnames=_GENAI,
            unit="seconds",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens used per call (OpenTelemetry gen_ai.client.token.usage)",
            labelnames=(*_GENAI, "gen_ai_token_type"),
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.attempts = Counter(
            "callproof_attempts",
            "Attempts by target and outcome",
            ("target", "outcome"),
            registry=r,
        )
        self.calls = Counter(
            "callproof_calls", "Calls by route and result", ("route", "result"), registry=r
        )
        self.hedges = Counter(
            "callproof_hedges", "Hedged backup attempts by result", ("route", "result"), registry=r
        )
        self.fallbacks = Counter(
            "callproof_fallbacks",
            "Calls that moved on from one target to the next",
            ("route", "from", "to"),
            registry=r,
        )
        #: ``callproof serve --workers``: every worker writes its values under this directory
        #: and a scrape of any worker sums them (prometheus_client's multiprocess mode).
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        self.in_flight = Gauge(
            "callproof_in_flight",
            "Calls running now, per front",
            ("front",),
            registry=r,
            multiprocess_mode="livesum",
        )
        self._breakers = BreakerStateCollector(routers) if routers is not None else None
        if self._breakers is not None:
            r.register(self._breakers)

    def observe(self, call: CallSummary) -> None:
        """Count one finished call, its attempts, hedges and fallbacks."""
        genai = (call.operation, call.provider, call.request_model)
        self.duration.labels(*genai, call.error_type or "").observe(call.duration_s)
        if call.time_to_first_chunk_s is not None:
            self.time_to_first_chunk.labels(*genai).observe(call.time_to_first_chunk_s)
        for kind, tokens in (("input", call.input_tokens), ("output", call.output_tokens)):
            if tokens is not None:
                self.token_usage.labels(*genai, kind).observe(tokens)
        self.calls.labels(call.route, call.outcome).inc()
        previous: str | None = None
        for attempt in call.attempts:
            self.attempts.labels(attempt.target, attempt.outcome).inc()
            if attempt.hedge:
                if attempt.outcome == "ok" and attempt.target == call.served_by:
                    result = "won"
                elif attempt.outcome == "abandoned":
                    result = "lost"
                else:
                    result = "failed"
                self.hedges.labels(call.route, result).inc()
            elif attempt.sent:
                if previous is not None and previous != attempt.target:
                    self.fallbacks.labels(call.route, previous, attempt.target).inc()
                previous = attempt.target

    def render(self) -> bytes:
        """The registry in the Prometheus text format (summed over workers in multiprocess
        mode; the breaker states are this worker's, the same on every worker with shared
        state)."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        if self._breakers is not None:
            merged.register(self._breakers)
        return generate_latest(merged)


def metrics_route(metrics: Callable[[], Metrics | None] | Metrics, path: str = "/metrics") -> Route:
    """A Starlette route serving ``metrics`` (or what a callable returns; 503 while ``None``)."""
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def endpoint(request: Request) -> Response:
        found: Any = metrics() if callable(metrics) else metrics
        if found is None:
            return Response("metrics not ready\n", status_code=503, media_type="text/plain")
        return Response(found.render(), media_type=CONTENT_TYPE_LATEST)

    return Route(path, endpoint, methods=["GET"])
