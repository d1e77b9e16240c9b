"""Retry-After: a short one (429/503, at most ``retry.wait_retry_after_max_s``) is waited out on
the same target once before falling over; a longer one falls over at once. One parser."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from callproof.client import Client
from callproof.dialects._common import retry_after_s
from callproof.errors import ConfigError, HTTPStatusError
from callproof.resilience import (
    HedgePolicy,
    RetryPolicy,
    RoutePolicy,
    Router,
    VirtualClock,
    parse_retry_after,
)
from callproof.scenarios import tool_result
from callproof.targets import Target

from .conftest import ScriptedFaults
from .fakes import FakeClient, Play, target

CONV = tool_result().conversation
NO_HEDGE = RoutePolicy(hedge=HedgePolicy(mode="off"))


def busy(status: int, after: float | None) -> Play:
    kind = "ThrottlingException" if status == 429 else "ServiceUnavailableException"
    return Play(
        "raise",
        error=HTTPStatusError(
            f"{status} {kind}", status=status, error_type=kind, retry_after_s=after
        ),
    )


def route(client: FakeClient, vc: VirtualClock, policy: RoutePolicy = NO_HEDGE) -> Router:
    client.clock = vc
    return Router(
        "r",
        [target("a"), target("b")],
        client=client,
        policy=policy,
        clock=vc.clock,
        sleep=vc.sleep,
    )


@pytest.mark.parametrize("status", [429, 503])
async def test_a_short_retry_after_is_waited_out_on_the_same_target(status: int) -> None:
    client = FakeClient({"a": [busy(status, 1.5), Play()], "b": [Play()]})
    vc = VirtualClock()
    resp = await route(client, vc).complete(CONV)
    assert vc.sleeps == [1.5]
    assert [(x["target"], x["outcome"]) for x in resp.attempts] == [
        ("a", "http_error"),
        ("a", "ok"),
    ]
    assert client.opened == {"a": 2}  # b was never asked


async def test_a_long_retry_after_falls_over_at_once() -> None:
    client = FakeClient({"a": [busy(429, 2.5)], "b": [Play()]})
    vc = VirtualClock()
    resp = await route(client, vc).complete(CONV)
    assert vc.sleeps == []
    assert [(x["target"], x["outcome"]) for x in resp.attempts] == [
        ("a", "http_error"),
        ("b", "ok"),
    ]


async def test_never_more_than_one_retry_inside_the_window() -> None:
    client = FakeClient({"a": [busy(429, 1.0), busy(429, 1.0), Play()], "b": [Play()]})
    vc = VirtualClock()
    resp = await route(client, vc).complete(CONV)
    assert vc.sleeps == [1.0]
    assert [(x["target"], x["outcome"]) for x in resp.attempts] == [
        ("a", "http_error"),
        ("a", "http_error"),
        ("b", "ok"),
    ]


async def test_without_retry_after_or_with_the_wait_off_it_falls_over() -> None:
    vc = VirtualClock()
    client = FakeClient({"a": [busy(429, None)], "b": [Play()]})
    resp = await route(client, vc).complete(CONV)
    assert [x["target"] for x in resp.attempts] == ["a", "b"]
    off = NO_HEDGE.replace(retry=RetryPolicy(wait_retry_after_max_s=0))
    client = FakeClient({"a": [busy(429, 0.5)], "b": [Play()]})
    resp = await route(client, vc, off).complete(CONV)
    assert [x["target"] for x in resp.attempts] == ["a", "b"]
    assert vc.sleeps == []


async def test_a_limit_of_five_seconds_waits_a_three_second_retry_after() -> None:
    policy = RoutePolicy.from_mapping(
        {"hedge": "off", "retry": {"wait_retry_after_max_s": 5}}, where="routes.r"
    )
    assert policy.retry.wait_retry_after_max_s == 5.0
    client = FakeClient({"a": [busy(503, 3.0), Play()], "b": [Play()]})
    vc = VirtualClock()
    resp = await route(client, vc, policy).complete(CONV)
    assert (vc.sleeps, [x["target"] for x in resp.attempts]) == ([3.0], ["a", "a"])
    with pytest.raises(ConfigError, match=r"routes\.r\.retry\.wait_retry_after_max_s"):
        RoutePolicy.from_mapping({"retry": {"wait_retry_after_max_s": -1}}, where="routes.r")


async def test_the_emulators_429_retry_after_is_waited_out_on_the_same_target(
    make_target: Callable[..., Target],
) -> None:
    transport = ScriptedFaults(["http_error:429", None])
    vc = VirtualClock(follow_real_time=True)
    async with Client(transport=transport) as client:
        router = Router(
            "r",
            [make_target("a"), make_target("b", "mistral.mistral-large-3-675b-instruct")],
            client=client,
            policy=NO_HEDGE,
            sleep=vc.sleep,
        )
        resp = await router.complete(CONV)
    assert vc.sleeps == [pytest.approx(1.0, abs=0.05)]  # the emulator's Retry-After: 1
    assert [(x["target"], x["outcome"]) for x in resp.attempts] == [
        ("a", "http_error"),
        ("a", "ok"),
    ]
    assert transport.sent == ["http_error:429", None]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500", "x-amz-retry-after": "9000", "Retry-After": "9"}, 1.5),
        ({"x-amz-retry-after": "250", "Retry-After": "9"}, 0.25),
        ({"retry-after-ms": "nan", "Retry-After": "2"}, 2.0),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "-1"}, None),
        ({"RETRY-AFTER": " 3 "}, 3.0),
    ],
)
def test_one_parser_for_dialects_and_router(
    headers: dict[str, str], expected: float | None
) -> None:
    assert retry_after_s(headers) == expected
    assert parse_retry_after(headers) == expected


def test_an_http_date_is_relative_to_now() -> None:
    now = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert retry_after_s({"Retry-After": later}, now=now.timestamp()) == pytest.approx(7.0)
    assert parse_retry_after({"Retry-After": later}, now=now.timestamp()) == pytest.approx(7.0)
