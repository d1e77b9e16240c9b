"""The client's HTTP transport seam: :func:`make_transport` and the fd limit.

httpx's default transport sends every request through ``httpcore.AsyncConnectionPool``, whose
``_assign_requests_to_connections`` runs on every request start and every response close and
scans every connection for each idle one and for each queued request: O(connections x requests)
per pool event. At 1,000 concurrent streams that scan was 39% of the client's CPU, at 1,500
99%; past ``max_connections`` requests queued behind it, and the router at 40% hangs livelocked
(every clock hundreds of seconds late, a healthy fallback's breaker opened).

The design that replaced it is a last-in-first-out free list of idle connections per origin:
taking a connection pops the most recently returned one or opens a new one, closing a response
pushes it back when it is idle, nothing queues (concurrency is bounded by the caller: the
probe's ``--concurrency``, the router's hedges; the fd limit by :func:`raise_fd_limit`). The
probe's workers are fixed and sequential, so each in effect keeps its own connection.

Why this design: bench/probe.py ``--designs`` measured a free list over httpcore's connections
against httpx over aiohttp's connector (an adapter behind the same httpx seam, in the bench)
and against the httpcore pool, the probe's tool-result attempts on the emulator in another
process, client CPU by ``time.process_time`` on 2 shared cores. Against httpcore's pool the
free list took 0.26-0.41x the CPU per attempt and gave 2.3-4.2x the attempts/s at 1,000
concurrent (at 5,000 the pool did not finish 10,000 attempts in 100 s); against aiohttp it gave
1.19-1.29x the attempts/s at 1,000 and 5,000 concurrent, at 1.09-1.24x the CPU per attempt.

Issue 14's short-call work then dropped httpcore and httpx's per-request and per-chunk layers
underneath the same free list: :func:`make_transport` returns :class:`callproof.h1.H1Transport`
(asyncio protocols, httptools parsing; its docstring has the figures). The httpcore-based free
list it replaced was deleted once nothing sent through it; ``bench/probe.py --designs`` still
compares the shipped transport with httpcore's pool and aiohttp.
"""

from __future__ import annotations

import resource
import ssl

import httpx

from callproof.h1 import H1Transport

__all__ = ["make_transport", "raise_fd_limit"]


def make_transport(verify: ssl.SSLContext | bool = True) -> httpx.AsyncBaseTransport:
    """The transport :class:`~callproof.client.Client` sends real requests through: the same
    free-list design without httpcore underneath (:class:`callproof.h1.H1Transport`, fewer
    layers per request and per body chunk)."""
    return H1Transport(verify=verify)


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft open-file limit towards ``wanted`` (never above the hard
    limit, never lowered); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target
