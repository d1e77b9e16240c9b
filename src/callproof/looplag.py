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
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from types import TracebackType
from typing import Any

from callproof.resilience.watchdog import quantile

__all__ = ["DEFAULT_WARN_ABOVE_S", "LoopLagMonitor"]

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
        self.max_s = 0.0
        self.warnings = 0
        self._log = logger or log
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._last_warning: float | None = None

    def start(self) -> None:
        """Start sampling on the running loop (idempotent)."""
        if self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time() + self.interval_s
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
        now = loop.time()
        lag = max(0.0, now - self._due)
        self.samples.append(lag)
        self.max_s = max(self.max_s, lag)
        if lag > self.warn_above_s:
            self.warnings += 1
            if self._last_warning is None or now - self._last_warning >= self.warn_every_s:
                self._last_warning = now
                self._log.warning(
                    "event loop lagged %.3f s (warning above %.3f s): every timeout fires late "
                    "while the loop is starved; lower the concurrency",
                    lag,
                    self.warn_above_s,
                )
        self._due = now + self.interval_s
        self._handle = loop.call_at(self._due, self._tick)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile of the lags kept (the project's one quantile formula), or None
        before any sample."""
        if not self.samples:
            return None
        return quantile(sorted(self.samples), q)

    def stats(self) -> dict[str, Any]:
        """Samples taken, p50/p99/max lag (seconds) and how many ticks were over the threshold."""
        return {
            "samples": len(self.samples),
            "p50_s": self.quantile(0.5),
            "p99_s": self.quantile(0.99),
            "max_s": self.max_s,
            "warnings": self.warnings,
            "warn_above_s": self.warn_above_s,
        }
