"""Router logic over a scripted client: fallback, retries, hedging, breaker, records."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest

from callproof.errors import (
    AllAttemptsFailed,
    ConfigError,
    HTTPStatusError,
    ProviderError,
    StallMidStream,
    StallNoEvents,
)
from callproof.events import TextDelta
from callproof.resilience import (
    BackoffPolicy,
    BreakerPolicy,
    EmptyResponseError,
    HedgePolicy,
    RetryPolicy,
    RoutePolicy,
    Router,
    VirtualClock,
    WatchdogPolicy,
)
from callproof.scenarios import tool_call, tool_result

from .fakes import FakeClient, Play, pause, target

CONV = tool_result().conversation
NO_HEDGE = RoutePolicy(hedge=HedgePolicy(mode="off"))


def http_error(status: int, error_type: str, retry_after: float | None = None) -> ProviderError:
    return HTTPStatusError(
        f"{status} {error_type}", status=status, error_type=error_type, retry_after_s=retry_after
    )


async def test_first_target_answers() -> None:
    client = FakeClient({"a": [Play(delay=0.01)], "b": [Play()]})
    router = Router("r", [target("a"), target("b")], client=client, policy=NO_HEDGE)
    resp = await router.complete(CONV)
    assert resp.text == "It is 22 degrees."
    assert [(a["target"], a["attempt"], a["outcome"]) for a in resp.attempts] == [("a", 1, "ok")]
    assert resp.attempts[0]["abandoned_reason"] is None
    assert resp.attempts[0]["error"] is None
    assert client.opened == {"a": 1}
    assert router.requests == 1


async def test_fallback_in_route_order_on_a_stall() -> None:
    client = FakeClient({"a": [Play("hang")], "b": [Play("hang")], "c": [Play()]})
    router = Router(
        "r",
        [target("a", 0.05), target("b", 0.05), target("c")],
        client=client,
        policy=NO_HEDGE,
    )
    resp = await router.complete(CONV)
    assert [(a["target"], a["outcome"], a["abandoned_reason"]) for a in resp.attempts] == [
        ("a", "stall_no_events", "stall_no_events"),
        ("b", "stall_no_events", "stall_no_events"),
        ("c", "ok", None),
    ]
    assert resp.attempts[0]["error"]["kind"] == "StallNoEvents"
    assert client.in_flight == 0


async def test_all_attempts_failed_carries_every_error() -> None:
    client = FakeClient(
        {
            "a": [Play("hang")],
            "b": [Play("raise", error=http_error(404, "ResourceNotFoundException"))],
        }
    )
    vc = client.clock = VirtualClock()
    router = Router(
        "r",
        [target("a", 0.02), target("b")],
        client=client,
        policy=NO_HEDGE.replace(retry=RetryPolicy(max_attempts=3)),
        clock=vc.clock,
        sleep=vc.sleep,
    )
    with pytest.raises(AllAttemptsFailed) as info:
        await router.complete(CONV)
    group = info.value
    kinds = [type(e).__name__ for e in group.exceptions]
    # a stalls, b is not found (not retryable: b is done), a stalls again after its backoff
    assert kinds == ["StallNoEvents", "HTTPStatusError", "StallNoEvents"]
    assert [e.target for e in group.exceptions] == ["a", "b", "a"]
    assert [e.attempt for e in group.exceptions] == [1, 2, 3]
    assert "route r" in str(group)
    assert [a["outcome"] for a in group.attempts] == [  # type: ignore[attr-defined]
        "stall_no_events",
        "http_error",
        "stall_no_events",
    ]
    assert len(vc.sleeps) == 1
    assert 0 <= vc.sleeps[0] <= 0.2


async def test_retry_after_is_honoured_on_a_single_target() -> None:
    client = FakeClient(
        {"a": [Play("raise", error=http_error(429, "ThrottlingException", 2.5)), Play()]}
    )
    vc = client.clock = VirtualClock()
    router = Router(
        "r", [target("a")], client=client, policy=NO_HEDGE, clock=vc.clock, sleep=vc.sleep
    )
    resp = await router.complete(CONV)
    assert vc.sleeps == [2.5]
    assert [a["outcome"] for a in resp.attempts] == ["http_error", "ok"]


async def test_retry_after_is_capped() -> None:
    client = FakeClient(
        {"a": [Play("raise", error=http_error(503, "ServiceUnavailableException", 3600)), Play()]}
    )
    vc = client.clock = VirtualClock()
    policy = NO_HEDGE.replace(backoff=BackoffPolicy(retry_after_cap_s=20.0))
    router = Router("r", [target("a")], client=client, policy=policy, sleep=vc.sleep)
    await router.complete(CONV)
    assert vc.sleeps == [pytest.approx(20.0, abs=0.01)]


async def test_max_total_time_stops_the_waiting() -> None:
    client = FakeClient({"a": [Play("raise", error=http_error(429, "ThrottlingException", 25))]})
    vc = client.clock = VirtualClock()
    policy = NO_HEDGE.replace(retry=RetryPolicy(max_attempts=10, max_total_s=10.0))
    router = Router(
        "r", [target("a")], client=client, policy=policy, clock=vc.clock, sleep=vc.sleep
    )
    with pytest.raises(AllAttemptsFailed, match="max_total_s"):
        await router.complete(CONV)
    assert vc.sleeps == []
    assert client.opened["a"] == 1


async def test_non_retryable_error_on_single_target_is_final() -> None:
    client = FakeClient({"a": [Play("raise", error=http_error(424, "ModelErrorException"))]})
    router = Router("r", [target("a")], client=client, policy=NO_HEDGE)
    with pytest.raises(AllAttemptsFailed) as info:
        await router.complete(CONV)
    assert len(info.value.exceptions) == 1
    assert client.opened["a"] == 1


async def test_max_attempts_caps_retries() -> None:
    client = FakeClient({"a": [Play("hang")]})
    vc = client.clock = VirtualClock()
    policy = NO_HEDGE.replace(retry=RetryPolicy(max_attempts=3))
    router = Router("r", [target("a", 0.02)], client=client, policy=policy, sleep=vc.sleep)
    with pytest.raises(AllAttemptsFailed) as info:
        await router.complete(CONV)
    assert len(info.value.exceptions) == 3
    assert len(vc.sleeps) == 2


async def test_no_retry_after_output_reached_the_caller() -> None:
    client = FakeClient({"a": [Play("stall_after")], "b": [Play()]})
    router = Router("r", [target("a"), target("b")], client=client, policy=NO_HEDGE)
    seen = []
    with pytest.raises(StallMidStream) as info:
        async with router.stream(CONV) as s:
            async for ev in s:
                seen.append(ev.kind)
    assert seen == ["start", "text_delta"]
    assert client.opened == {"a": 1}  # no fallback to b
    assert info.value.response is not None
    assert [a["outcome"] for a in info.value.response.attempts] == ["stall_mid_stream"]


async def test_buffered_stream_and_complete_retry_after_a_mid_stream_stall() -> None:
    client = FakeClient({"a": [Play("stall_after")], "b": [Play(text="22 it is")]})
    policy = NO_HEDGE.replace(buffered=True)
    router = Router("r", [target("a"), target("b")], client=client, policy=policy)
    kinds = []
    async with router.stream(CONV) as s:
        async for ev in s:
            kinds.append(ev.kind)
    assert kinds == ["start", "text_delta", "stop"]
    assert s.response is not None
    assert s.response.text == "22 it is"
    assert [a["outcome"] for a in s.attempts] == ["stall_mid_stream", "ok"]
    # complete() never shows partial output, so it may retry too
    client2 = FakeClient({"a": [Play("stall_after")], "b": [Play()]})
    router2 = Router("r", [target("a"), target("b")], client=client2, policy=NO_HEDGE)
    resp = await router2.complete(CONV)
    assert [a["target"] for a in resp.attempts] == ["a", "b"]


async def test_a_stall_after_the_start_event_only_is_retried_in_stream_mode() -> None:
    client = FakeClient({"a": [Play("stall_after", text="")], "b": [Play()]})
    router = Router("r", [target("a"), target("b")], client=client, policy=NO_HEDGE)
    kinds = []
    async with router.stream(CONV) as s:
        async for ev in s:
            kinds.append(ev.kind)
    assert kinds == ["start", "text_delta", "stop"]
    assert [a["target"] for a in s.attempts] == ["a", "b"]


async def test_empty_answer_after_tool_result_is_retried_by_policy() -> None:
    client = FakeClient({"a": [Play("empty")], "b": [Play()]})
    router = Router("r", [target("a"), target("b")], client=client, policy=NO_HEDGE)
    resp = await router.complete(CONV)
    assert [a["outcome"] for a in resp.attempts] == ["empty_response", "ok"]
    assert resp.attempts[0]["error"]["kind"] == EmptyResponseError.__name__
    # not after a tool result: the empty answer is returned as it is
    client = FakeClient({"a": [Play("empty")], "b": [Play()]})
    router = Router("r", [target("a"), target("b")], client=client, policy=NO_HEDGE)
    resp = await router.complete(tool_call().conversation)
    assert [a["outcome"] for a in resp.attempts] == ["empty_response"]
    # and off by policy
    client = FakeClient({"a": [Play("empty")], "b": [Play()]})
    policy = NO_HEDGE.replace(retry=RetryPolicy(empty_after_tool_result=False))
    router = Router("r", [target("a"), target("b")], client=client, policy=policy)
    resp = await router.complete(CONV)
    assert len(resp.attempts) == 1


async def test_hedge_wins_against_a_hang_and_the_loser_is_closed() -> None:
    client = FakeClient({"a": [Play("hang")], "b": [Play(delay=0.01)]})
    policy = RoutePolicy(hedge=HedgePolicy(mode="fixed", delay_s=0.05))
    router = Router("r", [target("a", 5.0), target("b")], client=client, policy=policy)
    t0 = client.clock.monotonic()
    resp = await router.complete(CONV)
    elapsed = client.clock.monotonic() - t0
    assert elapsed == pytest.approx(0.06)  # the hedge at 0.05 s, its answer 0.01 s later
    assert resp.text == "It is 22 degrees."
    records = {a["target"]: a for a in resp.attempts}
    assert records["a"]["outcome"] == "abandoned"
    assert records["a"]["abandoned_reason"] == "lost hedge race"
    assert records["b"]["hedge"] is True
    assert records["b"]["outcome"] == "ok"
    assert client.closed == {"a": 1, "b": 1}  # the loser's stream was closed
    assert client.in_flight == 0
    assert router.requests == 2


async def test_hedge_on_the_same_target_when_alone() -> None:
    client = FakeClient({"a": [Play("hang"), Play(delay=0.01)]})
    policy = RoutePolicy(hedge=HedgePolicy(mode="fixed", delay_s=0.05))
    router = Router("r", [target("a", 5.0)], client=client, policy=policy)
    resp = await router.complete(CONV)
    assert [(a["attempt"], a["outcome"], a["hedge"]) for a in resp.attempts] == [
        (1, "abandoned", False),
        (2, "ok", True),
    ]


async def test_the_first_attempt_wins_when_it_is_merely_slow() -> None:
    client = FakeClient({"a": [Play(delay=0.08)], "b": [Play(delay=0.5)]})
    policy = RoutePolicy(hedge=HedgePolicy(mode="fixed", delay_s=0.03))
    router = Router("r", [target("a"), target("b")], client=client, policy=policy)
    resp = await router.complete(CONV)
    outcomes = {a["target"]: a["outcome"] for a in resp.attempts}
    assert outcomes == {"a": "ok", "b": "abandoned"}
    assert resp.attempts[1]["suspected_stall"] is False  # the backup merely came second
    assert client.in_flight == 0


async def test_hedge_budget_is_respected() -> None:
    client = FakeClient({"a": [Play("hang")], "b": [Play("hang")]})
    policy = RoutePolicy(
        hedge=HedgePolicy(mode="fixed", delay_s=0.02, max_extra=1),
        retry=RetryPolicy(max_attempts=1),
    )
    router = Router("r", [target("a", 0.2), target("b", 0.2)], client=client, policy=policy)
    with pytest.raises(AllAttemptsFailed) as info:
        await router.complete(CONV)
    assert router.requests == 2
    assert {e.target for e in info.value.exceptions} == {"a", "b"}


async def test_quantile_hedge_delay_follows_observed_latency() -> None:
    client = FakeClient({"a": [Play(delay=0.02)] * 5 + [Play("hang")], "b": [Play()]})
    policy = RoutePolicy(
        hedge=HedgePolicy(mode="quantile", quantile=0.9, factor=2.0, min_samples=5, delay_s=10.0)
    )
    router = Router("r", [target("a", 10.0), target("b")], client=client, policy=policy)
    for _ in range(5):
        await router.complete(CONV)
    t0 = client.clock.monotonic()
    resp = await router.complete(CONV)
    # hedged at 0.25 s (2 x 0.02 s, raised to min_delay_s), not the 10 s cold-start delay
    assert client.clock.monotonic() - t0 == pytest.approx(0.25)
    assert resp.attempts[-1]["target"] == "b"


async def test_breaker_opens_then_skips_then_half_opens_and_closes() -> None:
    client = FakeClient({"a": [Play("hang")] * 2 + [Play()], "b": [Play()]})
    vc = client.clock = VirtualClock()
    policy = NO_HEDGE.replace(breaker=BreakerPolicy(failures=2, open_s=30.0, stall_rate=1.0))
    router = Router(
        "r", [target("a", 0.02), target("b")], client=client, policy=policy, clock=vc.clock
    )
    await router.complete(CONV)
    assert router.breaker_states() == {"a": "closed", "b": "closed"}
    await router.complete(CONV)
    assert router.breaker_states()["a"] == "open"
    resp = await router.complete(CONV)
    assert [(a["target"], a["outcome"], a["abandoned_reason"]) for a in resp.attempts] == [
        ("a", "skipped", "circuit open"),
        ("b", "ok", None),
    ]
    assert resp.attempts[0]["sent"] is False
    assert client.opened["a"] == 2
    vc.now += 31
    assert router.breaker_states()["a"] == "half_open"
    resp = await router.complete(CONV)  # the probe goes to a and succeeds
    assert resp.attempts[0]["target"] == "a"
    assert resp.attempts[0]["breaker"] == "half_open"
    assert router.breaker_states()["a"] == "closed"
    transitions = [(t["target"], t["from"], t["to"]) for t in router.breaker_transitions()]
    assert transitions == [
        ("a", "closed", "open"),
        ("a", "open", "half_open"),
        ("a", "half_open", "closed"),
    ]


async def test_all_circuits_open_fails_fast() -> None:
    client = FakeClient({"a": [Play("hang")]})
    policy = NO_HEDGE.replace(
        breaker=BreakerPolicy(failures=1, min_calls=1), retry=RetryPolicy(max_attempts=1)
    )
    router = Router("r", [target("a", 0.02)], client=client, policy=policy)
    with pytest.raises(AllAttemptsFailed):
        await router.complete(CONV)
    with pytest.raises(AllAttemptsFailed) as info:
        await router.complete(CONV)
    assert [e.kind for e in info.value.exceptions] == ["CircuitOpenError"]
    assert client.opened["a"] == 1


async def test_hedge_losers_that_hung_feed_the_breaker() -> None:
    client = FakeClient({"a": [Play("hang")], "b": [Play(delay=0.01)]})
    policy = RoutePolicy(
        hedge=HedgePolicy(mode="fixed", delay_s=0.03),
        breaker=BreakerPolicy(failures=100, stall_rate=0.3, window=10, min_calls=3),
    )
    router = Router("r", [target("a", 5.0), target("b")], client=client, policy=policy)
    for _ in range(3):
        resp = await router.complete(CONV)
        assert resp.attempts[0]["abandoned_reason"] == "lost hedge race"
        assert resp.attempts[0]["suspected_stall"] is True
    assert router.breaker_states()["a"] == "open"
    resp = await router.complete(CONV)
    assert resp.attempts[0]["outcome"] == "skipped"
    assert client.opened["a"] == 3


async def test_adaptive_watchdog_timeouts_reach_the_client() -> None:
    client = FakeClient({"a": [Play(delay=0.01)]})
    policy = NO_HEDGE.replace(
        watchdog=WatchdogPolicy(min_samples=3, floor_s=0.5, ceiling_s=5.0, factor=3.0)
    )
    router = Router("r", [target("a", 9.0)], client=client, policy=policy)
    for _ in range(4):
        await router.complete(CONV)
    assert [t for _, t in client.timeouts_seen] == [9.0, 9.0, 9.0, 0.5]


async def test_breaking_out_of_a_stream_closes_the_connection() -> None:
    client = FakeClient({"a": [Play("stall_after")]})
    router = Router("r", [target("a", 5.0)], client=client, policy=NO_HEDGE)
    async with router.stream(CONV) as s:
        async for ev in s:
            if ev.kind == "text_delta":
                break
    assert client.in_flight == 0
    assert s.attempts[0]["abandoned_reason"] == "call closed"


async def test_cancelling_a_call_closes_every_attempt() -> None:
    client = FakeClient({"a": [Play("hang")], "b": [Play("hang")]})
    policy = RoutePolicy(hedge=HedgePolicy(mode="fixed", delay_s=0.01))
    router = Router("r", [target("a", 5.0), target("b", 5.0)], client=client, policy=policy)
    task = asyncio.create_task(router.complete(CONV))
    await pause(client.clock, 0.1)
    assert client.in_flight == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.in_flight == 0


async def test_stall_no_events_outcome_recorded_with_its_timeout() -> None:
    client = FakeClient({"a": [Play("hang")], "b": [Play()]})
    router = Router("r", [target("a", 0.03), target("b")], client=client, policy=NO_HEDGE)
    resp = await router.complete(CONV)
    first = resp.attempts[0]
    assert first["first_event_timeout_s"] == 0.03
    assert first["error"] == StallNoEvents("no event").to_dict() | {"message": "no event"}


async def test_a_cold_call_picks_up_the_learned_hedge_delay_while_waiting() -> None:
    # call 1 hangs; calls 2-4 answer fast meanwhile and teach the target's latency, so call 1
    # hedges long before the 5 s cold-start delay
    client = FakeClient({"a": [Play("hang")] + [Play(delay=0.02)] * 3, "b": [Play()]})
    policy = RoutePolicy(hedge=HedgePolicy(mode="quantile", min_samples=3, delay_s=5.0))
    router = Router("r", [target("a", 10.0), target("b")], client=client, policy=policy)
    t0 = client.clock.monotonic()
    first = asyncio.create_task(router.complete(CONV))
    await pause(client.clock, 0.01)
    await asyncio.gather(*(router.complete(CONV) for _ in range(3)))
    resp = await first
    assert client.clock.monotonic() - t0 < 1.0  # virtual seconds: not the 5 s cold delay
    assert [(a["target"], a["outcome"]) for a in resp.attempts] == [
        ("a", "abandoned"),
        ("b", "ok"),
    ]


async def test_route_stream_reports_winner_and_requests() -> None:
    client = FakeClient({"a": [Play("hang")], "b": [Play(delay=0.01)]})
    policy = RoutePolicy(hedge=HedgePolicy(mode="fixed", delay_s=0.03))
    router = Router("kimi", [target("a", 5.0), target("b")], client=client, policy=policy)
    assert router.label == "route:kimi"
    text = ""
    async with router.stream(CONV) as s:
        async for ev in s:
            if isinstance(ev, TextDelta):
                text += ev.text
    assert text == "It is 22 degrees."
    assert s.requests == 2
    assert s.winner is not None
    assert s.winner.target.name == "b"
    assert s.response is not None
    assert s.response.attempts == s.attempts
    assert client.in_flight == 0


def test_router_rejects_bad_routes() -> None:
    client = FakeClient({})
    with pytest.raises(ConfigError, match="at least one target"):
        Router("r", [], client=client)
    with pytest.raises(ConfigError, match="twice"):
        Router("r", [target("a"), target("a")], client=client)
    with pytest.raises(ConfigError, match="max_attempts"):
        Router("r", [target("a")], client=client, policy=RoutePolicy(retry=RetryPolicy(0)))


async def test_a_config_error_from_the_client_reaches_the_caller() -> None:
    client = FakeClient({"a": [Play("raise", error=None)]})

    class Boom(FakeClient):
        @asynccontextmanager
        async def stream(self, target, conversation, *, timeouts=None):  # type: ignore[no-untyped-def]
            raise ConfigError("no credentials for a")
            yield  # pragma: no cover

    router = Router("r", [target("a"), target("b")], client=Boom({}), policy=NO_HEDGE)
    with pytest.raises(ConfigError, match="no credentials"):
        await router.complete(CONV)
    assert client.in_flight == 0


async def test_run_route_attempt_counts_only_its_own_requests() -> None:
    from callproof.resilience import run_route_attempt

    # one call hangs on a and is hedged to b (2 requests); four others answer at once (1 each)
    client = FakeClient({"a": [Play("hang")] + [Play()] * 4, "b": [Play(delay=0.01)]})
    policy = RoutePolicy(hedge=HedgePolicy(mode="fixed", delay_s=0.05))
    router = Router("kimi", [target("a", 5.0), target("b")], client=client, policy=policy)
    attempts = await asyncio.gather(*(run_route_attempt(router, tool_result()) for _ in range(5)))
    records = [a.to_record() for a in attempts]
    assert sorted(r["requests"] for r in records) == [1, 1, 1, 1, 2]
    assert all(r["target"] == "route:kimi" and r["passed"] for r in records)
    assert router.requests == 6
