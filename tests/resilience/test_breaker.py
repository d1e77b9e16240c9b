"""Circuit breaker state machine on a virtual clock."""

from __future__ import annotations

import logging

import pytest

from callproof.resilience import BreakerPolicy, CircuitBreaker, VirtualClock


def make(**kw: object) -> tuple[CircuitBreaker, VirtualClock]:
    vc = VirtualClock()
    policy = BreakerPolicy(
        **{
            "failures": 3,
            "open_s": 10.0,
            "reopen_initial_s": 10.0,
            "window": 10,
            "min_calls": 5,
            **kw,
        }
    )  # type: ignore[arg-type]
    return CircuitBreaker("t", policy, vc.clock), vc


def test_opens_after_consecutive_failures_half_opens_and_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="callproof.resilience")
    b, vc = make()
    b.record_failure()
    b.record_failure()
    assert b.state == "closed"
    assert b.allow()
    b.record_failure()
    assert b.state == "open"
    assert not b.allow()
    assert not b.would_allow()
    vc.now += 9.9
    assert b.state == "open"
    vc.now += 0.2
    assert b.state == "half_open"
    assert b.would_allow()
    assert b.allow()  # the one probe
    assert not b.allow()  # no second probe while the first is out
    b.record_success()
    assert b.state == "closed"
    assert [(t.old, t.new) for t in b.transitions] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert "circuit of t: closed -> open (3 consecutive failures)" in caplog.text


def test_failed_probe_reopens_for_a_short_delay_growing_up_to_open_s() -> None:
    b, vc = make(open_s=10.0, reopen_initial_s=2.0, reopen_multiplier=2.0)
    for _ in range(3):
        b.record_failure()
    assert b.cooldown_s == 2.0  # the first cool-down is the short one: a recovery is seen soon
    vc.now += 2
    delays = []
    for _ in range(5):
        assert b.state == "half_open"
        assert b.allow()
        b.record_failure(stall=True)
        assert b.state == "open"
        delays.append(b.cooldown_s)
        vc.now += b.cooldown_s * 0.75
        assert b.state == "open"  # not early
        vc.now += b.cooldown_s * 0.25
    assert delays == [4.0, 8.0, 10.0, 10.0, 10.0]
    opens = [t.to_dict() for t in b.transitions if t.new == "open"]
    assert [t["delay_s"] for t in opens] == [2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert opens[1]["reason"] == "probe failed; reopened for 4 s"
    assert all(t.delay_s is None for t in b.transitions if t.new != "open")


def test_successful_probe_closes_and_resets_the_reopen_delay() -> None:
    b, vc = make(open_s=30.0, reopen_initial_s=1.0, reopen_multiplier=3.0)
    for _ in range(3):
        b.record_failure()
    assert b.cooldown_s == 1.0
    vc.now += 1
    assert b.allow()
    b.record_failure()
    assert b.cooldown_s == 3.0
    vc.now += 3
    assert b.allow()
    b.record_failure()
    assert b.cooldown_s == 9.0
    vc.now += 9
    assert b.allow()
    b.record_success()
    assert b.state == "closed"
    # the next outage starts again from reopen_initial_s
    for _ in range(3):
        b.record_failure()
    assert b.cooldown_s == 1.0
    vc.now += 1
    assert b.allow()
    b.record_suspected_stall()
    assert (b.state, b.cooldown_s) == ("open", 3.0)


def test_open_remaining_follows_the_current_cool_down() -> None:
    b, vc = make(open_s=10.0, reopen_initial_s=2.0)
    for _ in range(3):
        b.record_failure()
    assert b.open_remaining_s() == pytest.approx(2.0)
    vc.now += 2
    assert b.allow()
    b.record_failure()
    vc.now += 0.5
    assert b.open_remaining_s() == pytest.approx(3.5)


def test_reopen_keys_are_validated() -> None:
    from callproof.errors import ConfigError
    from callproof.resilience import RoutePolicy

    policy = RoutePolicy.from_mapping(
        {"breaker": {"reopen_initial_s": 0.5, "reopen_multiplier": 3}}
    )
    assert (policy.breaker.reopen_initial_s, policy.breaker.reopen_multiplier) == (0.5, 3.0)
    with pytest.raises(ConfigError, match=r"routes\.r\.breaker\.reopen_multiplier"):
        RoutePolicy.from_mapping({"breaker": {"reopen_multiplier": 0.5}}, where="routes.r")


def test_released_probe_slot_can_be_used_again() -> None:
    b, vc = make()
    for _ in range(3):
        b.record_failure()
    vc.now += 10
    assert b.allow()
    b.release()
    assert b.allow()


def test_success_resets_the_consecutive_count() -> None:
    b, _ = make()
    for _ in range(10):
        b.record_failure()
        b.record_failure()
        b.record_success()
    assert b.state == "closed"


def test_stall_rate_over_the_window_opens() -> None:
    b, _ = make(failures=100, stall_rate=0.3)
    for _ in range(3):
        b.record_success()
    b.record_failure(stall=True)
    assert b.state == "closed"  # 1 of 4: under min_calls anyway
    b.record_success()
    b.record_failure(stall=True)  # 2 of 6 = 33% > 30%
    assert b.state == "open"
    assert "stall rate" in b.transitions[-1].reason


def test_plain_failures_do_not_count_as_stalls() -> None:
    b, _ = make(failures=100, stall_rate=0.3)
    for _ in range(20):
        b.record_failure()
        b.record_success()
    assert b.state == "closed"
    assert b.stall_rate() == 0.0


def test_disabled_breaker_always_allows() -> None:
    b, _ = make(enabled=False)
    for _ in range(10):
        b.record_failure()
    assert b.state == "closed"
    assert b.allow()
