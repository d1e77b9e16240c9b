"""Shared state through a real Redis server: replicas (routers with their own connection)
share breakers, counters, latencies and cooldowns; Redis down or slow falls back locally."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from callproof.client import Client
from callproof.errors import ConfigError
from callproof.resilience import BreakerPolicy, HedgePolicy, RoutePolicy, Router, WatchdogPolicy
from callproof.scenarios import tool_result
from callproof.state import InProcessState, RedisState, StateBackend, state_from_url
from callproof.state.base import namespace_for
from callproof.targets import Target

from .conftest import RedisServer

CONV = tool_result().conversation
POLICY = RoutePolicy(
    hedge=HedgePolicy(mode="off"),
    breaker=BreakerPolicy(failures=3, open_s=30.0, reopen_initial_s=30.0, min_calls=10),
    watchdog=WatchdogPolicy(mode="fixed"),
)
MakeTarget = Callable[..., Target]


def _primary_requests(router: Router, records: list[list[dict[str, Any]]], name: str) -> int:
    return sum(1 for rec in records for a in rec if a["target"] == name and a.get("sent"))


async def _wait(cond: Callable[[], bool], within: float = 5.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if cond():
            return True
        await asyncio.sleep(0.01)
    return cond()


def test_state_from_url() -> None:
    assert isinstance(state_from_url(None), InProcessState)
    assert isinstance(state_from_url("memory"), InProcessState)
    redis_state = state_from_url("redis://127.0.0.1:6379/2", config_name="my gateway/prod")
    assert isinstance(redis_state, RedisState)
    assert redis_state.namespace == "callproof:my_gateway_prod"
    assert namespace_for("") == "callproof:default"
    with pytest.raises(ConfigError, match=r"unsupported state backend 'memcached'") as info:
        state_from_url("memcached://x")
    assert info.value.where == "serve.state"


def test_status_never_shows_a_password() -> None:
    backend = state_from_url("redis://user:s3cret-pass@127.0.0.1:6379/0")
    assert "s3cret-pass" not in repr(backend.status())
    assert backend.status()["kind"] == "redis"


def test_samples_observed_during_a_round_trip_are_not_seeded_twice() -> None:
    """A read that left before samples were observed here finds fewer shared samples than the
    local window holds; that is not Redis losing them (a restart), so no seed is queued (it
    would publish them twice) and the local window keeps them (the next sync writes them)."""
    from tests.resilience.fakes import target

    router = Router("r", [target("b")], client=None, policy=POLICY)  # type: ignore[arg-type]
    backend = RedisState("redis://127.0.0.1:9/0", namespace="callproof:unit")
    backend.attach(router)
    (mirror,) = backend._mirrors
    for v in (0.11, 0.12, 0.13):
        router.watchdog.observe("b", v)
    # what the round trip in flight read: no shared open, fails, window or latency yet
    mirror.apply([None, -2, None, [], [], -2])
    assert [op[0] for op in mirror.pending] == ["latency"] * 3
    assert router.watchdog.window("b").values() == [0.11, 0.12, 0.13]
    # once they are written, a read that has fewer samples than the window is a restart
    mirror.pending.clear()
    mirror.apply([None, -2, None, [], [b"0.11"], -2])
    assert [op[0] for op in mirror.pending] == ["seed"]


async def test_aclose_ends_the_sync_task_when_its_cancel_is_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python 3.11's ``asyncio.wait_for``, which redis-py puts around every send, returns the
    send's result when the cancel arrives in the loop turn the send completes: the sync task
    never sees the cancel. ``aclose`` waited on that task for ever (the suite's hang under
    load); it must end the loop anyway, after the round trip in flight."""
    backend = RedisState("redis://127.0.0.1:9/0", namespace="callproof:unit")
    in_round_trip = asyncio.Event()
    round_trips = 0

    async def sync_that_loses_the_cancel() -> None:
        nonlocal round_trips
        round_trips += 1
        in_round_trip.set()
        with contextlib.suppress(asyncio.CancelledError):  # as wait_for on 3.11 can
            await asyncio.sleep(0.05)

    monkeypatch.setattr(backend, "sync_once", sync_that_loses_the_cancel)
    await backend.start()
    await in_round_trip.wait()
    async with asyncio.timeout(30):  # a generous bound: without the fix this never returns
        await backend.aclose()
    assert backend.status()["syncs"] == 0
    assert round_trips == 1  # the round trip in flight was the last one


