"""How long to wait before trying again: one pure formula and a server's word.

Exponential backoff with full jitter (AWS's "full jitter": a uniform draw in
``[0, min(max, initial x multiplier^(n-1))]``) spreads the retries of many callers. When the
server says how long to wait (``retry-after-ms`` or AWS's ``x-amz-retry-after`` in
milliseconds, or ``Retry-After`` in seconds or as an HTTP date; one parser,
:func:`parse_retry_after`, which is the dialects' own) its value wins over the formula, up
to a cap so a hostile or buggy header cannot park a caller for an hour.

``VirtualClock`` is re-exported from :mod:`callproof.clock`, where it lives now.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from callproof.clock import VirtualClock
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
