"""One injectable clock: monotonic time, sleep, and deadlines, for every timing decision.

The client's watchdogs (first event, idle, deadline), the router's hedge timer, backoff and
Retry-After waits, and the breaker's cool-downs all read one :class:`Clock`::

    clock = RealClock()                       # the default everywhere
    async with Client(clock=clock) as client:
        router = Router("kimi", targets, client=client)   # takes the client's clock

    vc = VirtualClock()                       # tests: time moves only when every task waits
    router = Router("kimi", targets, client=fake_client, clock=vc)

A :class:`Clock` has ``monotonic()`` (seconds), ``await sleep(seconds)`` and
``async with timeout_at(deadline)`` (raises :class:`TimeoutError` when ``monotonic()`` passes
``deadline``; ``None`` waits forever). :func:`timeout_after` is the relative form.

:class:`VirtualClock` runs timing logic deterministically, whatever the machine's load: a
task's ``sleep`` and ``timeout_at`` wait on virtual time, and when every task is waiting
(the event loop has nothing ready to run) the clock jumps to the earliest deadline. It must be
the only source of timers in the code under test (no real sockets, no ``asyncio.sleep`` with a
delay). With ``follow_real_time=True`` it follows real time instead, and ``sleep`` only
advances a virtual offset without waiting (for tests over real sockets that should not spend
real seconds in backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, runtime_checkable

__all__ = ["REAL_CLOCK", "Clock", "RealClock", "VirtualClock", "as_clock", "timeout_after"]


@runtime_checkable
class Clock(Protocol):
    """Monotonic time, sleep and deadlines (see the module docstring)."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    def __call__(self) -> float:
        """The same as :meth:`monotonic` (a clock is also a plain time function)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...

    def timeout_at(self, deadline: float | None) -> AbstractAsyncContextManager[object]:
        """A context manager raising :class:`TimeoutError` once ``monotonic()`` passes
        ``deadline`` (``None``: no deadline)."""
        ...


def timeout_after(clock: Clock, delay: float | None) -> AbstractAsyncContextManager[object]:
    """``clock.timeout_at`` ``delay`` seconds from now (``None``: no deadline)."""
    return clock.timeout_at(None if delay is None else clock.monotonic() + delay)


class RealClock:
    """The machine's monotonic clock (``time.monotonic``, which asyncio's loop also uses)."""

    def monotonic(self) -> float:
        """Seconds on ``time.monotonic``."""
        return time.monotonic()

    def __call__(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)

    def timeout_at(self, deadline: float | None) -> AbstractAsyncContextManager[object]:
        """``asyncio.timeout`` until ``deadline`` on this clock."""
        return asyncio.timeout(None if deadline is None else deadline - time.monotonic())


#: The default clock.
REAL_CLOCK = RealClock()


class _Composed:
    """A clock built from a plain time function and/or sleep function over a base clock
    (the older ``Router(clock=fn, sleep=fn)`` form)."""

    def __init__(
        self,
        base: Clock,
        monotonic: Callable[[], float] | None,
        sleep: Callable[[float], Awaitable[None]] | None,
    ) -> None:
        self._base = base
        self._monotonic = monotonic
        self._sleep = sleep

    def monotonic(self) -> float:
        return self._monotonic() if self._monotonic is not None else self._base.monotonic()

    def __call__(self) -> float:
        return self.monotonic()

    async def sleep(self, seconds: float) -> None:
        await (self._sleep or self._base.sleep)(seconds)

    def timeout_at(self, deadline: float | None) -> AbstractAsyncContextManager[object]:
        if self._monotonic is None:
            return self._base.timeout_at(deadline)
        # a foreign time function: its deadline, measured from now, on the base clock
        return timeout_after(self._base, None if deadline is None else deadline - self.monotonic())


def as_clock(
    clock: Clock | Callable[[], float] | None = None,
    *,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    default: Clock = REAL_CLOCK,
) -> Clock:
    """The :class:`Clock` that ``clock`` and ``sleep`` describe: a Clock as it is; a bound
    ``monotonic``/``clock`` method of a Clock as that Clock; any other time function (and a
    lone ``sleep``) composed over ``default``."""
    if isinstance(clock, Clock):
        base: Clock = clock
        if sleep is None or sleep == base.sleep:
            return base
        return _Composed(base, None, sleep)
    if clock is not None:
        owner = getattr(clock, "__self__", None)
        if isinstance(owner, Clock):
            return as_clock(owner, sleep=sleep)
        return _Composed(default, clock, sleep)
    if sleep is not None:
        owner = getattr(sleep, "__self__", None)
        if isinstance(owner, Clock) and not getattr(owner, "follow_real_time", True):
            return owner
        return _Composed(default, None, sleep)
    return default


@dataclass(order=True)
class _Waiter:
    when: float
    seq: int
    fire: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class _VirtualTimeout:
    """``asyncio.timeout`` whose expiry is decided by a :class:`VirtualClock`: the clock asks
    it to expire (``reschedule`` to now) when virtual time reaches the deadline, so the
    cancel-and-raise semantics are asyncio's own."""

    def __init__(self, clock: VirtualClock, deadline: float | None) -> None:
        self._clock = clock
        self._deadline = deadline
        self._inner = asyncio.timeout(None)
        self._waiter: _Waiter | None = None

    async def __aenter__(self) -> None:
        await self._inner.__aenter__()
        if self._deadline is not None:
            self._waiter = self._clock._at(self._deadline, self._expire)

    def _expire(self) -> None:
        with contextlib.suppress(RuntimeError):  # already left (or already expiring)
            self._inner.reschedule(asyncio.get_running_loop().time())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._waiter is not None:
            self._waiter.cancelled = True
        await self._inner.__aexit__(exc_type, exc, tb)