async def _replicas(
    make_target: MakeTarget, server: RedisServer | None, client: Client
) -> tuple[list[Router], list[StateBackend]]:
    routers, backends = [], []
    for _ in range(2):
        primary = make_target("bedrock-kimi", fault="hang_no_events")
        backup = make_target("openrouter-kimi")
        router = Router("kimi", [primary, backup], client=client, policy=POLICY)
        backend: StateBackend = (
            RedisState(server.url, namespace="callproof:test-fleet", op_timeout_s=2.0)
            if server is not None
            else InProcessState()
        )
        backend.attach(router)
        await backend.start()
        routers.append(router)
        backends.append(backend)
    return routers, backends


async def _load(
    routers: list[Router], calls: int, *, stagger_s: float = 1.0
) -> list[list[list[dict[str, Any]]]]:
    """``calls`` calls per replica; replica k starts ``k * stagger_s`` after the first (a
    load balancer sends it traffic later, so the first replica meets the hang first)."""

    async def replica(k: int, router: Router) -> list[list[dict[str, Any]]]:
        await asyncio.sleep(k * stagger_s)
        out = []
        for _ in range(calls):
            resp = await router.complete(CONV)
            assert "22" in resp.text  # never a failed call: the backup serves
            out.append(resp.attempts)
            await asyncio.sleep(0.05)
        return out

    return list(await asyncio.gather(*(replica(k, r) for k, r in enumerate(routers))))


@pytest.mark.slow
async def test_two_replicas_share_a_breaker_while_the_primary_hangs(
    make_target: MakeTarget, redis_server: RedisServer
) -> None:
    async with Client() as client:
        shared, backends = await _replicas(make_target, redis_server, client)
        try:
            shared_records = await _load(shared, calls=8)
        finally:
            for b in backends:
                await b.aclose()
        alone, _ = await _replicas(make_target, None, client)
        alone_records = await _load(alone, calls=8)

    opened = [
        t["at"]
        for r in shared
        for t in r.breaker_transitions()
        if t["to"] == "open" and t["target"] == "bedrock-kimi"
    ]
    assert len(opened) == 2, shared[0].breaker_transitions() + shared[1].breaker_transitions()
    staleness = max(opened) - min(opened)
    # The contract: a breaker opened on one replica is open on the others within 1 s.
    assert staleness <= 1.0, staleness
    states = {r.breaker_states()["bedrock-kimi"] for r in shared}
    assert states == {"open"}, [r.breaker_transitions() for r in shared]
    reasons = [t["reason"] for r in shared for t in r.breaker_transitions()]
    assert any("replica" in reason for reason in reasons), reasons

    sent_shared = sum(
        _primary_requests(r, rec, "bedrock-kimi")
        for r, rec in zip(shared, shared_records, strict=True)
    )
    sent_alone = sum(
        _primary_requests(r, rec, "bedrock-kimi")
        for r, rec in zip(alone, alone_records, strict=True)
    )
    # Unshared, each replica pays breaker.failures hung requests of its own (3 + 3); shared,
    # the counters add up across replicas and the circuit opens for both together.
    assert sent_alone >= 6
    assert sent_shared < sent_alone, (sent_shared, sent_alone)


