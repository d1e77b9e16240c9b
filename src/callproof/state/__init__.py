"""Shared state for routers: where breakers, latency samples and cooldowns live.

* :class:`InProcessState` - the default: every router keeps its state in its own process.
* :class:`RedisState` - every replica of a gateway (processes on one host, or hosts behind a
  load balancer) shares breaker state and counters, the adaptive watchdog's and the hedge's
  latency samples, and Retry-After cooldown windows through one Redis server.
* :func:`state_from_url` - the backend of ``[serve] state`` (``"memory"`` or
  ``"redis://HOST:PORT/DB"``).

A backend is attached to a :class:`~callproof.resilience.Router` after the router is built
(``backend.attach(router)``); requests never wait on it. See ``docs/scale.md``.
"""

from __future__ import annotations

from callproof.state.base import InProcessState, StateBackend, state_from_url
from callproof.state.redis_backend import RedisState

__all__ = ["InProcessState", "RedisState", "StateBackend", "state_from_url"]
