"""Hedged attempts: one running attempt per task, racing for the first decoded event.

An :class:`AttemptRun` owns one request from start to end in its own task (so the connection
is opened and closed by the same task, as httpx's pools want), forwards its events through a
queue, and tells the router when its first event arrived, when it finished and when it failed.
Cancelling the task leaves the client's ``async with``, which closes the connection: that is
how a hedge loser is stopped.

When no first event has come by the hedge delay, the router starts a backup attempt. The delay
is fixed, or a quantile of the target's observed healthy first-event latency
(:func:`hedge_delay`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Literal, Protocol

from callproof.conversation import Conversation
from callproof.errors import CallError, TransportError
from callproof.events import Event, Response
from callproof.resilience.policy import HedgePolicy
from callproof.resilience.watchdog import LatencyWindow
from callproof.targets import Target, Timeouts

__all__ = [
    "AttemptRun",
    "Signal",
    "StreamingClient",
    "cancel_runs",
    "hedge_delay",
]

#: What an attempt tells the router: its first event came, it finished, or it failed.
Signal = Literal["event", "done", "error"]


class StreamingClient(Protocol):
    """The part of :class:`callproof.client.Client` a router uses."""

    def stream(
        self, target: Target, conversation: Conversation, *, timeouts: Timeouts | None = None
    ) -> AbstractAsyncContextManager[Any]: ...


def hedge_delay(policy: HedgePolicy, window: LatencyWindow | None) -> float | None:
    """Seconds to wait for a first event before starting a backup, or ``None`` (no hedging).

    ``quantile`` mode uses ``quantile x factor`` of the target's healthy first-event latencies
    (never less than ``min_delay_s``) once ``min_samples`` are known, and ``delay_s`` before that.
    """
    if policy.mode == "off" or policy.max_extra <= 0:
        return None
    if policy.mode == "quantile" and window is not None and len(window) >= policy.min_samples:
        q = window.quantile(policy.quantile)
        if q is not None:
            return max(q * policy.factor, policy.min_delay_s)
    return policy.delay_s


class _End:
    """Queue sentinel: the attempt finished (``failed`` tells how)."""

    __slots__ = ("failed",)

    def __init__(self, *, failed: bool) -> None:
        self.failed = failed


class AttemptRun:
    """One request of a routed call, running in its own task."""

    def __init__(
        self,
        *,
        number: int,
        target: Target,
        timeouts: Timeouts,
        hedge: bool,
        started: float,
        breaker_state: str,
        started_loop: float | None = None,
        capture: Path | None = None,
    ) -> None:
        self.number = number
        #: Where the client writes this attempt's raw capture, when the caller asked for one.
        self.capture = capture
        self.target = target
        self.timeouts = timeouts
        self.hedge = hedge
        #: On the router's (injectable) clock: records, budgets and the hedge timer.
        self.started = started
        #: The same moment (kept for callers of the older two-clock form).
        self.started_loop = started if started_loop is None else started_loop
        self.breaker_state = breaker_state
        self.events: asyncio.Queue[Event | _End] = asyncio.Queue()
        self.first_event = False
        self.response: Response | None = None
        self.error: CallError | None = None
        #: A non-call error (e.g. ConfigError: no credentials) that must reach the caller.
        self.fatal: BaseException | None = None
        self.task: asyncio.Task[None] | None = None
        self.ended: float | None = None
        self.stream: Any = None
        #: The client's warnings about a stream that still counted as complete.
        self.warnings: list[str] = []

    def start(
        self,
        client: StreamingClient,
        conversation: Conversation,
        notify: Callable[[AttemptRun, Signal], None],
    ) -> None:
        """Start the attempt's task; ``notify`` hears about its first event, end or failure."""
        self.task = asyncio.create_task(
            self._pump(client, conversation, notify),
            name=f"callproof-attempt-{self.number}-{self.target.name}",
        )
        self.task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        """Break the attempt's reference cycles once its task is done, so the attempt and
        what it holds (the stream, the events) die by reference count instead of waiting for
        a full garbage collection.

        An error caught in :meth:`_pump` keeps the attempt alive through its traceback
        (``self.error.__traceback__`` -> the finished ``_pump`` frame -> ``self``), and a
        cancelled task keeps its ``CancelledError`` (traceback -> frames -> ``self`` ->
        ``self.task``). Under load every attempt outlives a few young collections, so these
        cycles land in the oldest generation; at 1,000 concurrent calls the full collections
        that freed them paused the loop for 60-200 ms each, and every clock fired that much
        late. Only the finished ``_pump`` frames lose their local variables (the traceback
        keeps its lines); deeper frames are left alone, since clearing the frame of a
        suspended generator would close it."""
        for exc in (self.error, self.fatal):
            tb = exc.__traceback__ if exc is not None else None
            while tb is not None:
                if tb.tb_frame.f_code is _PUMP_CODE:
                    with contextlib.suppress(RuntimeError):  # still executing: leave it
                        tb.tb_frame.clear()
                tb = tb.tb_next
        if self.task is task:
            self.task = None

    async def _pump(
        self,
        client: StreamingClient,
        conversation: Conversation,
        notify: Callable[[AttemptRun, Signal], None],
    ) -> None:
        try:
            # capture is passed only when asked for, so any StreamingClient works without it
            extra: dict[str, Any] = {"capture": self.capture} if self.capture else {}
            async with client.stream(
                self.target, conversation, timeouts=self.timeouts, **extra
            ) as s:
                self.stream = s
                async for event in s:
                    self.events.put_nowait(event)
                    if not self.first_event:
                        self.first_event = True
                        notify(self, "event")
                self.response = s.response
                self.warnings = list(getattr(s, "warnings", ()))
        except CallError as err:
            self.error = err.with_context(target=self.target.name, model=self.target.model)
            self.events.put_nowait(_End(failed=True))
            notify(self, "error")
            return
        except asyncio.CancelledError:
            raise
        except OSError as exc:  # a socket error the client did not translate
            self.error = TransportError(f"{type(exc).__name__}: {exc}").with_context(
                target=self.target.name, model=self.target.model
            )
            self.events.put_nowait(_End(failed=True))
            notify(self, "error")
            return
        except Exception as exc:  # noqa: BLE001 - handed to the caller's task, re-raised there
            self.fatal = exc
            self.events.put_nowait(_End(failed=True))
            notify(self, "error")
            return
        self.events.put_nowait(_End(failed=False))
        notify(self, "done")

    @property
    def partial(self) -> Response | None:
        """The response so far (finished, failed or abandoned), if the stream had opened."""
        if self.response is not None:
            return self.response
        if self.error is not None and self.error.response is not None:
            return self.error.response
        if self.stream is not None:
            resp: Response = self.stream.response
            return resp
        return None

    async def cancel(self) -> None:
        """Stop the attempt and wait until its connection is closed."""
        await cancel_runs([self])


#: The code of :meth:`AttemptRun._pump`, whose finished frames :meth:`AttemptRun._finished`
#: clears.
_PUMP_CODE = AttemptRun._pump.__code__


async def cancel_runs(runs: list[AttemptRun]) -> None:
    """Cancel attempts and wait until each has left its stream (connection closed).

    Waits with :func:`asyncio.wait`, which does not raise the children's cancellation, so a
    caller that is itself being cancelled still closes every attempt.
    """
    tasks = [r.task for r in runs if r.task is not None and not r.task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