async def test_an_open_circuit_reaches_the_other_replica(redis_server: RedisServer) -> None:
    from tests.resilience.fakes import target

    routers, backends = [], []
    for _ in range(2):
        router = Router("r", [target("a"), target("b")], client=None, policy=POLICY)  # type: ignore[arg-type]
        backend = RedisState(redis_server.url, namespace="callproof:t2", op_timeout_s=2.0)
        backend.attach(router)
        await backend.start()
        routers.append(router)
        backends.append(backend)
    a, b = routers
    try:
        assert await _wait(lambda: all(x.healthy for x in backends))
        for _ in range(3):
            a.breakers["a"].record_failure()
        assert a.breakers["a"].state == "open"
        t0 = time.monotonic()
        assert await _wait(lambda: b.breakers["a"].state == "open", within=3.0)
        assert time.monotonic() - t0 <= 1.0
        assert b.breakers["b"].state == "closed"
        # what B adopted ends with A's cool-down, not a fresh one of its own
        assert 28.0 < b.breakers["a"].open_remaining_s() <= 30.0

        # a probe that succeeds on A closes the shared circuit; B stops waiting out its copy
        a.breakers["a"].adopt("half_open", "test: cool-down over")
        assert a.breakers["a"].allow()
        a.breakers["a"].record_success()
        assert await _wait(lambda: b.breakers["a"].state != "open", within=3.0)
        assert b.breakers["a"].state == "half_open"

        # latencies: A's healthy samples feed B's watchdog and hedge window
        for v in (0.11, 0.12, 0.13):
            a.watchdog.observe("b", v)
        assert await _wait(lambda: len(b.watchdog.window("b")) == 3)
        assert b.watchdog.window("b").values() == [0.11, 0.12, 0.13]

        # every key is namespaced by the config name and expires
        probe = Redis.from_url(redis_server.url)
        try:
            keys = [k.decode() async for k in probe.scan_iter("*")]
            assert keys
            assert all(k.startswith("callproof:t2:route:r:target:") for k in keys), keys
            for key in keys:
                assert await probe.pttl(key) > 0, key
        finally:
            await probe.aclose()
    finally:
        for backend in backends:
            await backend.aclose()


@pytest.mark.slow
async def test_redis_killed_mid_load_then_back(
    make_target: MakeTarget, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="callproof.state")
    healthy = make_target("nova")
    async with Client() as client:
        routers, backends = [], []
        for _ in range(2):
            router = Router("r", [healthy], client=client, policy=POLICY)
            # a roomy op timeout: on a loaded machine a slow round trip would be an outage too
            backend = RedisState(
                redis_server.url, namespace="callproof:kill", outage_retry_s=0.2, op_timeout_s=2.0
            )
            backend.attach(router)
            await backend.start()
            routers.append(router)
            backends.append(backend)
        try:
            assert await _wait(lambda: all(b.healthy for b in backends))
            results: list[bool] = []

            async def load(router: Router, stop: asyncio.Event) -> None:
                while not stop.is_set():
                    resp = await router.complete(CONV)
                    results.append("22" in resp.text)
                    await asyncio.sleep(0.01)

            stop = asyncio.Event()
            tasks = [asyncio.create_task(load(r, stop)) for r in routers]
            await asyncio.sleep(0.5)
            redis_server.stop()  # killed, mid-load
            assert await _wait(lambda: not any(b.healthy for b in backends))
            await asyncio.sleep(1.0)
            during = len(results)
            redis_server.start()  # back on the same port, empty
            assert await _wait(lambda: all(b.healthy for b in backends), within=10.0)
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*tasks)
        finally:
            for backend in backends:
                await backend.aclose()
    assert results
    assert all(results)  # no request failed because of Redis
    assert len(results) > during  # and calls went on after it came back
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and r.name == "callproof.state"
    ]
    # one warning per replica for the one outage, however many syncs failed meanwhile
    assert len(warnings) == 2, [r.getMessage() for r in warnings]
    assert all("local state" in r.getMessage() for r in warnings)
    assert sum("is back" in r.getMessage() for r in caplog.records) == 2
    assert all(b.outages == 1 for b in backends)
    # after the restart the replicas taught the empty Redis what they knew again
    assert all(len(r.watchdog.window("nova")) > 0 for r in routers)


@pytest.mark.slow
async def test_redis_slow_falls_back_without_failing_a_request(
    make_target: MakeTarget, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="callproof.state")
    async with Client() as client:
        router = Router("r", [make_target("nova")], client=client, policy=POLICY)
        backend = RedisState(redis_server.url, namespace="callproof:slow", outage_retry_s=0.2)
        backend.attach(router)
        await backend.start()
        try:
            assert await _wait(lambda: backend.healthy)
            assert redis_server.proc is not None
            os.kill(
                redis_server.proc.pid, signal.SIGSTOP
            )  # hangs: accepts nothing, answers nothing
            try:
                t0 = time.monotonic()
                for _ in range(5):
                    resp = await router.complete(CONV)
                    assert "22" in resp.text
                assert await _wait(lambda: not backend.healthy)
                took = time.monotonic() - t0
            finally:
                os.kill(redis_server.proc.pid, signal.SIGCONT)
            assert await _wait(lambda: backend.healthy, within=10.0)
        finally:
            await backend.aclose()
    assert took < 30  # the calls never waited on the hung Redis for long
    assert (
        len(
            [
                r
                for r in caplog.records
                if r.levelno == logging.WARNING and r.name == "callproof.state"
            ]
        )
        == 1
    )


