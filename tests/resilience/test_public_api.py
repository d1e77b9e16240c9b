"""The public surface of callproof.resilience."""

from __future__ import annotations

import callproof.resilience as resilience


def test_all_names_resolve() -> None:
    for name in resilience.__all__:
        assert getattr(resilience, name) is not None, name


def test_all_is_the_public_surface() -> None:
    public = {
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
    }
    assert set(resilience.__all__) == public


def test_errors_belong_to_the_one_tree() -> None:
    from callproof.errors import CallError

    assert issubclass(resilience.CircuitOpenError, CallError)
    assert issubclass(resilience.EmptyResponseError, CallError)
    assert resilience.EmptyResponseError("x").outcome == "empty_response"
    assert resilience.EmptyResponseError("x").retryable is True
    assert resilience.CircuitOpenError("x").retryable is False
