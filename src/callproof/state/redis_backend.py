"""Shared state in Redis: every replica of a gateway learns what one replica learned.

Each attached router keeps working on its own in-process breakers, latency windows and
cooldowns, synchronously, as it does without Redis. A background task mirrors them, every
``sync_interval_s`` (0.2 s) and at once after a local breaker changed state, in one pipelined
round trip that first writes what changed here and then reads what every replica wrote::

    {ns}:route:{route}:target:{target}:open       circuit open everywhere while the key lives
                                                  (JSON {id, by, reason}; PX = cool-down left)
    {ns}:route:{route}:target:{target}:fails      consecutive failures, all replicas together
    {ns}:route:{route}:target:{target}:window     recent results, 1 = stall (LPUSH + LTRIM)
    {ns}:route:{route}:target:{target}:latency    healthy first-event latencies, newest first
    {ns}:route:{route}:target:{target}:cooldown   Retry-After window (PX = seconds left)

``{ns}`` is ``callproof:CONFIG-NAME``. Every key expires (``key_ttl_s``, an hour by default;
open and cooldown keys when their window ends), so a fleet that goes away leaves nothing.

Staleness is bounded by the sync interval plus one round trip: a circuit opened on one replica
is open on the others within ``sync_interval_s + RTT`` (well under 1 s). Opening is decided on
the shared counters too, so N replicas together open after ``breaker.failures`` failures, not
N times that.

When Redis is down or slow (a round trip over ``op_timeout_s``), each replica goes on with its
local state; one WARNING is logged per outage and an INFO when Redis is back, after which the
replica republishes its open circuits and latencies. Requests never wait on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from callproof.redact import Redactor
from callproof.state.base import StateBackend

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

    from callproof.resilience.breaker import Transition
    from callproof.resilience.router import Router

__all__ = ["RedisState"]

log = logging.getLogger("callproof.state")

#: Reads per target in one sync: open value, open PTTL, fails, window, latency, cooldown PTTL.
_READS = 6
_MAX_PENDING = 10_000


@dataclass(slots=True)
class _TargetLink:
    """What this replica knows of one target's shared keys."""

    #: The id of the shared open record this replica's open circuit mirrors (adopted or
    #: published); ``None`` when the local circuit is not tied to a shared one.
    linked: str | None = None
    #: Shared open ids already seen (adopted or published), never adopted again.
    seen: set[str] = field(default_factory=set)
    #: The cooldown end (router clock) last published or adopted.
    cooldown: float = 0.0
    #: Syncs in a row that found no shared open record while the local circuit mirrors one.
    absent: int = 0


