"""A circuit breaker per target.

::

    closed --(N consecutive failures, or stall share over the window > stall_rate)--> open
    open   --(cool-down elapsed)--> half_open   (up to ``half_open_probes`` calls let through)
    half_open --(a probe succeeds)--> closed   (counters and the reopen delay reset)
    half_open --(a probe fails)-----> open     (a shorter cool-down, growing per failed probe)

The first cool-down (closed -> open) lasts ``reopen_initial_s``; each failed half-open probe
reopens the circuit ``reopen_multiplier`` times longer, never longer than ``open_s`` (2, 4, 8,
16, 30, 30 ... s by default): a target that comes back from an outage gets traffic again within
seconds (a probe landing inside the outage costs a short delay, not a full ``open_s``), one
that stays down is probed ever more rarely. Each transition carries the cool-down it starts
(``delay_s``).

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

from callproof.clock import Clock
from callproof.errors import CircuitOpenError
from callproof.resilience.policy import BreakerPolicy

__all__ = ["BreakerState", "CircuitBreaker", "CircuitOpenError", "Transition"]

log = logging.getLogger("callproof.resilience")

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change of a breaker."""

    target: str
    old: BreakerState
    new: BreakerState
    at: float
    reason: str
    #: For a move to ``open``: the cool-down it starts, in seconds (else ``None``).
    delay_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "from": self.old,
            "to": self.new,
            "at": round(self.at, 6),
            "reason": self.reason,
            "delay_s": None if self.delay_s is None else round(self.delay_s, 6),
        }


class CircuitBreaker:
    """The breaker of one target. ``clock`` is injectable: a :class:`~callproof.clock.Clock`
    or a plain function of monotonic seconds (the router passes its own clock's)."""

    def __init__(
        self, target: str, policy: BreakerPolicy, clock: Clock | Callable[[], float]
    ) -> None:
        self.target = target
        self.policy = policy
        self._clock: Callable[[], float] = clock.monotonic if isinstance(clock, Clock) else clock
        self._state: BreakerState = "closed"
        self._consecutive = 0
        self._window: deque[bool] = deque(maxlen=policy.window)
        self._opened_at = 0.0
        #: The cool-down of the current open period (``open_s``, or a reopen delay).
        self._cooldown = policy.open_s
        #: Half-open probes that failed in a row (sets the next reopen delay).
        self._failed_probes = 0
        self._probes_out = 0
        self.transitions: list[Transition] = []
        #: Hooks for a shared-state backend (:mod:`callproof.state`): called after each state
        #: change, and after each recorded result ("success", "failure", "stall", "suspected").
        self.on_transition: Callable[[Transition], None] | None = None
        self.on_record: Callable[[str], None] | None = None

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose cool-down passed reads as half-open."""
        if self._state == "open" and self._clock() - self._opened_at >= self._cooldown:
            self._move("half_open", f"cool-down of {self._cooldown:.3g} s over")
        return self._state

    @property
    def cooldown_s(self) -> float:
        """The cool-down of the current (or last) open period, in seconds."""
        return self._cooldown

    def reopen_delay(self, failed_probes: int) -> float:
        """The cool-down after ``failed_probes`` half-open probes failed in a row (>= 1):
        ``reopen_initial_s x reopen_multiplier^(n-1)``, at most ``open_s``."""
        p = self.policy
        grown = p.reopen_initial_s * p.reopen_multiplier ** min(max(failed_probes, 1) - 1, 64)
        return min(grown, p.open_s)

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

    def open_remaining_s(self) -> float:
        """Seconds until an open circuit turns half-open (0 when it is not open)."""
        if self._state != "open":
            return 0.0
        return max(0.0, self._opened_at + self._cooldown - self._clock())

    def adopt(self, new: BreakerState, reason: str, *, open_for_s: float | None = None) -> None:
        """Take a state decided elsewhere (another replica, through shared state). An adopted
        open circuit turns half-open after ``open_for_s`` (default: the full cool-down)."""
        self._move(new, reason)
        if new == "open" and open_for_s is not None:
            self._opened_at = self._clock() - max(0.0, self._cooldown - open_for_s)

    def release(self) -> None:
        """Give back a probe slot reserved by :meth:`allow` whose result says nothing
        (the attempt was cancelled because another one won)."""
        if self._state == "half_open" and self._probes_out > 0:
            self._probes_out -= 1

    def record_success(self) -> None:
        """An attempt on this target succeeded."""
        self._consecutive = 0
        self._window.append(False)
        if self.on_record is not None:
            self.on_record("success")
        if self._state == "half_open":
            self._move("closed", "probe succeeded")

    def record_failure(self, *, stall: bool = False) -> None:
        """An attempt on this target failed (``stall``: a watchdog fired or it hung)."""
        self._consecutive += 1
        self._window.append(stall)
        if self.on_record is not None:
            self.on_record("stall" if stall else "failure")
        if not self.policy.enabled:
            return
        if self._state == "half_open":
            self._reopen("probe failed")
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
        if self.on_record is not None:
            self.on_record("suspected")
        if self._state == "half_open":
            self._reopen("probe likely stalled")
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

    def _reopen(self, reason: str) -> None:
        self._failed_probes += 1
        delay = self.reopen_delay(self._failed_probes + 1)  # the first open was the first step
        self._move("open", f"{reason}; reopened for {delay:.3g} s", cooldown=delay)

    def _move(self, new: BreakerState, reason: str, *, cooldown: float | None = None) -> None:
        old = self._state
        if old == new:
            return
        now = self._clock()
        self._state = new
        delay: float | None = None
        if new == "open":
            self._opened_at = now
            self._probes_out = 0
            self._cooldown = self.reopen_delay(1) if cooldown is None else cooldown
            delay = self._cooldown
        elif new == "half_open":
            self._probes_out = 0
        else:
            self._consecutive = 0
            self._failed_probes = 0
            self._cooldown = self.policy.open_s
            self._window.clear()
        change = Transition(self.target, old, new, now, reason, delay)
        self.transitions.append(change)
        log.info("circuit of %s: %s -> %s (%s)", self.target, old, new, reason)
        if self.on_transition is not None:
            self.on_transition(change)
