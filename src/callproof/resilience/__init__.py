"""Resilience: watchdogs, retries, hedging, fallback routes and circuit breaking.

* :class:`RoutePolicy` - what is retried, backoff, hedging, breaker and watchdog settings.
* :class:`Router` - ``await router.complete(conversation)`` and ``async with
  router.stream(conversation) as s``; every attempt recorded on ``Response.attempts``.
* :func:`run_route_attempt` - a routed call as a probe :class:`~callproof.attempt.Attempt`.
* :class:`RouteConfig` - ``[routes.NAME]`` of ``callproof.toml``, its policy parsed once.
* :func:`router_for` / :func:`router_from_config` - the router of a configured route (the one
  place one is built from configuration).
* :func:`served_by` - the target that served a routed response (``RouteStream.served_by``).
* Building blocks: :func:`backoff_delay`, :func:`retry_wait`, :func:`parse_retry_after`,
  :class:`VirtualClock`, :class:`AdaptiveWatchdog`, :class:`CircuitBreaker`.

See ``docs/resilience.md``.
"""

from __future__ import annotations

from callproof.resilience.backoff import (
    VirtualClock,
    backoff_delay,
    parse_retry_after,
    retry_wait,
)
from callproof.resilience.breaker import CircuitBreaker, CircuitOpenError
from callproof.resilience.configured import router_for, router_from_config
from callproof.resilience.policy import (
    BackoffPolicy,
    BreakerPolicy,
    HedgePolicy,
    RetryPolicy,
    RouteConfig,
    RoutePolicy,
    WatchdogPolicy,
)
from callproof.resilience.router import EmptyResponseError, Router, RouteStream, served_by
from callproof.resilience.routes import RouteAttempt, run_route_attempt
from callproof.resilience.watchdog import AdaptiveWatchdog, LatencyWindow

__all__ = [
    "AdaptiveWatchdog",
    "BackoffPolicy",
    "BreakerPolicy",
    "CircuitBreaker",
    "CircuitOpenError",
    "EmptyResponseError",
    "HedgePolicy",
    "LatencyWindow",
    "RetryPolicy",
    "RouteAttempt",
    "RouteConfig",
    "RoutePolicy",
    "RouteStream",
    "Router",
    "VirtualClock",
    "WatchdogPolicy",
    "backoff_delay",
    "parse_retry_after",
    "retry_wait",
    "router_for",
    "router_from_config",
    "run_route_attempt",
    "served_by",
]
