"""Event-loop lag: how late the loop runs a timer that was due, and a warning when it is late.

Every clock callproof keeps (the first-event and idle watchdogs, the deadline, hedge delays,
breaker cool-downs) is a timer on the event loop. When the loop is starved (too many streams
for one core, a blocking call, a hot loop) every one of them fires late, so a measured stall is
partly the client's own. :class:`LoopLagMonitor` schedules a timer every ``interval_s`` with
``loop.call_at`` (a plain callback: no task, no allocation per tick beyond the sample) and
records ``fired_at - due``; above ``warn_above_s`` it logs a warning, at most once per
``warn_every_s``, so a starved loop is said out loud rather than blamed on a target.

::

    async with LoopLagMonitor() as lag:
        ...
    lag.stats()   # {"samples": ..., "p50_s": ..., "p99_s": ..., "max_s": ..., "warnings": ...}

Each sample also says whose lag it was: when the loop thread's own CPU over the tick's span is
under half the span, the loop was not running (a loaded machine, or another thread holding the
GIL), and lowering the concurrency would not help; ``own_p99_s`` is the p99 of the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import deque
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from callproof.quantile import quantile

__all__ = [
    "DEFAULT_WARN_ABOVE_S",
    "AdmissionGate",
    "LoopLagMonitor",
    "admitted",
    "is_admitted",
]

log = logging.getLogger(__name__)

#: A timer this late (seconds) gets a warning: the robustness target lets a clock be 100 ms late.
DEFAULT_WARN_ABOVE_S = 0.1


class LoopLagMonitor:
    """Measures the running loop's timer lateness; start with ``async with`` or :meth:`start`."""

    def __init__(
        self,
        *,
        interval_s: float = 0.05,
        warn_above_s: float = DEFAULT_WARN_ABOVE_S,
        warn_every_s: float = 10.0,
        keep: int = 100_000,
        logger: logging.Logger | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self.warn_above_s = warn_above_s
        self.warn_every_s = warn_every_s
        self.samples: deque[float] = deque(maxlen=keep)
        #: The lags of ticks whose span the loop thread spent mostly on its own CPU.
        self.own_samples: deque[float] = deque(maxlen=keep)
        self.max_s = 0.0
        self.warnings = 0
        self._log = logger or log
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._armed_at = 0.0
        self._armed_cpu = 0.0
        self._last_warning: float | None = None

    def start(self) -> None:
        """Start sampling on the running loop (idempotent)."""
        if self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time() + self.interval_s
        self._armed_at, self._armed_cpu = self._loop.time(), time.thread_time()
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        """Stop sampling (idempotent); the samples stay."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    async def __aenter__(self) -> LoopLagMonitor:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        now, cpu = loop.time(), time.thread_time()
        lag = max(0.0, now - self._due)
        # Whose lag: the loop thread's own CPU over the span since the tick was armed. A busy
        # loop (our own work) used most of it; a loop the OS did not run (a shared machine,
        # or another thread holding the GIL) used little.
        span = now - self._armed_at
        busy = span <= 0 or (cpu - self._armed_cpu) >= 0.5 * span
        self.samples.append(lag)
        self.max_s = max(self.max_s, lag)
        if busy:
            self.own_samples.append(lag)
        if lag > self.warn_above_s:
            self.warnings += 1
            if self._last_warning is None or now - self._last_warning >= self.warn_every_s:
                self._last_warning = now
                self._log.warning(
                    "event loop lagged %.3f s (warning above %.3f s): every timeout fires late "
                    "while the loop is starved; %s",
                    lag,
                    self.warn_above_s,
                    "lower the concurrency"
                    if busy
                    else "the process was not running (a loaded machine, or another thread)",
                )
        self._due = now + self.interval_s
        self._armed_at, self._armed_cpu = now, cpu
        self._handle = loop.call_at(self._due, self._tick)

    def quantile(self, q: float, *, own: bool = False) -> float | None:
        """The ``q`` quantile (0 <= q <= 1) of the lags kept (:func:`callproof.quantile.quantile`),
        or None before any sample. ``own``: of the ticks the loop spent on its own work only."""
        return quantile(sorted(self.own_samples if own else self.samples), q)

    def stats(self) -> dict[str, Any]:
        """Samples taken, p50/p99/max lag (seconds) and how many ticks were over the threshold."""
        return {
            "samples": len(self.samples),
            "p50_s": self.quantile(0.5),
            "p99_s": self.quantile(0.99),
            "max_s": self.max_s,
            "own_samples": len(self.own_samples),
            "own_p99_s": self.quantile(0.99, own=True),
            "own_max_s": max(self.own_samples, default=None),
            "warnings": self.warnings,
            "warn_above_s": self.warn_above_s,
        }


class AdmissionGate(LoopLagMonitor):
    """A gate new calls pass *before their clocks start*, open only while the loop keeps time.

    More concurrent calls than one core can serve must not all run at once: their clocks would
    all run while the loop works through the backlog, so every timeout fires late and a healthy
    target looks stalled (the livelock of issue 10). The gate bounds the calls in flight by a
    window, congestion control on the loop's lag: the window grows while the gate's timer
    (every ``interval_s``) fires on time and halves when it fires more than ``target_lag_s``
    late; each tick also lets at most ``max_batch`` new calls in, so a burst is spread out. A
    call that finds room and a loop on time passes without waiting, so an unloaded client pays
    nothing; otherwise it waits in FIFO order, with no clock of its own running yet. Each
    admitted call is handed back with :meth:`release` when it ends.

    The gate ticks only while calls are in flight or waiting, so an idle client (or one whose
    loop is stopped between ``run_until_complete`` calls) runs no timer.

    Attempts inside an admitted call (a router's hedges and fallbacks) are started under
    :func:`admitted` and skip the gate: they are part of work already let in.
    """

    def __init__(
        self,
        *,
        interval_s: float = 0.01,
        target_lag_s: float = 0.02,
        min_window: int = 8,
        max_window: int = 1_000_000,
        initial_window: int = 256,
        max_batch: int = 128,
        warn_above_s: float = DEFAULT_WARN_ABOVE_S,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(interval_s=interval_s, warn_above_s=warn_above_s, logger=logger)
        self.target_lag_s = target_lag_s
        self.min_window = min_window
        self.max_window = max_window
        self.window = max(min_window, min(initial_window, max_window))
        self.max_batch = max_batch
        self.inflight = 0
        self._tokens = max_batch
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.waited = 0
        self.max_inflight = 0

    def _behind(self) -> bool:
        loop = self._loop
        return (
            self._handle is not None
            and loop is not None
            and loop.time() - self._due > self.target_lag_s
        )

    def _room(self) -> bool:
        return self.inflight < self.window and self._tokens > 0 and not self._behind()

    def _enter(self) -> None:
        self.inflight += 1
        self._tokens -= 1
        self.max_inflight = max(self.max_inflight, self.inflight)

    async def admit(self) -> None:
        """Return when a new call may start (at once on a loop that keeps time and has room);
        pair it with :meth:`release`."""
        if self._handle is None:
            self._tokens = self.max_batch
            self.start()
        if not self._waiters and self._room():
            self._enter()
            return
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        self.waited += 1
        try:
            await waiter
        except asyncio.CancelledError:
            if not waiter.cancelled() and waiter.done():
                self.release()  # admitted and cancelled at once: give the slot back
            raise

    def release(self) -> None:
        """An admitted call ended: its slot goes to the next waiter if the loop keeps time."""
        self.inflight = max(0, self.inflight - 1)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._room():
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._enter()

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        late = loop.time() - self._due > self.target_lag_s
        super()._tick()
        if late:
            self.window = max(self.min_window, self.window // 2)
        elif self.inflight >= self.window or self._waiters:
            self.window = min(self.max_window, self.window + max(1, self.window // 8))
        self._tokens = self.max_batch
        self._wake()
        if not self.inflight and not self._waiters and self._handle is not None:
            self._handle.cancel()  # idle: no timer until the next call arrives
            self._handle = None

    def stop(self) -> None:
        super().stop()
        while self._waiters:  # nothing would release them any more
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


_ADMITTED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "callproof_admitted", default=False
)


@contextlib.contextmanager
def admitted() -> Iterator[None]:
    """Tasks created inside this block belong to an admitted call: they skip the gate."""
    token = _ADMITTED.set(True)
    try:
        yield
    finally:
        _ADMITTED.reset(token)


def is_admitted() -> bool:
    """Whether the current task belongs to a call already let through an AdmissionGate."""
    return _ADMITTED.get()