class _RouteMirror:
    """The hooks on one router and the keys of its targets."""

    def __init__(self, backend: RedisState, router: Router) -> None:
        self.backend = backend
        self.router = router
        self.pending: deque[tuple[Any, ...]] = deque(maxlen=_MAX_PENDING)
        self.links = {name: _TargetLink() for name in router.breakers}
        self.applying = False
        self._opens = 0
        #: The ops of the round trip in flight (put back when it fails).
        self.in_flight: list[tuple[Any, ...]] = []
        for name, breaker in router.breakers.items():
            breaker.on_transition = self._on_transition
            breaker.on_record = self._recorder(name)
        router.watchdog.on_observe = self._on_observe

    def key(self, target: str, what: str) -> str:
        return f"{self.backend.namespace}:route:{self.router.name}:target:{target}:{what}"

    # -- hooks (synchronous, on the request path: only append) ----------------------------

    def _on_transition(self, change: Transition) -> None:
        if self.applying:
            return
        link = self.links[change.target]
        if change.new == "open":
            self._opens += 1
            open_id = f"{self.backend.replica}:{self._opens}"
            link.linked = None
            self.pending.append(("open", change.target, open_id, change.reason))
            self.backend.wake()
        elif change.new == "closed":
            link.linked = None
            self.pending.append(("closed", change.target))
            self.backend.wake()

    def _recorder(self, target: str) -> Any:
        def record(kind: str) -> None:
            self.pending.append(("record", target, kind))
            if kind != "success":
                self.backend.wake()  # a failure may open the shared circuit: tell others now

        return record

    def _on_observe(self, target: str, seconds: float) -> None:
        if target in self.links:
            self.pending.append(("latency", target, seconds))

    # -- one sync ---------------------------------------------------------------------------

    def write(self, pipe: Pipeline) -> None:
        """Queue this replica's changes since the last sync."""
        ttl = self.backend.key_ttl_s
        ops = list(self.pending)
        self.pending.clear()
        self.in_flight = ops
        for op in ops:
            kind, target = op[0], op[1]
            breaker = self.router.breakers[target]
            if kind == "open":
                remaining = breaker.open_remaining_s()
                if remaining <= 0 or breaker.state != "open":
                    continue
                body = json.dumps({"id": op[2], "by": self.backend.replica, "reason": op[3]})
                pipe.set(self.key(target, "open"), body, px=max(1, int(remaining * 1000)))
                link = self.links[target]
                link.linked = op[2]
                link.seen.add(op[2])
            elif kind == "closed":
                pipe.delete(self.key(target, "open"), self.key(target, "window"))
                pipe.set(self.key(target, "fails"), 0, ex=ttl)
            elif kind == "record":
                fails, window = self.key(target, "fails"), self.key(target, "window")
                if op[2] == "success":
                    pipe.set(fails, 0, ex=ttl)
                elif op[2] in ("failure", "stall"):
                    pipe.incr(fails)
                    pipe.expire(fails, ttl)
                pipe.lpush(window, "1" if op[2] in ("stall", "suspected") else "0")
                pipe.ltrim(window, 0, breaker.policy.window - 1)
                pipe.expire(window, ttl)
            elif kind in ("latency", "seed"):
                key = self.key(target, "latency")
                values = [op[2]] if kind == "latency" else op[2]
                pipe.lpush(key, *(repr(float(v)) for v in values))
                pipe.ltrim(key, 0, self.router.watchdog.policy.window - 1)
                pipe.expire(key, ttl)
        cooldowns: dict[str, float] = getattr(self.router, "cooldowns", {})
        now = self.router.clock()
        for target, until in list(cooldowns.items()):
            known = self.links.get(target)
            if known is None or until <= known.cooldown + 1e-3 or until <= now:
                continue
            pipe.set(self.key(target, "cooldown"), "1", px=max(1, int((until - now) * 1000)))
            known.cooldown = until

    def requeue(self) -> None:
        """The round trip failed: keep its circuit changes for the next one (counts and
        samples of an outage are dropped; a replica's own state covered them)."""
        kept = [op for op in self.in_flight if op[0] in ("open", "closed")]
        self.in_flight = []
        self.pending.extendleft(reversed(kept))

    def read(self, pipe: Pipeline) -> int:
        """Queue the reads of every target's shared keys; returns how many results to take."""
        for target in self.links:
            pipe.get(self.key(target, "open"))
            pipe.pttl(self.key(target, "open"))
            pipe.get(self.key(target, "fails"))
            pipe.lrange(self.key(target, "window"), 0, -1)
            pipe.lrange(self.key(target, "latency"), 0, -1)
            pipe.pttl(self.key(target, "cooldown"))
        return _READS * len(self.links)

    def apply(self, results: list[Any]) -> None:
        """Bring the local state up to what the shared keys say."""
        # samples observed here after this round trip was written are in no read yet
        unsent = {op[1] for op in self.pending if op[0] in ("latency", "seed")}
        for i, target in enumerate(self.links):
            raw_open, open_ms, fails, window, latency, cool_ms = results[
                i * _READS : (i + 1) * _READS
            ]
            self.applying = True
            try:
                self._apply_breaker(target, raw_open, open_ms, fails, window)
            finally:
                self.applying = False
            if target not in unsent:
                self._apply_latency(target, latency)
            self._apply_cooldown(target, cool_ms)

    def _apply_breaker(
        self, target: str, raw_open: Any, open_ms: Any, fails: Any, window: list[Any]
    ) -> None:
        breaker = self.router.breakers[target]
        link = self.links[target]
        state = breaker.state
        if raw_open is not None and isinstance(open_ms, int) and open_ms > 0:
            try:
                info = json.loads(raw_open)
                open_id, by, reason = str(info["id"]), str(info["by"]), str(info["reason"])
            except (ValueError, KeyError, TypeError):
                return  # not ours: leave it alone
            link.absent = 0
            if open_id in link.seen:
                return
            link.seen.add(open_id)
            link.linked = open_id
            if state != "open":
                breaker.adopt(
                    "open", f"opened on replica {by}: {reason}", open_for_s=open_ms / 1000
                )
            return
        if state == "open":
            if link.linked is not None:
                # The shared circuit ended (closed by another replica's probe, or expired):
                # probe from here too rather than wait out a local copy of it. Two syncs in
                # a row must say so, so one odd read never ends a circuit early.
                link.absent += 1
                if link.absent >= 2:
                    link.linked = None
                    link.absent = 0
                    breaker.adopt("half_open", "shared circuit closed or expired")
            elif not any(op[0] == "open" and op[1] == target for op in self.pending):
                # Opened here while Redis was away: publish it now.
                self._opens += 1
                self.pending.append(
                    ("open", target, f"{self.backend.replica}:{self._opens}", "republished")
                )
            return
        policy = breaker.policy
        if state != "closed" or not policy.enabled:
            return
        shared_fails = int(fails) if fails is not None else 0
        stalls = [v in (b"1", "1") for v in window]
        why: str | None = None
        if shared_fails >= policy.failures:
            why = f"{shared_fails} consecutive failures across replicas"
        elif len(stalls) >= policy.min_calls and sum(stalls) / len(stalls) > policy.stall_rate:
            why = f"stall rate {sum(stalls) / len(stalls):.0%} across replicas"
        if why is not None:
            self.applying = False  # decided here: publish it like a local opening
            breaker.adopt("open", why)

    def _apply_latency(self, target: str, latency: list[Any]) -> None:
        """Load the shared samples, or seed Redis with this replica's when it has fewer (a
        restart). Never called while samples of ``target`` wait to be written: the read
        misses them, so it would drop them here and seed Redis with copies of them."""
        window = self.router.watchdog.window(target)
        if len(latency) >= len(window):
            values = []
            for raw in reversed(latency):
                with contextlib.suppress(ValueError, TypeError):
                    values.append(float(raw))
            window.load(values)
        elif len(window):
            # Redis lost them (a restart): teach it what this replica knows.
            self.pending.append(("seed", target, window.values()))

    def _apply_cooldown(self, target: str, cool_ms: Any) -> None:
        cooldowns: dict[str, float] | None = getattr(self.router, "cooldowns", None)
        if cooldowns is None or not isinstance(cool_ms, int) or cool_ms <= 0:
            return
        until = self.router.clock() + cool_ms / 1000
        link = self.links[target]
        if until > cooldowns.get(target, 0.0) + 0.05:
            cooldowns[target] = until
            link.cooldown = until


