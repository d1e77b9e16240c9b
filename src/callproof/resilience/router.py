"""Routes: an ordered list of targets behind one call, with retries, hedging, fallback and a
circuit breaker per target.

::

    router = Router("kimi", [bedrock_kimi, openrouter_kimi], client=client)
    response = await router.complete(conversation)        # response.attempts: every attempt
    async with router.stream(conversation) as s:
        async for event in s:                             # events of the winning attempt
            ...

One call runs like this. The first attempt goes to the first target whose circuit allows it.
When no decoded event has come by the hedge delay, a backup attempt starts on the next target
(or the same one); the first attempt to produce an event wins and the others are cancelled,
which closes their connections. When an attempt fails before output reached the caller, the
call falls back to the next target at once, and comes back to a target that failed only after
its backoff (or the server's Retry-After) has passed. Errors outside the retryable set end a
target's part in the call. Limits: ``retry.max_attempts`` and ``retry.max_total_s``. When no
attempt is left, :class:`~callproof.errors.AllAttemptsFailed` carries every attempt's error.

Output "reaches the caller" with the first content event (text, reasoning or a tool call) that
``stream()`` yields; leading non-content events (the stream start) are held back until then, so
a stream that stalls after its start, or ends empty, can still be retried. After that a failure
is raised as it is. ``complete()``, and ``stream()`` under ``policy.buffered``, hold every event
until an attempt finished, so they may retry after a mid-stream failure.
"""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from callproof.clock import REAL_CLOCK, Clock, as_clock, timeout_after
from callproof.conversation import Conversation, ToolResult, UserMessage
from callproof.errors import (
    STOP_CATEGORIES,
    AllAttemptsFailed,
    CallError,
    CircuitOpenError,
    ConfigError,
    EmptyResponseError,
    StallError,
    ToolCallInTextError,
)
from callproof.events import Event, Response, StreamStart, StreamStop
from callproof.looplag import admitted, is_admitted
from callproof.outcomes import Outcome, classify
from callproof.record import ErrorRecord, RouteAttemptRecord, TimingsRecord
from callproof.resilience.backoff import retry_wait
from callproof.resilience.breaker import CircuitBreaker
from callproof.resilience.hedge import (
    AttemptRun,
    Signal,
    StreamingClient,
    _End,
    cancel_runs,
    hedge_delay,
)
from callproof.resilience.policy import RoutePolicy
from callproof.resilience.watchdog import AdaptiveWatchdog
from callproof.targets import Target
from callproof.telemetry.tracing import route_trace

__all__ = ["EmptyResponseError", "RouteStream", "Router", "served_by"]

log = logging.getLogger("callproof.resilience")

#: While a target's latency is still unknown, a waiting call is woken to look again at the
#: hedge delay when another call teaches it (``Router._wake_cold``), and looks on its own at
#: least this often (samples can also arrive from a shared-state backend). A 50 ms poll in
#: every cold call was 100,000 timer fires/s at 5,000 concurrent calls, before any succeeded.
_COLD_POLL_S = 0.5


