"""How long to wait before trying again: one pure formula, a server's word, and a test clock.

Exponential backoff with full jitter (AWS's "full jitter": a uniform draw in
``[0, min(max, initial x multiplier^(n-1))]``) spreads the retries of many callers. When the
server says how long to wait (``retry-after-ms`` or AWS's ``x-amz-retry-after`` in
milliseconds, or ``Retry-After`` in seconds or as an HTTP date; one parser,
:func:`parse_retry_after`, which is the dialects' own) its value wins over the formula, up
to a cap so a hostile or buggy header cannot park a caller for an hour.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from callproof.dialects._common import retry_after_s
from callproof.resilience.policy import BackoffPolicy

__all__ = ["VirtualClock", "backoff_delay", "parse_retry_after", "retry_wait"]


def backoff_delay(
    attempt: int,
    *,
    initial_s: float,
    max_s: float,
    multiplier: float = 2.0,
    jitter: bool = True,
    rng: random.Random | None = None,
) -> float:
    """The wait before retry number ``attempt`` (1 for the first retry).

    With ``jitter`` (full jitter) the result is uniform in ``[0, cap]`` where
    ``cap = min(max_s, initial_s * multiplier ** (attempt - 1))``; without it, ``cap`` itself.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    # Exponent clamped so a long retry loop cannot overflow a float.
    cap = min(max_s, initial_s * multiplier ** min(attempt - 1, 64))
    if not jitter:
        return cap
    return (rng or random).uniform(0.0, cap)


def retry_wait(
    attempt: int,
    policy: BackoffPolicy,
    *,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """The wait before retry ``attempt``: the server's ``retry_after_s`` when given (capped at
    ``policy.retry_after_cap_s``), else :func:`backoff_delay` under ``policy``."""
    if retry_after_s is not None and retry_after_s >= 0:
        return min(retry_after_s, policy.retry_after_cap_s)
    return backoff_delay(
        attempt,
        initial_s=policy.initial_s,
        max_s=policy.max_s,
        multiplier=policy.multiplier,
        jitter=policy.jitter,
        rng=rng,
    )


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait according to response headers, or ``None``: the project's one parser,
    :func:`callproof.dialects._common.retry_after_s` (``retry-after-ms``, then
    ``x-amz-retry-after``, then ``Retry-After`` as seconds or an HTTP date)."""
    return retry_after_s(headers, now=now)


@dataclass
class VirtualClock:
    """A clock and sleep for tests: ``sleep`` advances time at once and records each wait.

    ``Router(..., clock=vc.clock, sleep=vc.sleep)`` zeroes every backoff wait while keeping
    the arithmetic observable (``vc.sleeps``).
    """

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)
    #: When true the clock also follows real time (for routes with real network waits).
    follow_real_time: bool = False
    _origin: float = field(default_factory=time.monotonic, init=False)

    def clock(self) -> float:
        """The virtual time in seconds."""
        if self.follow_real_time:
            return self.now + (time.monotonic() - self._origin)
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Advance virtual time by ``seconds`` without waiting (one scheduler turn)."""
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)
