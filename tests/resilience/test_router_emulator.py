"""Each mechanism against the emulator's faults, over the real client and wire on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from callproof.client import Client
from callproof.errors import AllAttemptsFailed, StallMidStream
from callproof.resilience import (
    BreakerPolicy,
    HedgePolicy,
    RetryPolicy,
    RoutePolicy,
    Router,
    VirtualClock,
    WatchdogPolicy,
    router_from_config,
    run_route_attempt,
)
from callproof.scenarios import tool_result
from callproof.targets import Target, Timeouts

from .conftest import ScriptedFaults, wait_for_streams_closed

CONV = tool_result().conversation
NO_HEDGE = RoutePolicy(hedge=HedgePolicy(mode="off"))
MakeTarget = Callable[..., Target]


async def test_retry_on_429_honours_retry_after(make_target: MakeTarget) -> None:
    transport = ScriptedFaults(["http_error:429", None])
    vc = VirtualClock(follow_real_time=True)
    async with Client(transport=transport) as client:
        router = Router("r", [make_target("nova")], client=client, policy=NO_HEDGE, sleep=vc.sleep)
        resp = await router.complete(CONV)
    assert "22" in resp.text
    assert vc.sleeps == [
        pytest.approx(1.0, abs=0.05)
    ]  # the emulator's Retry-After: 1, not the jittered backoff
    assert [(a["outcome"], a["error"] and a["error"]["status"]) for a in resp.attempts] == [
        ("http_error", 429),
        ("ok", None),
    ]
    assert transport.sent == ["http_error:429", None]


async def test_no_retry_after_output_reached_the_caller(
    make_target: MakeTarget, emulator: Any
) -> None:
    a = make_target("a", fault="stall_after:2")
    b = make_target("b")
    transport = ScriptedFaults([])
    async with Client(transport=transport) as client:
        router = Router("r", [a, b], client=client, policy=NO_HEDGE)
        kinds: list[str] = []
        with pytest.raises(StallMidStream):
            async with router.stream(CONV) as s:
                async for ev in s:
                    kinds.append(ev.kind)
    assert "text_delta" in kinds
    assert len(transport.sent) == 1  # b was never asked
    assert await wait_for_streams_closed(emulator) == 0


async def test_buffered_stream_retries_after_a_mid_stream_stall(make_target: MakeTarget) -> None:
    a = make_target("a", fault="stall_after:2")
    b = make_target("b")
    async with Client() as client:
        router = Router("r", [a, b], client=client, policy=NO_HEDGE.replace(buffered=True))
        text = ""
        async with router.stream(CONV) as s:
            async for ev in s:
                if ev.kind == "text_delta":
                    text += ev.text  # type: ignore[union-attr]
    assert "22" in text
    assert [x["outcome"] for x in s.attempts] == ["stall_mid_stream", "ok"]


async def test_hedge_wins_against_hang_no_events_and_closes_the_loser(
    make_target: MakeTarget, emulator: Any
) -> None:
    slow = Timeouts(connect=2.0, first_event=5.0, idle=1.0, deadline=10.0)
    kimi = make_target(
        "bedrock-kimi", "moonshotai.kimi-k2.5", fault="hang_no_events", timeouts=slow
    )
    orr = make_target("openrouter-kimi", "moonshotai/kimi-k2.5", api="openai-completions")
    policy = RoutePolicy(hedge=HedgePolicy(mode="fixed", delay_s=0.2))
    async with Client() as client:
        router = Router("kimi", [kimi, orr], client=client, policy=policy)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        resp = await router.complete(CONV)
        elapsed = loop.time() - t0
    assert "22" in resp.text
    assert elapsed < 2.0  # not the 5 s first-event timeout
    first, second = resp.attempts
    assert first["target"] == "bedrock-kimi"
    assert first["outcome"] == "abandoned"
    assert first["abandoned_reason"] == "lost hedge race"
    assert first["timings"]["headers_s"] is not None  # headers came, then nothing
    assert first["timings"]["first_event_s"] is None
    assert second["target"] == "openrouter-kimi"
    assert second["hedge"] is True
    assert router.requests == 2
    assert await wait_for_streams_closed(emulator) == 0  # the hung stream was disconnected


async def test_fallback_follows_the_route_order(make_target: MakeTarget) -> None:
    targets = [
        make_target("a", fault="http_error:500"),
        make_target("b", fault="hang_no_events", timeouts=Timeouts(2.0, 0.3, 0.5, 5.0)),
        make_target("c", fault="close_without_stop"),
        make_target("d", "mistral.mistral-large-3-675b-instruct"),
    ]
    async with Client() as client:
        router = Router("r", targets, client=client, policy=NO_HEDGE)
        resp = await router.complete(CONV)
    assert [(x["target"], x["outcome"]) for x in resp.attempts] == [
        ("a", "http_error"),
        ("b", "stall_no_events"),
        ("c", "incomplete_stream"),
        ("d", "ok"),
    ]
    assert "22" in resp.text


async def test_all_attempts_failed_carries_every_error(make_target: MakeTarget) -> None:
    targets = [
        make_target("a", fault="http_error:404"),
        make_target("b", fault="stream_exception:modelStreamErrorException"),
    ]
    vc = VirtualClock(follow_real_time=True)
    policy = NO_HEDGE.replace(retry=RetryPolicy(max_attempts=3))
    async with Client() as client:
        router = Router("r", targets, client=client, policy=policy, sleep=vc.sleep)
        with pytest.raises(AllAttemptsFailed) as info:
            await router.complete(CONV)
    errors = info.value.exceptions
    assert [(e.target, e.outcome) for e in errors] == [
        ("a", "http_error"),  # 404: not retryable (and no refusal), a is done
        ("b", "stream_exception"),  # retryable: b again after its backoff
        ("b", "stream_exception"),
    ]
    assert errors[0].status == 404
    assert errors[1].error_type is not None
    assert "modelstreamerror" in errors[1].error_type.lower()
    assert len(vc.sleeps) == 1
    assert [x["attempt"] for x in info.value.attempts] == [1, 2, 3]  # type: ignore[attr-defined]


async def test_breaker_opens_half_opens_and_closes(make_target: MakeTarget) -> None:
    vc = VirtualClock(follow_real_time=True)
    a = make_target("a", timeouts=Timeouts(2.0, 0.3, 0.5, 5.0))
    b = make_target("b", "mistral.mistral-large-3-675b-instruct")
    transport = ScriptedFaults(["hang_no_events", None, "hang_no_events", None])
    policy = NO_HEDGE.replace(breaker=BreakerPolicy(failures=2, open_s=60.0, stall_rate=1.0))
    async with Client(transport=transport) as client:
        router = Router("r", [a, b], client=client, policy=policy, clock=vc.clock)
        for _ in range(2):  # a stalls, b answers; twice
            await router.complete(CONV)
        assert router.breaker_states() == {"a": "open", "b": "closed"}
        resp = await router.complete(CONV)
        assert [(x["target"], x["outcome"]) for x in resp.attempts] == [
            ("a", "skipped"),
            ("b", "ok"),
        ]
        vc.now += 61
        assert router.breaker_states()["a"] == "half_open"
        resp = await router.complete(CONV)  # the probe: a answers
        assert resp.attempts[0]["target"] == "a"
        assert resp.attempts[0]["outcome"] == "ok"
        assert router.breaker_states()["a"] == "closed"


async def test_adaptive_watchdog_spares_slow_healthy_and_catches_a_hang(
    make_target: MakeTarget,
) -> None:
    # cold start 3 s; three healthy answers after ~0.3 s teach a timeout of ~0.6-0.7 s
    thinker = make_target("thinker", timeouts=Timeouts(2.0, 3.0, 1.0, 10.0))
    transport = ScriptedFaults(["latency:0.3"] * 3 + ["latency:0.4", "hang_no_events"])
    policy = NO_HEDGE.replace(
        retry=RetryPolicy(max_attempts=1),
        watchdog=WatchdogPolicy(min_samples=3, factor=2.0, floor_s=0.2, ceiling_s=3.0),
    )
    async with Client(transport=transport) as client:
        router = Router("r", [thinker], client=client, policy=policy)
        for _ in range(3):
            await router.complete(CONV)
        learned = router.watchdog.first_event_timeout(thinker)
        assert learned is not None
        assert 0.55 < learned < 2.0  # 2 x the slowest of ~0.3 s answers, whatever the load
        resp = await router.complete(CONV)  # slower than ever seen, and healthy: not cut off
        assert "22" in resp.text
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(AllAttemptsFailed) as info:
            await router.complete(CONV)
        waited = loop.time() - t0
        assert waited < learned + 0.5  # caught at the learned timeout, not the 3 s cold one
        assert waited < 2.5
    assert info.value.exceptions[0].outcome == "stall_no_events"


async def test_run_route_attempt_records_requests_and_attempts(make_target: MakeTarget) -> None:
    kimi = make_target("bedrock-kimi", "moonshotai.kimi-k2.5", fault="hang_no_events")
    orr = make_target("openrouter-kimi", "moonshotai/kimi-k2.5", api="openai-completions")
    policy = RoutePolicy(hedge=HedgePolicy(mode="fixed", delay_s=0.1))
    async with Client() as client:
        router = Router("kimi", [kimi, orr], client=client, policy=policy)
        attempt = await run_route_attempt(router, tool_result())
    record = attempt.to_record()
    assert attempt.target == "route:kimi"
    assert record["outcome"] == "ok"
    assert record["passed"] is True
    assert record["requests"] == 2
    assert [a["target"] for a in record["route_attempts"]] == ["bedrock-kimi", "openrouter-kimi"]


async def test_run_route_attempt_when_everything_fails(make_target: MakeTarget) -> None:
    a = make_target("a", fault="http_error:400")
    async with Client() as client:
        router = Router("r", [a], client=client, policy=NO_HEDGE)
        attempt = await run_route_attempt(router, tool_result())
    record = attempt.to_record()
    assert record["outcome"] == "http_error"
    assert record["passed"] is False
    assert record["requests"] == 1
    assert record["error"]["status"] == 400
    assert "route r" in record["detail"]


async def test_router_from_config(tmp_path: Path, emulator: Any) -> None:
    from callproof.probe.config import load_config

    path = tmp_path / "callproof.toml"
    path.write_text(
        f"""
