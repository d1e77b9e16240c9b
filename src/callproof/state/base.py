"""The state-backend interface, the in-process default, and ``[serve] state`` parsing.

A router keeps three kinds of state that a fleet of replicas wants to share: each target's
circuit breaker (state and counters), each target's healthy first-event latencies (the adaptive
watchdog and the hedge delay read the same window), and Retry-After cooldown windows. The
router always works on its own in-process copy, synchronously; a backend only mirrors that copy
to and from somewhere shared, in the background. That is why no request can fail or wait
because of the backend.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from callproof.errors import ConfigError

if TYPE_CHECKING:
    from callproof.resilience.router import Router

__all__ = ["InProcessState", "StateBackend", "namespace_for", "state_from_url"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def namespace_for(config_name: str) -> str:
    """The key prefix of one configuration: ``callproof:NAME`` (unsafe characters become
    ``_``, so a path or a space in the name never splits a key)."""
    cleaned = _SAFE.sub("_", config_name.strip()) or "default"
    return f"callproof:{cleaned}"


class StateBackend:
    """Where routers' shared state lives. Attach routers, start, and close at the end.

    The base class is the in-process behaviour: nothing leaves the process.
    """

    #: ``"in-process"`` or ``"redis"``.
    kind = "in-process"

    def __init__(self) -> None:
        self.routers: list[Router] = []

    def attach(self, router: Router) -> None:
        """Share ``router``'s breakers, latency windows and cooldowns through this backend."""
        self.routers.append(router)

    async def start(self) -> None:
        """Begin mirroring (a background task for shared backends)."""

    async def aclose(self) -> None:
        """Stop mirroring and release connections."""

    def status(self) -> dict[str, Any]:
        """What ``GET /routes`` shows about the backend (never a password)."""
        return {"kind": self.kind, "shared": False, "healthy": True}


class InProcessState(StateBackend):
    """The default: each process keeps its own state (replicas learn separately)."""


def state_from_url(url: str | None, *, config_name: str = "default") -> StateBackend:
    """The backend of ``[serve] state``: ``None``, ``""``, ``"memory"`` or ``"in-process"``
    give :class:`InProcessState`; ``redis://HOST:PORT/DB`` (or ``rediss://``, or
    ``unix:///path``) gives :class:`~callproof.state.RedisState` with keys under
    :func:`namespace_for` ``(config_name)``. Anything else is a :class:`ConfigError`."""
    if url is None or url in ("", "memory", "in-process"):
        return InProcessState()
    if not isinstance(url, str):
        raise ConfigError(f"expected a string, got {url!r}", where="serve.state")
    if url.startswith(("redis://", "rediss://", "unix://")):
        from callproof.state.redis_backend import RedisState

        return RedisState(url, namespace=namespace_for(config_name))
    scheme = url.split("://", 1)[0] if "://" in url else url
    raise ConfigError(
        f'unsupported state backend {scheme!r}: use "redis://HOST:PORT/DB" or leave it out '
        "for in-process state",
        where="serve.state",
    )