#: Scheduler turns with nothing ready before virtual time moves on, and the most turns a
#: busy loop may hold it up.
_QUIET_TURNS = 3
_MAX_TURNS = 10_000


@dataclass
class VirtualClock:
    """A clock for tests (see the module docstring). ``now`` is the virtual time and may be
    set or advanced directly (``vc.now += 31`` moves a breaker's cool-down); ``sleeps``
    records every ``sleep`` asked for. ``vc.clock`` is ``monotonic`` (for callers that take
    a plain time function)."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)
    #: When true the clock also follows real time (for routes with real network waits), and
    #: ``sleep`` advances ``now`` at once instead of waiting.
    follow_real_time: bool = False
    _origin: float = field(default_factory=time.monotonic, init=False, repr=False)
    _heap: list[_Waiter] = field(default_factory=list, init=False, repr=False)
    _seq: itertools.count[int] = field(default_factory=itertools.count, init=False, repr=False)
    _driver: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def monotonic(self) -> float:
        """The virtual time in seconds."""
        if self.follow_real_time:
            return self.now + (time.monotonic() - self._origin)
        return self.now

    def clock(self) -> float:
        """The virtual time in seconds (``monotonic``, as a plain function)."""
        return self.monotonic()

    def __call__(self) -> float:
        return self.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of virtual time (recorded in ``sleeps``). With
        ``follow_real_time``, advance ``now`` at once instead (one scheduler turn)."""
        self.sleeps.append(seconds)
        if self.follow_real_time:
            self.now += max(seconds, 0.0)
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        waiter = self._at(self.now + max(seconds, 0.0), wake)
        try:
            await future
        finally:
            waiter.cancelled = True

    def timeout_at(self, deadline: float | None) -> AbstractAsyncContextManager[object]:
        """A deadline on virtual time (on real time with ``follow_real_time``)."""
        if self.follow_real_time:
            return asyncio.timeout(None if deadline is None else deadline - self.monotonic())
        return _VirtualTimeout(self, deadline)

    def pending(self) -> int:
        """Timers (sleeps and deadlines) still waiting."""
        return sum(1 for w in self._heap if not w.cancelled)

    # -- the scheduler ------------------------------------------------------------------------

    def _at(self, when: float, fire: Callable[[], None]) -> _Waiter:
        waiter = _Waiter(when, next(self._seq), fire)
        heapq.heappush(self._heap, waiter)
        if self._driver is None or self._driver.done():
            self._driver = asyncio.get_running_loop().create_task(
                self._drive(), name="callproof-virtual-clock"
            )
        return waiter

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await _settle(loop)
            while self._heap and self._heap[0].cancelled:
                heapq.heappop(self._heap)
            if not self._heap:
                return
            due = heapq.heappop(self._heap)
            self.now = max(self.now, due.when)
            due.fire()
            while self._heap and self._heap[0].when <= self.now:
                nxt = heapq.heappop(self._heap)
                if not nxt.cancelled:
                    nxt.fire()


async def _settle(loop: asyncio.AbstractEventLoop) -> None:
    """Let every task that can run, run: return after a few turns with nothing ready."""
    quiet = 0
    for _ in range(_MAX_TURNS):
        await asyncio.sleep(0)
        ready = getattr(loop, "_ready", None)  # asyncio's run queue (absent: count turns)
        quiet = quiet + 1 if not ready else 0
        if quiet >= _QUIET_TURNS:
            return