async def test_retry_after_windows_are_shared(
    make_target: MakeTarget, redis_server: RedisServer
) -> None:
    from callproof.resilience import RetryPolicy

    policy = RoutePolicy(
        hedge=HedgePolicy(mode="off"),
        retry=RetryPolicy(wait_retry_after_max_s=0),  # fall over at once, remember the window
        watchdog=WatchdogPolicy(mode="fixed"),
    )
    async with Client() as client:
        routers, backends = [], []
        for _ in range(2):
            primary = make_target("primary", fault="http_error:429")
            router = Router("r", [primary, make_target("backup")], client=client, policy=policy)
            backend = RedisState(redis_server.url, namespace="callproof:cool")
            backend.attach(router)
            await backend.start()
            routers.append(router)
            backends.append(backend)
        a, b = routers
        try:
            resp = await a.complete(CONV)
            assert [x["target"] for x in resp.attempts] == ["primary", "backup"]
            # the server's Retry-After (1 s) is a window on the router, for every call
            assert 0 < a.cooldowns["primary"] - a.clock() <= 1.0
            # ... and on the other replica: a longer window set on A reaches B
            a.cooldowns["primary"] = a.clock() + 5.0
            assert await _wait(lambda: b.cooldowns.get("primary", 0) - b.clock() > 3.0)
            resp = await b.complete(CONV)
            # B never sent to the throttled primary: it went to the backup at once
            assert [x["target"] for x in resp.attempts] == ["backup"]
        finally:
            for backend in backends:
                await backend.aclose()


async def test_a_router_attached_after_start_is_shared(redis_server: RedisServer) -> None:
    from tests.resilience.fakes import target

    first = RedisState(redis_server.url, namespace="callproof:late", op_timeout_s=2.0)
    first.attach(Router("early", [target("a")], client=None, policy=POLICY))  # type: ignore[arg-type]
    await first.start()
    other = RedisState(redis_server.url, namespace="callproof:late", op_timeout_s=2.0)
    remote = Router("late", [target("t")], client=None, policy=POLICY)  # type: ignore[arg-type]
    other.attach(remote)
    await other.start()
    try:
        assert await _wait(lambda: first.healthy and other.healthy, within=15.0)
        late = Router("late", [target("t")], client=None, policy=POLICY)  # type: ignore[arg-type]
        first.attach(late)  # as the gateway does for a target: router made on first use
        for _ in range(3):
            late.breakers["t"].record_failure()
        assert await _wait(lambda: remote.breakers["t"].state == "open", within=15.0)
    finally:
        await first.aclose()
        await other.aclose()


async def test_a_circuit_closed_during_an_outage_reaches_the_others(
    redis_server: RedisServer,
) -> None:
    from tests.resilience.fakes import target

    routers, backends = [], []
    for _ in range(2):
        router = Router("r", [target("a")], client=None, policy=POLICY)  # type: ignore[arg-type]
        backend = RedisState(
            redis_server.url, namespace="callproof:freeze", op_timeout_s=0.3, outage_retry_s=0.2
        )
        backend.attach(router)
        await backend.start()
        routers.append(router)
        backends.append(backend)
    a, b = routers
    try:
        assert await _wait(lambda: all(x.healthy for x in backends), within=15.0)
        for _ in range(3):
            a.breakers["a"].record_failure()
        assert await _wait(lambda: b.breakers["a"].state == "open", within=15.0)
        assert redis_server.proc is not None
        os.kill(redis_server.proc.pid, signal.SIGSTOP)  # Redis hangs
        try:
            assert await _wait(lambda: not backends[0].healthy, within=15.0)
            a.breakers["a"].adopt("half_open", "test: cool-down over")
            assert a.breakers["a"].allow()
            a.breakers["a"].record_success()  # closed while nobody could hear it
            assert a.breakers["a"].state == "closed"
            await asyncio.sleep(0.5)
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        # the closing was kept for the next round trip: B stops waiting out its 30 s copy
        assert await _wait(lambda: b.breakers["a"].state != "open", within=15.0)
        assert b.breakers["a"].state == "half_open"
    finally:
        for backend in backends:
            await backend.aclose()
