"""Telemetry: Prometheus metrics and OpenTelemetry traces, in the GenAI semantic conventions.

* :class:`Metrics` - the gateway's metrics in a per-app registry; :func:`metrics_route`
  serves ``GET /metrics`` (:mod:`callproof.telemetry.metrics` documents every name).
* :class:`Tracing` - one span per call and a child span per attempt, opt-in
  (:mod:`callproof.telemetry.tracing`); :func:`enable_tracing` turns it on in code.
* :class:`CallSummary` - one finished call, the input of both.

Names load lazily, so importing the client never imports ``prometheus_client`` or
OpenTelemetry. See ``docs/scale.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from callproof.telemetry.metrics import Metrics, metrics_route
    from callproof.telemetry.summary import AttemptSummary, CallSummary
    from callproof.telemetry.tracing import Tracing, enable_tracing

__all__ = [
    "AttemptSummary",
    "CallSummary",
    "Metrics",
    "Tracing",
    "enable_tracing",
    "metrics_route",
]

_WHERE = {
    "Metrics": "metrics",
    "metrics_route": "metrics",
    "AttemptSummary": "summary",
    "CallSummary": "summary",
    "Tracing": "tracing",
    "enable_tracing": "tracing",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"callproof.telemetry.{_WHERE[name]}"), name)
    raise AttributeError(name)