[providers.emu-bedrock]
api = "bedrock-converse-stream"
endpoint = "{emulator.url}"
region = "us-east-1"

[providers.emu-openrouter]
api = "openai-completions"
endpoint = "{emulator.url}/v1"

[targets.nova]
provider = "emu-bedrock"
model = "amazon.nova-pro-v1:0"

[targets.kimi-or]
provider = "emu-openrouter"
model = "moonshotai/kimi-k2.5"

[routes.both]
targets = ["nova", "kimi-or"]
hedge = "off"
retry = {{ max_attempts = 2 }}
""",
        encoding="utf-8",
    )
    config = load_config(path)
    async with Client() as client:
        router = router_from_config(config, "both", client)
        assert [t.name for t in router.targets] == ["nova", "kimi-or"]
        assert router.policy.hedge.mode == "off"
        assert router.policy.retry.max_attempts == 2
        resp = await router.complete(CONV)
        assert "22" in resp.text
        from callproof.errors import ConfigError

        with pytest.raises(ConfigError, match="unknown route"):
            router_from_config(config, "nope", client)


async def test_hedge_wins_against_hang_before_headers(make_target: MakeTarget) -> None:
    slow = Timeouts(connect=2.0, first_event=5.0, idle=1.0, deadline=10.0)
    a = make_target("a", fault="hang_before_headers", timeouts=slow)
    b = make_target("b", "mistral.mistral-large-3-675b-instruct")
    policy = RoutePolicy(hedge=HedgePolicy(mode="fixed", delay_s=0.1))
    async with Client() as client:
        router = Router("r", [a, b], client=client, policy=policy)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        async with router.stream(CONV) as s:
            kinds = [ev.kind async for ev in s]
        assert loop.time() - t0 < 2.0
    assert kinds[0] == "start"
    assert kinds[-1] == "stop"
    first = s.attempts[0]
    assert first["outcome"] == "abandoned"
    assert first["timings"] is None or first["timings"]["headers_s"] is None
    assert s.attempts[1]["target"] == "b"
