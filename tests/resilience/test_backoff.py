"""Backoff: full-jitter bounds (Hypothesis), Retry-After parsing and capping, virtual clock."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callproof.resilience import (
    BackoffPolicy,
    VirtualClock,
    backoff_delay,
    parse_retry_after,
    retry_wait,
)


@given(
    attempt=st.integers(min_value=1, max_value=200),
    initial=st.floats(min_value=0.0, max_value=10.0),
    maximum=st.floats(min_value=0.0, max_value=120.0),
    multiplier=st.floats(min_value=1.0, max_value=5.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_full_jitter_stays_within_bounds(
    attempt: int, initial: float, maximum: float, multiplier: float, seed: int
) -> None:
    cap = min(maximum, initial * multiplier ** min(attempt - 1, 64))
    d = backoff_delay(
        attempt,
        initial_s=initial,
        max_s=maximum,
        multiplier=multiplier,
        rng=random.Random(seed),
    )
    assert 0.0 <= d <= cap
    assert d <= maximum


@given(attempt=st.integers(min_value=1, max_value=30))
def test_without_jitter_the_cap_itself(attempt: int) -> None:
    d = backoff_delay(attempt, initial_s=0.1, max_s=5.0, multiplier=2.0, jitter=False)
    assert d == min(5.0, 0.1 * 2.0 ** (attempt - 1))


def test_full_jitter_spreads_over_the_whole_range() -> None:
    rng = random.Random(7)
    draws = [backoff_delay(4, initial_s=1.0, max_s=100.0, rng=rng) for _ in range(2000)]
    assert max(draws) <= 8.0
    # a uniform draw on [0, 8]: both ends are reached and the mean sits in the middle
    assert min(draws) < 0.1
    assert max(draws) > 7.9
    assert 3.6 < sum(draws) / len(draws) < 4.4


def test_attempt_counts_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        backoff_delay(0, initial_s=1.0, max_s=1.0)


def test_server_retry_after_wins_up_to_the_cap() -> None:
    policy = BackoffPolicy(initial_s=0.1, max_s=0.2, retry_after_cap_s=5.0)
    assert retry_wait(1, policy, retry_after_s=3.0) == 3.0
    assert retry_wait(1, policy, retry_after_s=60.0) == 5.0
    assert retry_wait(1, policy, retry_after_s=0.0) == 0.0
    assert 0.0 <= retry_wait(1, policy, retry_after_s=None) <= 0.1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"x-amz-retry-after": "2500"}, 2.5),
        ({"retry-after-ms": "300"}, 0.3),
        ({"x-amz-retry-after": "1000", "Retry-After": "9"}, 1.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-3"}, None),
        ({"x-amz-retry-after": "bad", "Retry-After": "4"}, 4.0),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)
    later = format_datetime(datetime(2026, 11, 21, 10, 0, 12, tzinfo=UTC), usegmt=True)
    assert parse_retry_after({"Retry-After": later}, now=now.timestamp()) == pytest.approx(12.0)
    earlier = format_datetime(datetime(2026, 11, 21, 9, 0, 0, tzinfo=UTC), usegmt=True)
    assert parse_retry_after({"Retry-After": earlier}, now=now.timestamp()) == 0.0


async def test_virtual_clock_records_waits_without_waiting() -> None:
    vc = VirtualClock()
    await vc.sleep(30.0)
    await vc.sleep(1.5)
    assert vc.sleeps == [30.0, 1.5]
    assert vc.clock() == 31.5