class RedisState(StateBackend):
    """Routers' state shared through Redis (``redis://HOST:PORT/DB``), with a local fallback.

    ``client`` may be an existing ``redis.asyncio.Redis``; otherwise one is made from ``url``
    with short socket timeouts and no client-side retries (the next sync is the retry).
    """

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "callproof:default",
        sync_interval_s: float = 0.2,
        op_timeout_s: float = 0.5,
        outage_retry_s: float = 1.0,
        key_ttl_s: int = 3600,
        client: Redis | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self.namespace = namespace
        self.sync_interval_s = sync_interval_s
        self.op_timeout_s = op_timeout_s
        self.outage_retry_s = outage_retry_s
        self.key_ttl_s = key_ttl_s
        #: This process among the replicas: host, pid and a random suffix.
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        #: Outages seen (each logged once), and whether Redis answers now.
        self.outages = 0
        self.healthy = False
        self.syncs = 0
        self.last_sync: float | None = None
        self._client = client
        self._own_client = client is None
        self._mirrors: list[_RouteMirror] = []
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._degraded = False

    def attach(self, router: Router) -> None:
        """Mirror ``router``'s breakers, latency windows and cooldowns to Redis."""
        super().attach(router)
        self._mirrors.append(_RouteMirror(self, router))

    def wake(self) -> None:
        """Sync now rather than at the next interval (a breaker changed state here)."""
        if self._wake is not None:
            self._wake.set()

    async def start(self) -> None:
        """Connect lazily and start the background sync (a failed first connection is an
        outage like any other: the replica starts on local state)."""
        if self._task is not None:
            return
        if self._client is None:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._client = Redis.from_url(
                self.url,
                socket_timeout=self.op_timeout_s,
                socket_connect_timeout=self.op_timeout_s,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
                health_check_interval=0,
                client_name="callproof",
            )
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="callproof-state-sync")

    async def aclose(self) -> None:
        """Stop syncing and close the connection pool.

        The sync task is cancelled and also told to stop (it is no longer ``self._task``),
        because a cancel can be lost: Python 3.11's ``asyncio.wait_for`` (redis-py bounds
        each send with it) returns the send's result when the cancel arrives in the loop turn
        the send completes. The task then synced on, and ``await task`` waited for ever (a
        hang seen on a loaded machine); now it ends after the round trip in flight. A cancel
        of ``aclose`` itself is not swallowed."""
        task, self._task = self._task, None
        if task is not None:
            self.wake()
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled():
                task.result()  # a BaseException that ended the loop, if any
        if self._client is not None and self._own_client:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None

    async def sync_once(self) -> None:
        """One round trip: write local changes, read shared state, apply it. Raises on a
        Redis error or timeout (the background loop turns that into the fallback)."""
        from redis.exceptions import RedisError

        assert self._client is not None, "start() first"
        pipe = self._client.pipeline(transaction=False)
        # a snapshot: a router attached while this round trip is out waits for the next one
        mirrors = list(self._mirrors)
        for mirror in mirrors:
            mirror.write(pipe)
        write_count = len(pipe)
        counts = [mirror.read(pipe) for mirror in mirrors]
        try:
            # the socket timeout (op_timeout_s) normally fires first and drops the connection;
            # this outer one only bounds a round trip that keeps trickling
            async with asyncio.timeout(2 * self.op_timeout_s):
                results = await pipe.execute(raise_on_error=False)
        except BaseException:
            for mirror in mirrors:
                mirror.requeue()
            # never reuse a connection a failed or cancelled round trip may have left with
            # unread replies: the next sync would read them as its own
            with contextlib.suppress(Exception):
                await self._client.connection_pool.disconnect()
            raise
        errors = [r for r in results if isinstance(r, RedisError)]
        if errors:
            raise errors[0]
        offset = write_count
        for mirror, count in zip(mirrors, counts, strict=True):
            mirror.apply(list(results[offset : offset + count]))
            offset += count
        self.syncs += 1
        self.last_sync = time.monotonic()

    async def _run(self) -> None:
        from redis.exceptions import RedisError

        assert self._wake is not None
        me = asyncio.current_task()
        while self._task is me:  # aclose() (or a new start()) ends this loop
            try:
                await self.sync_once()
            except (RedisError, OSError, TimeoutError) as exc:
                self.healthy = False
                if not self._degraded:
                    self._degraded = True
                    self.outages += 1
                    log.warning(
                        "shared state: Redis at %s is unavailable (%s); each replica uses its "
                        "local state until it returns",
                        Redactor().url(self.url),
                        type(exc).__name__,
                    )
            except Exception:  # a bug here must not end sharing for the process's life
                log.exception("shared state: sync failed; retrying")
            else:
                self.healthy = True
                if self._degraded:
                    self._degraded = False
                    log.info("shared state: Redis at %s is back", Redactor().url(self.url))
            if self._task is not me:
                return
            delay = self.outage_retry_s if self._degraded else self.sync_interval_s
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    def status(self) -> dict[str, Any]:
        """Kind, URL (password removed), namespace, health and counts."""
        age = None if self.last_sync is None else round(time.monotonic() - self.last_sync, 3)
        return {
            "kind": self.kind,
            "shared": True,
            "url": Redactor().url(self.url),
            "namespace": self.namespace,
            "replica": self.replica,
            "healthy": self.healthy,
            "outages": self.outages,
            "syncs": self.syncs,
            "last_sync_age_s": age,
            "sync_interval_s": self.sync_interval_s,
        }
