"""Adaptive first-event timeouts: learn each target's healthy first-event latency.

A fixed first-event timeout is wrong twice: short enough to catch a hang quickly, it cuts off a
slow but healthy thinking model (the reason pi-ai's maintainers rejected idle watchdogs); long
enough for that model, it lets every hang cost a minute. Here each target keeps a bounded window
of first-event latencies from *successful* attempts, and its timeout is a high quantile of them
times a factor, clamped to a floor and a ceiling. Until enough samples are known (cold start)
the target's configured ``timeouts.first_event`` applies.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace

from callproof.quantile import quantile
from callproof.resilience.policy import WatchdogPolicy
from callproof.targets import Target, Timeouts

__all__ = ["AdaptiveWatchdog", "LatencyWindow"]


class LatencyWindow:
    """The last ``size`` latencies of one target (seconds), with quantiles over them."""

    def __init__(self, size: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._sorted: list[float] | None = None

    def add(self, seconds: float) -> None:
        """Record one healthy latency."""
        if seconds >= 0 and math.isfinite(seconds):
            self._values.append(seconds)
            self._sorted = None

    def load(self, values: Iterable[float]) -> None:
        """Replace the window's contents, newest last (samples shared by other replicas)."""
        self._values.clear()
        self._values.extend(v for v in values if v >= 0 and math.isfinite(v))
        self._sorted = None

    def values(self) -> list[float]:
        """The latencies in the window, oldest first."""
        return list(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile of the window (:func:`callproof.quantile.quantile`), ``None``
        when empty."""
        if not self._values:
            return None
        if self._sorted is None:
            self._sorted = sorted(self._values)
        return quantile(self._sorted, q)


class AdaptiveWatchdog:
    """First-event timeouts per target under a :class:`WatchdogPolicy`.

    ``timeouts_for(target)`` gives the :class:`~callproof.targets.Timeouts` to hand the client;
    ``observe(target_name, first_event_s)`` feeds a healthy latency back.
    """

    def __init__(self, policy: WatchdogPolicy) -> None:
        self.policy = policy
        self._windows: dict[str, LatencyWindow] = {}
        #: Hook for a shared-state backend: called with each healthy latency observed.
        self.on_observe: Callable[[str, float], None] | None = None

    def window(self, target_name: str) -> LatencyWindow:
        """The latency window of one target (created on first use)."""
        if target_name not in self._windows:
            self._windows[target_name] = LatencyWindow(self.policy.window)
        return self._windows[target_name]

    def observe(self, target_name: str, first_event_s: float | None) -> None:
        """Record the first-event latency of a successful attempt."""
        if first_event_s is not None:
            self.window(target_name).add(first_event_s)
            if self.on_observe is not None:
                self.on_observe(target_name, first_event_s)

    def first_event_timeout(self, target: Target) -> float | None:
        """The first-event timeout to use for the next attempt on ``target``."""
        configured = target.timeouts.first_event
        if self.policy.mode == "fixed":
            return configured
        win = self.window(target.name)
        if len(win) < self.policy.min_samples:
            return configured
        q = win.quantile(self.policy.quantile)
        assert q is not None
        learned = q * self.policy.factor
        return min(max(learned, self.policy.floor_s), self.policy.ceiling_s)

    def timeouts_for(self, target: Target) -> Timeouts:
        """The target's timeouts with the (possibly learned) first-event timeout."""
        return replace(target.timeouts, first_event=self.first_event_timeout(target))
