"""A circuit breaker per target.

::

    closed --(N consecutive failures, or stall share over the window > stall_rate)--> open
    open   --(open_s elapsed)--> half_open   (up to ``half_open_probes`` calls let through)
    half_open --(a probe succeeds)--> closed   (counters reset)
    half_open --(a probe fails)-----> open     (cool-down starts again)

A stall counts as a failure and also into the stall-rate window; an attempt that was abandoned
without a first event after waiting longer than the target's healthy latency (a hedge loser
that was most likely hung) counts as a stall too: otherwise hedging would hide every hang from
the breaker. State changes are logged at INFO on ``callproof.resilience``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from callproof.errors import CallError
from callproof.resilience.policy import BreakerPolicy

__all__ = ["BreakerState", "CircuitBreaker", "CircuitOpenError", "Transition"]

log = logging.getLogger("callproof.resilience")

BreakerState = Literal["closed", "open", "half_open"]


class CircuitOpenError(CallError):
    """A target was skipped because its circuit is open; no request was sent."""

    outcome = "transport_error"
    retryable = False


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change of a breaker."""

    target: str
    old: BreakerState
    new: BreakerState
    at: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "from": self.old,
            "to": self.new,
            "at": round(self.at, 6),
            "reason": self.reason,
        }


class CircuitBreaker:
    """The breaker of one target. ``clock`` is injectable (monotonic seconds)."""

    def __init__(self, target: str, policy: BreakerPolicy, clock: Callable[[], float]) -> None:
        self.target = target
        self.policy = policy
        self._clock = clock
        self._state: BreakerState = "closed"
        self._consecutive = 0
        self._window: deque[bool] = deque(maxlen=policy.window)
        self._opened_at = 0.0
        self._probes_out = 0
        self.transitions: list[Transition] = []

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose cool-down passed reads as half-open."""
        if self._state == "open" and self._clock() - self._opened_at >= self.policy.open_s:
            self._move("half_open", f"cool-down of {self.policy.open_s:.3g} s over")
        return self._state

    def stall_rate(self) -> float:
        """The share of stalls among the calls in the window (0 when empty)."""
        return sum(self._window) / len(self._window) if self._window else 0.0

    def allow(self) -> bool:
        """Whether a request may go to this target now; in half-open, reserves a probe slot."""
        if not self.policy.enabled:
            return True
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and self._probes_out < self.policy.half_open_probes:
            self._probes_out += 1
            return True
        return False

    def would_allow(self) -> bool:
        """Like :meth:`allow` without reserving a probe slot."""
        if not self.policy.enabled:
            return True
        state = self.state
        return state == "closed" or (
            state == "half_open" and self._probes_out < self.policy.half_open_probes
        )

    def release(self) -> None:
        """Give back a probe slot reserved by :meth:`allow` whose result says nothing
        (the attempt was cancelled because another one won)."""
        if self._state == "half_open" and self._probes_out > 0:
            self._probes_out -= 1

    def record_success(self) -> None:
        """An attempt on this target succeeded."""
        self._consecutive = 0
        self._window.append(False)
        if self._state == "half_open":
            self._move("closed", "probe succeeded")

    def record_failure(self, *, stall: bool = False) -> None:
        """An attempt on this target failed (``stall``: a watchdog fired or it hung)."""
        self._consecutive += 1
        self._window.append(stall)
        if not self.policy.enabled:
            return
        if self._state == "half_open":
            self._move("open", "probe failed")
            return
        if self._state != "closed":
            return
        if self._consecutive >= self.policy.failures:
            self._move("open", f"{self._consecutive} consecutive failures")
        elif (
            len(self._window) >= self.policy.min_calls
            and self.stall_rate() > self.policy.stall_rate
        ):
            self._move(
                "open",
                f"stall rate {self.stall_rate():.0%} over the last {len(self._window)} calls",
            )

    def record_suspected_stall(self) -> None:
        """An attempt was abandoned without a first event after waiting far longer than
        healthy (a hedge loser that most likely hung). It counts into the stall-rate window
        only (inferred evidence never opens the circuit through the consecutive-failure rule);
        a half-open probe that most likely hung reopens the circuit."""
        self._window.append(True)
        if self._state == "half_open":
            self._move("open", "probe likely stalled")
            return
        if not self.policy.enabled or self._state != "closed":
            return
        if (
            len(self._window) >= self.policy.min_calls
            and self.stall_rate() > self.policy.stall_rate
        ):
            self._move(
                "open",
                f"stall rate {self.stall_rate():.0%} over the last {len(self._window)} calls",
            )

    def _move(self, new: BreakerState, reason: str) -> None:
        old = self._state
        if old == new:
            return
        now = self._clock()
        self._state = new
        if new == "open":
            self._opened_at = now
            self._probes_out = 0
        elif new == "half_open":
            self._probes_out = 0
        else:
            self._consecutive = 0
            self._window.clear()
        self.transitions.append(Transition(self.target, old, new, now, reason))
        log.info("circuit of %s: %s -> %s (%s)", self.target, old, new, reason)
