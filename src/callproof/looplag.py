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

Each sample also says whose lag it was, from the loop thread's own accounting over the tick's
span (Linux ``/proc/thread-self/schedstat``; elsewhere the thread's CPU time alone):

* **machine**: the thread was runnable but waiting for a CPU for at least half the lag (a
  loaded machine: other processes had the cores). No client design fixes that;
* **own**: the loop thread was on its CPU for at least half the span: its own work, including
  the garbage collector's pauses (:class:`GcPauses`, counted in ``gc_s``);
* otherwise the thread was neither running nor waiting for a CPU: a blocking call on the loop
  or another thread holding the GIL.

``own_p99_s`` is the p99 of the own ticks; ``runqueue_share`` the share of the sampled time the
loop spent waiting for a CPU; ``gc_max_s`` the longest collector pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from callproof.quantile import quantile

__all__ = [
    "DEFAULT_WARN_ABOVE_S",
    "AdmissionGate",
    "GcPauses",
    "LoopLagMonitor",
    "admitted",
    "is_admitted",
    "runqueue_wait_s",
    "tune_gc",
    "tuned_gc",
    "whose_lag",
]

log = logging.getLogger(__name__)

#: A timer this late (seconds) gets a warning: the robustness target lets a clock be 100 ms late.
DEFAULT_WARN_ABOVE_S = 0.1


_SCHEDSTAT = "/proc/thread-self/schedstat"


def runqueue_wait_s() -> float | None:
    """Seconds the calling thread has spent runnable but waiting for a CPU since it started
    (Linux schedstat), or ``None`` where the kernel does not say."""
    try:
        with open(_SCHEDSTAT, "rb") as f:
            fields = f.read().split()
        return int(fields[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


#: Whose lag a tick was (see the module docstring).
MACHINE, OWN, BLOCKED = "machine", "own", "blocked"


def whose_lag(lag: float, span: float, cpu: float, waited: float | None) -> str:
    """Whose lateness a tick of ``lag`` seconds was, given the loop thread's CPU seconds
    (``cpu``) and runqueue wait (``waited``, ``None`` when unknown) over the tick's ``span``:
    ``"machine"`` (it waited for a CPU for at least half the lag), ``"own"`` (it was on its
    CPU for at least half the span) or ``"blocked"`` (neither)."""
    if waited is not None and lag > 0 and waited >= 0.5 * lag:
        return MACHINE
    if span <= 0 or cpu >= 0.5 * span:
        return OWN
    return BLOCKED


class GcPauses:
    """The garbage collector's pauses in this process, from :data:`gc.callbacks`.

    ``total_s`` grows by each pause (wall time from the collection's start to its end), so a
    reader can take the difference over a span; ``max_s``, ``count`` and ``by_generation``
    (pauses per generation) summarise them. Start with :meth:`start` (or ``with``), end with
    :meth:`stop`; a collection in progress when stopped is not counted.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started_at: float | None = None
        self.total_s = 0.0
        self.max_s = 0.0
        self.count = 0
        self.by_generation: dict[int, int] = {}
        self.pauses: deque[float] = deque(maxlen=10_000)
        self._on = False

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started_at = self._clock()
            return
        if self._started_at is None:
            return
        pause = max(0.0, self._clock() - self._started_at)
        self._started_at = None
        self.total_s += pause
        self.max_s = max(self.max_s, pause)
        self.count += 1
        gen = int(info.get("generation", -1))
        self.by_generation[gen] = self.by_generation.get(gen, 0) + 1
        self.pauses.append(pause)

    def start(self) -> None:
        """Start counting pauses (idempotent)."""
        if not self._on:
            gc.callbacks.append(self._callback)
            self._on = True

    def stop(self) -> None:
        """Stop counting (idempotent); the figures stay."""
        if self._on:
            with contextlib.suppress(ValueError):
                gc.callbacks.remove(self._callback)
            self._on = False
            self._started_at = None

    def __enter__(self) -> GcPauses:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: How many times rarer :func:`tune_gc` makes full collections.
FULL_COLLECTION_FACTOR = 10


def tune_gc(*, factor: int = FULL_COLLECTION_FACTOR, collect: bool = True) -> tuple[int, int, int]:
    """Shorten and thin out the garbage collector's pauses for a process that holds many
    concurrent calls; call it once, after start-up (imports, configuration), from an
    application's entry point (a library must not change a process's collector on import).

    * :func:`gc.freeze` moves every object alive now (modules, classes, configuration) out of
      the collector's reach, so no later collection walks them again;
    * full (oldest-generation) collections run ``factor`` times rarer. At 1,000 concurrent
      routed calls each full collection walked every live call's objects and paused the loop
      60-290 ms, and every clock due meanwhile fired that late (bench/router_load.py: with the
      client given its CPU, clock lateness p99 174-230 ms as shipped, 27-28 ms with this).
      Young collections, which free most garbage, are unchanged; cyclic garbage that reached
      the oldest generation waits longer to be freed.

    ``collect``: collect first, so no garbage is frozen with the live objects (a frozen cycle
    is never freed until :func:`gc.unfreeze`).

    Returns the previous thresholds (pass them to :func:`gc.set_threshold` to undo, with
    :func:`gc.unfreeze`)."""
    if factor < 1:
        raise ValueError("factor must be at least 1")
    before = gc.get_threshold()
    if collect:
        gc.collect()
    gc.freeze()
    first, second, third = before
    gc.set_threshold(first, second, third * factor)
    return before


@contextlib.contextmanager
def tuned_gc(*, factor: int = FULL_COLLECTION_FACTOR) -> Iterator[None]:
    """:func:`tune_gc` for the length of a block, then the collector as it was (thresholds
    restored, frozen objects back in the oldest generation): what ``callproof run`` and
    ``callproof serve`` do around their event loop, and what a library user holding thousands
    of concurrent calls can do around theirs (bench/router_load.py, design ``gcfreeze``: at
    5,000 concurrent routed calls the longest collector pause went from 197-215 ms to 46-80 ms
    and clock lateness p99 from 134-169 ms to 84-118 ms).

    It does not collect first (a full collection of a large heap is the pause it avoids):
    garbage frozen with the live objects is freed after the block, when ``gc.unfreeze`` puts
    everything back in the oldest generation."""
    before = tune_gc(factor=factor, collect=False)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


class LoopLagMonitor:
    """Measures the running loop's timer lateness; start with ``async with`` or :meth:`start`."""

    #: Whether sampling also counts the garbage collector's pauses (``gc`` in :meth:`stats`).
    counts_gc = True

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
        #: Ticks by whose lag they were: ``machine``, ``own``, ``blocked``.
        self.whose: dict[str, int] = {MACHINE: 0, OWN: 0, BLOCKED: 0}
        #: Seconds sampled, and of them spent waiting for a CPU (Linux only).
        self.span_s = 0.0
        self.runqueue_s = 0.0
        #: The garbage collector's pauses while sampling.
        self.gc = GcPauses()
        self._log = logger or log
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._armed_at = 0.0
        self._armed_cpu = 0.0
        self._armed_wait: float | None = None
        self._last_warning: float | None = None

    def start(self) -> None:
        """Start sampling on the running loop (idempotent)."""
        if self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time() + self.interval_s
        self._armed_at, self._armed_cpu = self._loop.time(), time.thread_time()
        self._armed_wait = runqueue_wait_s()
        if self.counts_gc:
            self.gc.start()
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        """Stop sampling (idempotent); the samples stay."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.gc.stop()

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
        now, cpu, wait = loop.time(), time.thread_time(), runqueue_wait_s()
        lag = max(0.0, now - self._due)
        # Whose lag: the loop thread's own accounting over the span since the tick was armed.
        span = now - self._armed_at
        waited = (
            None if wait is None or self._armed_wait is None else max(0.0, wait - self._armed_wait)
        )
        whose = whose_lag(lag, span, cpu - self._armed_cpu, waited)
        self.whose[whose] += 1
        self.span_s += max(0.0, span)
        if waited is not None:
            self.runqueue_s += waited
        self.samples.append(lag)
        self.max_s = max(self.max_s, lag)
        if whose == OWN:
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
                    self._why(whose, waited),
                )
        self._due = now + self._next_interval()
        self._armed_at, self._armed_cpu, self._armed_wait = now, cpu, wait
        self._handle = loop.call_at(self._due, self._tick)

    def _next_interval(self) -> float:
        """Seconds until the next tick (a subclass may sample more slowly while it can)."""
        return self.interval_s

    def _why(self, whose: str, waited: float | None) -> str:
        if whose == OWN:
            return "lower the concurrency"
        if whose == MACHINE:
            return (
                f"the process was not running: it waited {waited or 0.0:.3f} s for a CPU "
                "(a loaded machine)"
            )
        return "the process was not running (a blocking call, or another thread holding the GIL)"

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
            "whose": dict(self.whose),
            "runqueue_share": (self.runqueue_s / self.span_s) if self.span_s > 0 else None,
            "gc_pauses": self.gc.count,
            "gc_s": self.gc.total_s,
            "gc_max_s": self.gc.max_s,
        }


class AdmissionGate(LoopLagMonitor):
    """A gate new calls pass *before their clocks start*, open only while the loop keeps time.

    More concurrent calls than one core can serve must not all run at once: their clocks would
    all run while the loop works through the backlog, so every timeout fires late and a healthy
    target looks stalled (the livelock of issue 10). The gate bounds the calls in flight by a
    window, congestion control on the loop's lag: the window grows while the gate's timer
    (every ``interval_s``) fires on time and halves when it fires more than ``target_lag_s``
    late; each tick also lets at most ``max_batch`` new calls in, so a burst is spread out
    (16 per 10 ms tick: 1,600 calls/s, several times what one core starts, while the calls
    let in together cost one loop turn of tens of ms, not the 250 ms that 128 signed requests
    did at 1,000 concurrent: the first calls' hedge timers fired that late). A
    call that finds room and a loop on time passes without waiting, so an unloaded client pays
    nothing; otherwise it waits in FIFO order, with no clock of its own running yet. Each
    admitted call is handed back with :meth:`release` when it ends.

    The gate ticks only while calls are in flight or waiting, so an idle client (or one whose
    loop is stopped between ``run_until_complete`` calls) runs no timer. While calls are in
    flight but none waits, it ticks every
    ``quiet_interval_s`` instead (the loop's lag is still measured and warned about: a late
    timer is as late at any period); the next call that must wait brings the tick back to
    ``interval_s`` at once. A 10 ms timer on a short call's 270 ms of waiting cost 26 wake-ups,
    about 3.5 ms of CPU: more than boto3's whole call (bench/client.py).

    Attempts inside an admitted call (a router's hedges and fallbacks) are started under
    :func:`admitted` and skip the gate: they are part of work already let in.
    """

    counts_gc = False  # a gate that is never stopped must not stay in gc.callbacks

    def __init__(
        self,
        *,
        interval_s: float = 0.01,
        target_lag_s: float = 0.02,
        min_window: int = 8,
        max_window: int = 1_000_000,
        initial_window: int = 256,
        max_batch: int = 16,
        quiet_interval_s: float | None = None,
        warn_above_s: float = DEFAULT_WARN_ABOVE_S,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(interval_s=interval_s, warn_above_s=warn_above_s, logger=logger)
        #: The period while nothing waits and nothing was let in (default 0.1 s, never
        #: shorter than ``interval_s``).
        self.quiet_interval_s = max(
            interval_s, 0.1 if quiet_interval_s is None else quiet_interval_s
        )
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
        self._hurry()
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
        if not self.inflight and not self._waiters and self._handle is not None:
            # idle: no timer until the next call (a loop stopped between run_until_complete
            # calls would otherwise fire it seconds late, a false lag warning)
            self._handle.cancel()
            self._handle = None

    def _wake(self) -> None:
        while self._waiters and self._room():
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._enter()

    def _next_interval(self) -> float:
        if self._waiters:
            return self.interval_s
        return self.quiet_interval_s

    def _hurry(self) -> None:
        """A call must wait: bring a quiet tick forward to ``interval_s`` from now."""
        loop, handle = self._loop, self._handle
        if loop is None or handle is None:
            return
        due = loop.time() + self.interval_s
        if due < self._due:
            handle.cancel()
            self._due = due
            self._handle = loop.call_at(due, self._tick)

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
