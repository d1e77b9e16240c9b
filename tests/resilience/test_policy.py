"""RoutePolicy: defaults, parsing from config mappings, errors that name the bad key."""

from __future__ import annotations

import pytest

from callproof.errors import ConfigError
from callproof.resilience import HedgePolicy, RoutePolicy
from callproof.resilience.policy import DEFAULT_RETRY_ON


def test_defaults_are_sensible() -> None:
    p = RoutePolicy()
    assert p.retry.max_attempts >= 2
    assert p.retry.on == DEFAULT_RETRY_ON
    assert "stall_no_events" in p.retry.on
    assert "http_error" in p.retry.on
    assert p.backoff.jitter is True
    assert p.hedge.mode == "quantile"
    assert p.hedge.max_extra == 1
    assert p.watchdog.mode == "adaptive"
    assert p.buffered is False
    assert RoutePolicy.from_mapping({}) == p


def test_from_mapping_reads_every_section() -> None:
    p = RoutePolicy.from_mapping(
        {
            "targets": ["a", "b"],
            "buffered": True,
            "retry": {"max_attempts": 6, "max_total_s": 30, "on": ["stall_no_events"]},
            "backoff": {"initial_s": 0.5, "max_s": 4, "multiplier": 3, "jitter": False},
            "hedge": {"mode": "fixed", "delay_s": 2.5, "max_extra": 2, "target": "same"},
            "breaker": {"failures": 3, "stall_rate": 0.5, "window": 10, "min_calls": 5},
            "watchdog": {"mode": "fixed", "floor_s": 1, "ceiling_s": 10},
        }
    )
    assert p.buffered is True
    assert p.retry.max_attempts == 6
    assert p.retry.max_total_s == 30.0
    assert p.retry.on == frozenset({"stall_no_events"})
    assert p.backoff.multiplier == 3.0
    assert p.backoff.jitter is False
    assert p.hedge == HedgePolicy(mode="fixed", delay_s=2.5, max_extra=2, target="same")
    assert p.breaker.failures == 3
    assert p.breaker.min_calls == 5
    assert p.watchdog.mode == "fixed"
    assert p.watchdog.ceiling_s == 10.0


@pytest.mark.parametrize(
    ("raw", "mode", "delay"),
    [("off", "off", 2.0), (1.5, "fixed", 1.5), (3, "fixed", 3.0)],
)
def test_hedge_shorthands(raw: object, mode: str, delay: float) -> None:
    p = RoutePolicy.from_mapping({"hedge": raw})
    assert p.hedge.mode == mode
    assert p.hedge.delay_s == delay


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"retries": 3}, "routes.kimi.retries"),
        ({"retry": {"max_attempt": 3}}, "routes.kimi.retry.max_attempt"),
        ({"retry": {"max_attempts": "3"}}, "routes.kimi.retry.max_attempts"),
        ({"retry": {"max_attempts": 0}}, "routes.kimi.retry.max_attempts"),
        ({"retry": {"on": ["everything"]}}, "routes.kimi.retry.on"),
        ({"backoff": {"jitter": "full"}}, "routes.kimi.backoff.jitter"),
        ({"backoff": {"multiplier": 0.5}}, "routes.kimi.backoff.multiplier"),
        ({"hedge": {"mode": "always"}}, "routes.kimi.hedge.mode"),
        ({"hedge": {"quantile": 1.5}}, "routes.kimi.hedge.quantile"),
        ({"hedge": "sometimes"}, "routes.kimi.hedge"),
        ({"breaker": {"stall_rate": 0}}, "routes.kimi.breaker.stall_rate"),
        ({"breaker": {"window": 5, "min_calls": 10}}, "routes.kimi.breaker.min_calls"),
        ({"watchdog": {"floor_s": 10, "ceiling_s": 5}}, "routes.kimi.watchdog.floor_s"),
        ({"watchdog": 3}, "routes.kimi.watchdog"),
        ({"buffered": "yes"}, "routes.kimi.buffered"),
    ],
)
def test_bad_keys_and_values_name_where(data: dict[str, object], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        RoutePolicy.from_mapping(data, where="routes.kimi")
    assert info.value.where == where
    assert where in str(info.value)


def test_to_dict_is_plain_data() -> None:
    d = RoutePolicy().to_dict()
    assert d["hedge"]["mode"] == "quantile"
    assert d["retry"]["on"] == sorted(DEFAULT_RETRY_ON)
    assert RoutePolicy.from_mapping(d) == RoutePolicy()