class Router:
    """A named route over ``targets`` (tried in order) through ``client``.

    ``clock`` is the one :class:`~callproof.clock.Clock` of every timing decision: the hedge
    timer, backoff and Retry-After waits, budgets, breaker cool-downs (default: the client's
    ``clock``, else the real one). A :class:`~callproof.clock.VirtualClock` runs them on
    virtual time in tests. The older forms still work: ``clock`` as a plain time function and
    ``sleep`` as a plain sleep function. ``rng`` draws the jitter. Breakers and learned
    latencies live as long as the router.
    """

    def __init__(
        self,
        name: str,
        targets: Sequence[Target],
        *,
        client: StreamingClient,
        policy: RoutePolicy | None = None,
        clock: Clock | Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not targets:
            raise ConfigError("a route needs at least one target", where=f"routes.{name}")
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise ConfigError(f"a target appears twice: {names}", where=f"routes.{name}.targets")
        self.name = name
        self.targets: tuple[Target, ...] = tuple(targets)
        self.client = client
        self.policy = policy or RoutePolicy()
        self.policy.validate(where=f"routes.{name}")
        client_clock = getattr(client, "clock", None)
        default = client_clock if isinstance(client_clock, Clock) else REAL_CLOCK
        #: The router's :class:`Clock` (callable: ``router.clock()`` is its monotonic time).
        self.clock: Clock = as_clock(clock, sleep=sleep, default=default)
        self.sleep: Callable[[float], Awaitable[None]] = self.clock.sleep
        self.rng = rng or random.Random()
        self.watchdog = AdaptiveWatchdog(self.policy.watchdog)
        self.breakers = {
            t.name: CircuitBreaker(t.name, self.policy.breaker, self.clock.monotonic)
            for t in targets
        }
        #: Calls started and HTTP requests sent over the router's life.
        self.calls = 0
        self.requests = 0
        #: Retry-After windows (target -> end, on ``clock``): calls that start before the end
        #: wait or go elsewhere; a shared-state backend mirrors them across replicas.
        self.cooldowns: dict[str, float] = {}
        #: Calls waiting on a cold-start hedge delay: woken when a target's latency is learned.
        self._cold: weakref.WeakSet[RouteStream] = weakref.WeakSet()

    def _wake_cold(self) -> None:
        """Tell every call waiting on a cold-start hedge delay to look at it again."""
        for call in list(self._cold):
            call._notify.put_nowait(None)
        self._cold.clear()

    @property
    def label(self) -> str:
        """The name a route has in results (``route:NAME``)."""
        return f"route:{self.name}"

    def breaker_states(self) -> dict[str, str]:
        """Each target's circuit state: ``closed``, ``open`` or ``half_open``."""
        return {name: b.state for name, b in self.breakers.items()}

    def breaker_transitions(self) -> list[dict[str, Any]]:
        """Every circuit state change so far, oldest first."""
        changes = [t for b in self.breakers.values() for t in b.transitions]
        return [t.to_dict() for t in sorted(changes, key=lambda t: t.at)]

    def stream(
        self,
        conversation: Conversation,
        *,
        capture: Path | None = None,
        buffered: bool | None = None,
    ) -> RouteStream:
        """An async context manager yielding the events of the winning attempt.

        ``buffered`` (default: the policy's ``buffered``) holds every event until an attempt
        has finished and passed, so a cut, a stall, a malformed chunk, an empty answer or a
        tool call written as text falls back invisibly. With ``capture``, every attempt's raw
        wire is captured to its own file beside it, ``<stem>.<attempt>-<target>.jsonl``,
        named in the attempt's record."""
        held = self.policy.buffered if buffered is None else buffered
        return RouteStream(self, conversation, hold_all=held, buffered=held, capture=capture)

    async def complete(
        self,
        conversation: Conversation,
        *,
        capture: Path | None = None,
        buffered: bool | None = None,
    ) -> Response:
        """Run the call to its end; the :class:`Response` has one record per attempt in
        ``attempts``. Raises :class:`~callproof.errors.AllAttemptsFailed`, or the provider's
        own error for a refusal the route does not fall over on. Nothing is handed over
        before the end anyway; ``buffered`` (default: the policy's) also judges what
        ``stream(buffered=True)`` judges (an empty answer on any turn, a tool call written as
        text). ``capture`` as for :meth:`stream`."""
        judged = self.policy.buffered if buffered is None else buffered
        async with RouteStream(
            self, conversation, hold_all=True, buffered=judged, capture=capture
        ) as s:
            async for _ in s:
                pass
        assert s.response is not None
        return s.response


def served_by(response: Response) -> str | None:
    """The target that served a routed call's ``response``: the record with ``served: true``
    in ``response.attempts`` (``None`` for a response that did not come through a route)."""
    for record in response.attempts:
        if record.get("served"):
            target: str = record["target"]
            return target
    return None


def _after_tool_result(conversation: Conversation) -> bool:
    if not conversation.messages:
        return False
    last = conversation.messages[-1]
    return isinstance(last, UserMessage) and any(isinstance(p, ToolResult) for p in last.content)


def _is_content(event: Event) -> bool:
    return not isinstance(event, StreamStart | StreamStop)


class RouteStream:
    """One routed call: an async context manager and an async iterator of events.

    ``response`` is the winning attempt's :class:`Response` once the call ended (``attempts``
    filled in); ``attempts`` the records so far; ``requests`` the HTTP requests sent;
    ``served_by`` / ``served_target`` the target that served the answer (its record has
    ``served: true``; only its usage is the response's usage).
    """

    def __init__(
        self,
        router: Router,
        conversation: Conversation,
        *,
        hold_all: bool,
        capture: Path | None = None,
        buffered: bool = False,
    ) -> None:
        self.router = router
        self.conversation = conversation
        self.capture = capture
        self.hold_all = hold_all
        #: Buffered mode: an empty answer on any turn, and a tool call written as text, are
        #: failures that fall back (nothing reached the caller yet).
        self.buffered = buffered
        self.response: Response | None = None
        self.winner: AttemptRun | None = None
        self.requests = 0
        self.output_reached = False
        self._t0 = router.clock.monotonic()
        self._records: dict[int, RouteAttemptRecord] = {}
        self._errors: list[CallError] = []
        self._inflight: set[AttemptRun] = set()
        #: Attempts' signals; ``None`` only asks to look at the hedge delay again.
        self._notify: asyncio.Queue[tuple[AttemptRun, Signal] | None] = asyncio.Queue()
        self._dead: set[str] = set()
        self._skipped: set[str] = set()
        self._not_before: dict[str, float] = dict(router.cooldowns)
        self._failures: dict[str, int] = {}
        #: Targets whose short Retry-After this call waited out once (never twice).
        self._waited_out: set[str] = set()
        #: A target to retry before falling over (it sent a short Retry-After).
        self._prefer: str | None = None
        #: A refusal the route does not fall over on: the call ends with it.
        self._stop: CallError | None = None
        self._seq = 0
        self._primaries = 0
        self._hedges = 0
        self._hedging_done = False
        self._cursor = 0
        self._last_launch: AttemptRun | None = None
        self._gen: AsyncGenerator[Event, None] | None = None
        self._release: Callable[[], None] | None = None
        self._closed = False
        router.calls += 1
        #: The call's spans, when tracing is on (callproof.telemetry.tracing).
        self._trace = route_trace(router, conversation)

    # -- public surface -------------------------------------------------------------------

    @property
    def records(self) -> tuple[RouteAttemptRecord, ...]:
        """One record per attempt (and per skipped target), in attempt order."""
        return tuple(self._records[k] for k in sorted(self._records))

    @property
    def attempts(self) -> list[dict[str, Any]]:
        """:attr:`records` in their JSON form (what ``Response.attempts`` carries)."""
        return [r.to_json() for r in self.records]

    @property
    def served_target(self) -> Target | None:
        """The target whose answer the call returned (``None`` until it succeeded)."""
        if self.response is None or self.winner is None:
            return None
        return self.winner.target

    @property
    def served_by(self) -> str | None:
        """The name of the target whose answer the call returned (``None`` until then)."""
        target = self.served_target
        return target.name if target is not None else None

    async def __aenter__(self) -> RouteStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> RouteStream:
        return self

    async def __anext__(self) -> Event:
        if self._gen is None:
            self._gen = self._events()
        event: Event = await self._gen.__anext__()
        return event

    async def aclose(self) -> None:
        """Stop every attempt still running (closing their connections)."""
        if self._closed:
            return
        self._closed = True
        if self._gen is not None:
            await self._gen.aclose()
        await self._abandon(list(self._inflight), "call closed")
        if self._release is not None:  # the admission gate's slot
            release, self._release = self._release, None
            release()
        if self._trace is not None:
            self._trace.end(self)

    # -- the call ---------------------------------------------------------------------------

    async def _events(self) -> AsyncGenerator[Event, None]:
        gate = getattr(self.router.client, "admission", None)
        if gate is not None and not is_admitted():
            # A starved loop must not run this call's clocks: wait before they start.
            await gate.admit()
            self._release = gate.release
            self._t0 = self.router.clock.monotonic()
        while True:
            run = await self._acquire()
            self.winner = run
            held: list[Event] = []
            while True:
                item = await run.events.get()
                if isinstance(item, _End):
                    self._inflight.discard(run)
                    break
                if self.hold_all or (not self.output_reached and not _is_content(item)):
                    held.append(item)
                    continue
                self.output_reached = True
                for event in held:
                    yield event
                held.clear()
                yield item
            if run.fatal is not None:
                await self._abandon(list(self._inflight), "call failed")
                raise run.fatal
            if run.error is None:
                assert run.response is not None
                empty = self._judge(run.response)
                if empty is None or self.output_reached:
                    self._succeed(run)
                    for event in held:
                        yield event
                    return
                run.error = empty.with_context(target=run.target.name, model=run.target.model)
                run.error.response = run.response
            err = run.error
            self._fail(run, err)
            if self.output_reached:
                if err.response is not None:
                    err.response.attempts = self.attempts
                raise err

    async def _acquire(self) -> AttemptRun:
        """Start attempts (first, hedges, fallbacks) until one produced a first event."""
        if not self._inflight:
            await self._launch_primary()
        while True:
            wait, settled = self._hedge_wait()
            if wait is not None and not settled:
                # Cold: the delay may shorten as other calls teach the target's latency.
                wait = min(wait, _COLD_POLL_S)
                self.router._cold.add(self)
            try:
                async with timeout_after(self.router.clock, wait):
                    message = await self._notify.get()
            except TimeoutError:
                due, _ = self._hedge_wait()
                if due is not None and due <= 0 and not self._launch_hedge():
                    self._hedging_done = True
                continue
            if message is None:
                continue  # a target's latency was learned: look at the delay again
            run, signal = message
            if run not in self._inflight:
                continue  # a message from an attempt already dealt with
            if signal in ("event", "done"):
                await self._abandon(
                    [r for r in self._inflight if r is not run], "lost hedge race", winner=run
                )
                return run
            self._inflight.discard(run)
            if run.fatal is not None:
                await self._abandon(list(self._inflight), "call failed")
                raise run.fatal
            assert run.error is not None
            self._fail(run, run.error)
            if not self._inflight:
                await self._launch_primary()

    def _on_signal(self, run: AttemptRun, signal: Signal) -> None:
        self._notify.put_nowait((run, signal))

    # -- choosing and launching -----------------------------------------------------------

    def _elapsed(self) -> float:
        return self.router.clock.monotonic() - self._t0

    async def _launch_primary(self) -> None:
        retry = self.router.policy.retry
        if self._stop is not None:
            raise self._stopped(self._stop)
        while True:
            choice = self._choose()
            if choice is None:
                raise self._all_failed()
            target, wait = choice
            if wait > 0:
                if retry.max_total_s is not None and self._elapsed() + wait > retry.max_total_s:
                    raise self._all_failed(f"the next wait of {wait:.3g} s would pass max_total_s")
                log.debug("route %s: waiting %.3f s before %s", self.router.name, wait, target.name)
                await self.router.sleep(wait)
            if self.router.breakers[target.name].allow():
                self._launch(target, hedge=False)
                return
            self._skip(target)

    def _choose(self) -> tuple[Target, float] | None:
        retry = self.router.policy.retry
        if self._primaries >= retry.max_attempts:
            return None
        if retry.max_total_s is not None and self._elapsed() >= retry.max_total_s:
            return None
        targets = self.router.targets
        now = self.router.clock.monotonic()
        if self._prefer is not None:
            name, self._prefer = self._prefer, None
            preferred = next(t for t in targets if t.name == name)
            if name not in self._dead and self.router.breakers[name].would_allow():
                return preferred, max(0.0, self._not_before.get(name, now) - now)
        best: tuple[Target, float] | None = None
        for k in range(len(targets)):
            target = targets[(self._cursor + k) % len(targets)]
            if target.name in self._dead or target.name in self._skipped:
                continue
            if not self.router.breakers[target.name].would_allow():
                self._skip(target)
                continue
            wait = max(0.0, self._not_before.get(target.name, now) - now)
            if wait == 0:
                return target, 0.0
            if best is None or wait < best[1]:
                best = (target, wait)
        return best

    def _launch_hedge(self) -> bool:
        last = self._last_launch
        if last is None or self._stop is not None:
            return False
        targets = self.router.targets
        idx = targets.index(last.target)
        n = len(targets)
        if self.router.policy.hedge.target == "next":
            order = [targets[(idx + k) % n] for k in range(1, n)] + [last.target]
        else:
            order = [last.target] + [targets[(idx + k) % n] for k in range(1, n)]
        now = self.router.clock.monotonic()
        for target in order:
            if target.name in self._dead or self._not_before.get(target.name, now) > now:
                continue
            if self.router.breakers[target.name].allow():
                self._hedges += 1
                self._launch(target, hedge=True)
                return True
        return False

    def _hedge_wait(self) -> tuple[float | None, bool]:
        """Seconds until the next hedge is due (``None``: no hedge), and whether that delay
        is settled (fixed, or learned) rather than the cold-start one."""
        hedge = self.router.policy.hedge
        last = self._last_launch
        if self._hedging_done or self._hedges >= hedge.max_extra or last is None:
            return None, True
        if last not in self._inflight:
            return None, True
        window = self.router.watchdog.window(last.target.name)
        delay = hedge_delay(hedge, window)
        if delay is None:
            return None, True
        settled = hedge.mode == "fixed" or len(window) >= hedge.min_samples
        return max(0.0, last.started + delay - self.router.clock.monotonic()), settled

    def _launch(self, target: Target, *, hedge: bool) -> None:
        self._seq += 1
        router = self.router
        run = AttemptRun(
            number=self._seq,
            target=target,
            timeouts=router.watchdog.timeouts_for(target),
            hedge=hedge,
            started=router.clock.monotonic(),
            breaker_state=router.breakers[target.name].state,
            capture=self._capture_path(target),
        )
        if not hedge:
            self._primaries += 1
        self.requests += 1
        router.requests += 1
        self._inflight.add(run)
        self._last_launch = run
        self._cursor = (router.targets.index(target) + 1) % len(router.targets)
        log.debug(
            "route %s: attempt %d on %s%s (first-event timeout %s)",
            router.name,
            run.number,
            target.name,
            " (hedge)" if hedge else "",
            run.timeouts.first_event,
        )
        with admitted():  # the call was let in once: its attempts skip the client's gate
            run.start(router.client, self.conversation, self._on_signal)

    def _capture_path(self, target: Target) -> Path | None:
        if self.capture is None:
            return None
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in target.name)
        return self.capture.with_name(f"{self.capture.stem}.{self._seq}-{safe}.jsonl")

    # -- outcomes ---------------------------------------------------------------------------

    def _judge(self, response: Response) -> CallError | None:
        """A finished answer that is no answer: empty (after a tool result; on any turn when
        buffered), or a tool call written as text (when buffered); ``None`` when it passes."""
        retry = self.router.policy.retry
        verdict = classify(response, None, self.conversation)
        if verdict.outcome is Outcome.EMPTY_RESPONSE and "empty_response" in retry.on:
            if self.buffered:
                return EmptyResponseError(f"empty answer: {verdict.detail}")
            if retry.empty_after_tool_result and _after_tool_result(self.conversation):
                return EmptyResponseError(f"empty answer after a tool result: {verdict.detail}")
        if (
            self.buffered
            and verdict.outcome is Outcome.TOOL_CALL_IN_TEXT
            and "tool_call_in_text" in retry.on
        ):
            return ToolCallInTextError(f"tool call written as text: {verdict.detail}")
        return None

    def _succeed(self, run: AttemptRun) -> None:
        assert run.response is not None
        router = self.router
        router.breakers[run.target.name].record_success()
        window = router.watchdog.window(run.target.name)
        cold = len(window) < router.policy.hedge.min_samples
        router.watchdog.observe(run.target.name, run.response.timings.first_event_s)
        if cold and len(window) >= router.policy.hedge.min_samples:
            router._wake_cold()
        outcome = classify(run.response, None, self.conversation).outcome
        self._record(run, outcome=outcome, reason=None, error=None, served=True)
        run.response.attempts = self.attempts
        self.response = run.response

    def _fail(self, run: AttemptRun, err: CallError) -> None:
        router = self.router
        name = run.target.name
        err.with_context(attempt=run.number)
        self._errors.append(err)
        outcome = classify(err).outcome
        self._record(run, outcome=outcome, reason=err.outcome, error=ErrorRecord(**err.to_dict()))
        breaker = router.breakers[name]
        if isinstance(err, StallError):
            breaker.record_failure(stall=True)
        elif err.retryable:
            breaker.record_failure()
        else:
            breaker.release()
        if self._stops(err):
            self._dead.add(name)
            self._stop = self._stop or err
        elif err.outcome in router.policy.retry.on and err.retryable:
            self._failures[name] = self._failures.get(name, 0) + 1
            wait = retry_wait(
                self._failures[name],
                router.policy.backoff,
                retry_after_s=getattr(err, "retry_after_s", None),
                rng=router.rng,
            )
            self._not_before[name] = router.clock.monotonic() + wait
            after = getattr(err, "retry_after_s", None)
            if after is not None and after > 0:
                until = router.clock.monotonic() + min(
                    after, router.policy.backoff.retry_after_cap_s
                )
                router.cooldowns[name] = max(router.cooldowns.get(name, 0.0), until)
            if self._waits_out(err):
                self._waited_out.add(name)
                self._prefer = name
        else:
            self._dead.add(name)
        log.info(
            "route %s: attempt %d on %s failed: %s", router.name, run.number, name, err.outcome
        )

    def _stops(self, err: CallError) -> bool:
        """Whether ``err`` is a refusal (context length, content filter, validation,
        authentication) that ends the call: the route's ``fallback_on`` does not name its
        category or its outcome."""
        category = err.category
        if category not in STOP_CATEGORIES:
            return False
        fallback_on = self.router.policy.fallback_on
        return category not in fallback_on and err.outcome not in fallback_on

    def _stopped(self, err: CallError) -> CallError:
        """The refusal that ends the call, as the provider gave it, carrying the records."""
        if err.response is None:
            err.response = Response()
        err.response.attempts = self.attempts
        log.info(
            "route %s: %s refused the call (%s); fallback_on does not name it",
            self.router.name,
            err.target,
            err.category,
        )
        return err

    def _waits_out(self, err: CallError) -> bool:
        """Whether ``err`` is a 429/503 whose Retry-After is short enough to wait out on the
        same target (once per target and call) before falling over."""
        after = getattr(err, "retry_after_s", None)
        limit = self.router.policy.retry.wait_retry_after_max_s
        return (
            limit > 0
            and err.status in (429, 503)
            and after is not None
            and after <= limit
            and err.target not in self._waited_out
            and not self.output_reached
        )

    async def _abandon(
        self, runs: list[AttemptRun], reason: str, *, winner: AttemptRun | None = None
    ) -> None:
        router = self.router
        now = router.clock.monotonic()
        for run in runs:
            self._inflight.discard(run)
        await cancel_runs(runs)
        for run in runs:
            if run.number in self._records:
                continue
            if run.error is not None:  # it had failed already: record the failure
                self._fail(run, run.error)
                continue
            waited = now - run.started
            breaker = router.breakers[run.target.name]
            suspected = winner is not None and self._likely_stalled(
                run, waited, now - winner.started
            )
            if suspected:
                breaker.record_suspected_stall()
            else:
                breaker.release()
            self._record(run, outcome="abandoned", reason=reason, error=None, suspected=suspected)

    def _likely_stalled(self, loser: AttemptRun, waited: float, winner_took: float) -> bool:
        """Whether a hedge loser most likely hung: it had no event, waited longer than its
        target's healthy p99 (or the hedge delay when that is unknown), and waited more than
        1.5x what the winner needed. The last test keeps a general slowdown (an overloaded
        network, where the winner was slow too) from looking like a hang."""
        if loser.first_event:
            return False
        policy = self.router.policy
        window = self.router.watchdog.window(loser.target.name)
        threshold = policy.hedge.delay_s
        if len(window) >= policy.hedge.min_samples:
            q = window.quantile(0.99)
            if q is not None:
                threshold = q
        return waited > threshold and waited > 1.5 * winner_took

    def _skip(self, target: Target) -> None:
        if target.name in self._skipped:
            return
        self._skipped.add(target.name)
        self._seq += 1
        err = CircuitOpenError(
            f"circuit of {target.name} is {self.router.breakers[target.name].state}",
            target=target.name,
            model=target.model,
            attempt=self._seq,
        )
        self._errors.append(err)
        self._records[self._seq] = RouteAttemptRecord(
            target=target.name,
            attempt=self._seq,
            outcome="skipped",
            sent=False,
            started_s=round(self._elapsed(), 6),
            abandoned_reason="circuit open",
            error=ErrorRecord(**err.to_dict()),
            breaker=self.router.breakers[target.name].state,
        )

    def _record(
        self,
        run: AttemptRun,
        *,
        outcome: Outcome | Literal["abandoned"],
        reason: str | None,
        error: ErrorRecord | None,
        served: bool = False,
        suspected: bool | None = None,
    ) -> None:
        partial = run.partial
        self._records[run.number] = RouteAttemptRecord(
            target=run.target.name,
            attempt=run.number,
            outcome=outcome,
            hedge=run.hedge,
            timings=TimingsRecord(**partial.timings.to_dict()) if partial is not None else None,
            started_s=round(run.started - self._t0, 6),
            ended_s=round(self._elapsed(), 6),
            first_event_timeout_s=run.timeouts.first_event,
            abandoned_reason=reason,
            error=error,
            request_id=partial.request_id if partial is not None else None,
            breaker=run.breaker_state,
            capture=str(run.capture) if run.capture is not None else None,
            warnings=tuple(run.warnings),
            usage=partial.usage.to_dict() if partial is not None and partial.usage else None,
            served=served,
            suspected_stall=suspected,
        )

    def _all_failed(self, why: str | None = None) -> AllAttemptsFailed:
        errors = list(self._errors)
        if not errors:
            errors = [CallError(why or "no target of the route was available")]
        summary = ", ".join(f"{e.target}: {e.outcome}" for e in errors)
        message = f"route {self.router.name}: all {len(errors)} attempts failed ({summary})"
        if why:
            message += f"; {why}"
        group = AllAttemptsFailed(message, errors)
        group.attempts = self.attempts  # type: ignore[attr-defined]
        group.requests = self.requests  # type: ignore[attr-defined]
        return group
