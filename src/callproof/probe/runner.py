"""The probe run: N attempts per (target or route, scenario), written down as they end.

Shape of a run::

    plan (units x scenarios x 1..n, attempt-major) -> workers (bounded overall and per unit,
    optional rate limit) -> one attempt each (the client's clocks; a hang is an outcome, never
    retried inside a measured attempt) -> results.jsonl (appended and flushed per attempt)
    + Aggregator (counts only) -> summary.json, run.json, reports, history

Nothing holds the records: memory stays flat over 100,000 attempts. ``resume`` reads an
interrupted run's ``results.jsonl``, skips the (target, scenario, attempt) keys already there,
and appends the rest under the same run id. Cancelling the run (Ctrl-C) cancels in-flight
attempts, which are not recorded, and still summarises what finished. The files of the run
directory and ``run.json``'s meta live in :mod:`callproof.probe.rundir`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from callproof import redact
from callproof.conversation import Conversation
from callproof.emulator.faults import ATTEMPT_KEY_HEADER, FaultPlan
from callproof.errors import AllAttemptsFailed, CallError, ConfigError
from callproof.events import Response
from callproof.looplag import LoopLagMonitor, tuned_gc
from callproof.probe.config import EMULATOR_URL, Config
from callproof.probe.rundir import (
    RESULTS,
    Unit,
    capture_name,
    environment,
    load_plan,
    lock_run_dir,
    new_run_dir,
    now_utc,
    request_bodies,
    scan_existing,
    scenario_meta,
    target_meta,
    write_json,
)
from callproof.probe.scenarios import ProbeScenario, drive_loop
from callproof.record import AttemptRecord, RouteAttemptRecord
from callproof.targets import Target
from callproof.transport import raise_fd_limit

__all__ = [
    "RunOptions",
    "RunResult",
    "Unit",
    "check_selection",
    "gate_failures",
    "load_plan",
    "new_run_dir",
    "request_bodies",
    "run_probe",
    "run_sync",
]


@dataclass(slots=True)
class RunOptions:
    """What to run and where; the CLI fills it from flags, ``[defaults]`` and the environment."""

    out: Path
    n: int = 10
    targets: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    scenarios: list[str] = field(default_factory=lambda: ["tool-result"])
    concurrency: int = 16
    per_target_concurrency: int | None = None
    rate_limit: float | None = None
    capture_failures: bool = False
    resume: bool = False
    argv: list[str] = field(default_factory=list)
    #: Seed for the embedded emulator's fault draws.
    seed: int | None = None
    #: CI gate: ``summary["gate"]`` says whether every pass rate (``point``) or Wilson lower
    #: bound (``lower``) is at or over this fraction.
    fail_under: float | None = None
    gate: str = "point"
    #: Called with each record as it is written (terminal lines, tests).
    on_record: Callable[[dict[str, Any]], None] | None = None
    #: Called once with the number of attempts to run, then ``on_record`` per attempt.
    on_start: Callable[[int], None] | None = None
    #: An httpx transport for every request (e.g. ``httpx.ASGITransport(create_app())``); the
    #: embedded emulator is then not started and emulator targets use ``http://emulator``.
    transport: httpx.AsyncBaseTransport | None = None


@dataclass(slots=True)
class RunResult:
    """A finished (or interrupted) run."""

    run_dir: Path
    run_id: str
    summary: dict[str, Any]
    meta: dict[str, Any]
    interrupted: bool = False
    #: Records written by this invocation (a resumed run also holds earlier ones).
    written: int = 0


# --- planning ----------------------------------------------------------------------------------


def _units(config: Config, options: RunOptions) -> list[Unit]:
    units: list[Unit] = []
    for name in options.targets:
        target = config.targets.get(name)
        if target is None:
            raise ConfigError(
                f"unknown target {name!r} (known: {', '.join(config.targets) or 'none'})",
                where="--target",
            )
        units.append(Unit(name=name, target=target))
    for name in options.routes:
        route = config.routes.get(name)
        if route is None:
            raise ConfigError(
                f"unknown route {name!r} (known: {', '.join(config.routes) or 'none'})",
                where="--route",
            )
        members = tuple(config.targets[t] for t in route.targets)
        units.append(Unit(name=f"route:{name}", route=route, members=members))
    if not units:
        raise ConfigError("nothing to probe: the configuration defines no targets or routes")
    return units


def _scenarios(config: Config, names: Sequence[str]) -> list[ProbeScenario]:
    out = []
    for name in names:
        scenario = config.scenarios.get(name)
        if scenario is None:
            raise ConfigError(
                f"unknown scenario {name!r} (known: {', '.join(config.scenarios)})",
                where="--scenario",
            )
        out.append(scenario)
    return out


def _jobs(
    units: Sequence[Unit],
    scenarios: Sequence[ProbeScenario],
    n: int,
    done: set[tuple[str, str, int]],
) -> Iterator[tuple[Unit, ProbeScenario, int]]:
    # attempt-major, so per-unit limits never leave the other workers idle
    for attempt in range(1, n + 1):
        for scenario in scenarios:
            for unit in units:
                if (unit.name, scenario.name, attempt) not in done:
                    yield unit, scenario, attempt


def check_selection(config: Config, options: RunOptions) -> None:
    """Raise ``ConfigError`` for unknown targets, routes or scenarios, before anything runs."""
    _units(config, options)
    _scenarios(config, options.scenarios)
    if options.n < 1:
        raise ConfigError("n must be at least 1", where="-n")


# --- one attempt -------------------------------------------------------------------------------


class _RateLimiter:
    """Spaces attempt starts ``1/rate`` seconds apart over the whole run."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = 0.0

    async def wait(self) -> None:
        now = asyncio.get_running_loop().time()
        at = max(now, self.next)
        self.next = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)


# --- the run -----------------------------------------------------------------------------------


class _Runner:
    def __init__(
        self,
        config: Config,
        options: RunOptions,
        units: list[Unit],
        scenarios: list[ProbeScenario],
        run_dir: Path,
        run_id: str,
    ) -> None:
        from callproof.probe.summary import Aggregator

        self.config = config
        self.options = options
        self.units = units
        self.scenarios = scenarios
        self.run_dir = run_dir
        self.run_id = run_id
        self.aggregator = Aggregator(
            targets=[u.name for u in units], scenarios=[s.name for s in scenarios]
        )
        self.unit_limits: dict[str, asyncio.Semaphore] = {}
        self.rate = _RateLimiter(options.rate_limit) if options.rate_limit else None
        self.seq = 0
        self.written = 0
        #: Names of the targets the embedded emulator serves (they get the attempt key).
        self.emulated: frozenset[str] = frozenset()
        self.routers: dict[str, Any] = {}
        self.client: Any = None
        self.results: Any = None

    async def run(self, done: set[tuple[str, str, int]]) -> bool:
        """Run every job not in ``done``; True when interrupted."""
        from callproof.client import Client

        jobs = _jobs(self.units, self.scenarios, self.options.n, done)
        todo = len(self.units) * len(self.scenarios) * self.options.n - len(done)
        if self.options.on_start:
            self.options.on_start(max(0, todo))
        limit = self.options.per_target_concurrency
        for unit in self.units:
            self.unit_limits[unit.name] = asyncio.Semaphore(limit or self.options.concurrency)
        workers: list[asyncio.Task[None]] = []
        n_workers = _fd_capped(max(1, min(self.options.concurrency, max(todo, 1))))
        with (self.run_dir / RESULTS).open("a", encoding="utf-8") as results:
            self.results = results
            async with Client(transport=self.options.transport) as client, LoopLagMonitor():
                self.client = client
                self._make_routers(client)
                workers = [asyncio.create_task(self._worker(jobs)) for _ in range(n_workers)]
                try:
                    await asyncio.gather(*workers)
                except asyncio.CancelledError:
                    await _cancel_all(workers)
                    task = asyncio.current_task()
                    if task is not None:
                        task.uncancel()
                    return True
                except BaseException:
                    # e.g. a ConfigError (missing credentials) from one attempt: stop the rest
                    # before the client closes under them
                    await _cancel_all(workers)
                    raise
        return False

    def _make_routers(self, client: Any) -> None:
        if not any(u.route for u in self.units):
            return
        from callproof.resilience import router_for

        for unit in self.units:
            if unit.route is not None:
                self.routers[unit.name] = router_for(unit.route, unit.members, client)

    async def _worker(self, jobs: Iterator[tuple[Unit, ProbeScenario, int]]) -> None:
        for unit, scenario, attempt in jobs:
            async with self.unit_limits[unit.name]:
                if self.rate is not None:
                    await self.rate.wait()
                record = await self._attempt(unit, scenario, attempt)
            self._write(record)
            # One turn of the loop per attempt. An attempt whose every await completes at once
            # (an in-process transport, an emulator with no latency) never gives the loop a
            # turn: one worker then ran every job while the others waited, the lag monitor
            # fired, and the cancelled timeouts of every attempt stayed in the loop's heap
            # (about 1 KB per attempt: memory grew without bound), since the loop prunes them
            # only between turns.
            await asyncio.sleep(0)

    async def _attempt(self, unit: Unit, scenario: ProbeScenario, number: int) -> AttemptRecord:
        started_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        capture: Path | None = None
        if self.options.capture_failures and (unit.target is not None or scenario.loop is None):
            capture = self.run_dir / "captures" / capture_name(unit.name, scenario.name, number)
            capture.parent.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        record = await self._execute(unit, scenario, capture, number)
        timings = record.timings
        if timings.total_s is None:
            timings = replace(timings, total_s=time.perf_counter() - t0)
        requests = record.requests
        if unit.route is not None:
            # counted from this call's own attempts: the router's counter is shared by
            # every call in flight
            requests = sum(1 for a in record.route_attempts if a.sent)
        elif requests < 1:
            requests = 1
        record = record.replace(
            run_id=self.run_id,
            seq=0,
            target=unit.name,
            scenario=scenario.name,
            attempt=number,
            api=unit.api,
            model=unit.model,
            provider=unit.provider,
            timings=timings,
            requests=requests,
            started_at=started_at,
            capture=None,
        )
        if capture is not None:
            record = self._keep_captures(record, capture)
        return record

    def _keep_captures(self, record: AttemptRecord, capture: Path) -> AttemptRecord:
        """Keep the captures of a failed attempt (paths relative to the run directory), delete
        those of a passed one. A routed call has one capture per attempt, named in its
        ``route_attempts`` records; the call's ``capture`` is its last attempt's."""
        passed = record.passed
        files = [capture] if capture.exists() else []
        route_attempts = []
        for attempt in record.route_attempts:
            if not attempt.sent:  # a skipped target: nothing captured, its capture is null
                route_attempts.append(attempt.replace(extra={**attempt.extra, "capture": None}))
                continue
            path = Path(attempt.capture) if attempt.capture else None
            kept = None
            if path is not None and path.exists():
                files.append(path)
                if not passed:
                    kept = path.relative_to(self.run_dir).as_posix()
            route_attempts.append(attempt.replace(capture=kept))
        kept_call = None
        for path in files:
            if passed:
                path.unlink()
            else:
                kept_call = path.relative_to(self.run_dir).as_posix()
        return record.replace(route_attempts=tuple(route_attempts), capture=kept_call)

    def _keyed(self, target: Target, scenario: ProbeScenario, number: int) -> Target:
        """``target`` with the attempt-key header when the embedded emulator serves it, so the
        emulator's fault draw depends on (seed, target, scenario, attempt) only: the same seed
        fails the same attempts at any concurrency. Real providers never see the header."""
        if target.name not in self.emulated:
            return target
        # percent-encoded: a header is ASCII, a target name need not be
        key = quote(f"{target.name}/{scenario.name}/{number}", safe="/-._~@:")
        headers = {**target.endpoint.headers, ATTEMPT_KEY_HEADER: key}
        return replace(target, endpoint=replace(target.endpoint, headers=headers))

    async def _execute(
        self, unit: Unit, scenario: ProbeScenario, capture: Path | None, number: int
    ) -> AttemptRecord:
        from callproof.attempt import Attempt

        if scenario.loop is not None:
            if unit.target is not None:
                target = self._keyed(unit.target, scenario, number)

                async def call(conv: Conversation) -> Response:
                    return await self.client.complete(  # type: ignore[no-any-return]
                        target, conv, timeouts=target.timeouts, capture=capture
                    )

                origin: str | None = f"{target.api}:{target.model}"
            else:
                router = self.routers[unit.name]

                async def call(conv: Conversation) -> Response:
                    try:
                        return await router.complete(conv)  # type: ignore[no-any-return]
                    except AllAttemptsFailed as group:
                        raise _route_error(group) from group

                origin = None
            verdict, response, error, requests, route_attempts = await drive_loop(
                call, scenario, origin
            )
            attempt = Attempt(
                outcome=verdict.outcome,
                detail=verdict.detail,
                response=response,
                error=error,
                verdict=verdict,
            )
            # a route's requests are counted from its attempts in _attempt
            return attempt.record(
                requests=requests,
                route_attempts=tuple(RouteAttemptRecord.from_json(a) for a in route_attempts),
            )
        if unit.target is not None:
            from callproof.attempt import run_attempt

            attempt = await run_attempt(
                self.client,
                self._keyed(unit.target, scenario, number),
                scenario.scenario,
                timeouts=unit.target.timeouts,
                capture=capture,
            )
            return attempt.record(requests_first=False)  # as plain records always were
        from callproof.resilience import run_route_attempt

        routed = await run_route_attempt(
            self.routers[unit.name], scenario.scenario, capture=capture
        )
        return routed.record()  # carries requests and route_attempts

    def _write(self, record: AttemptRecord) -> None:
        self.seq += 1
        # Secrets a server reflected (a key in an error body, a tool argument) stop here: the
        # results, the summary, the reports and the history are all built from this record.
        record = record.replace(seq=self.seq)
        written = record.to_json()
        data = redact.scrub_obj(written)
        self.results.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
        self.results.flush()
        self.aggregator.add(record if data is written else data)  # the typed one when clean
        self.written += 1
        if self.options.on_record is not None:
            self.options.on_record(data)


def _fd_capped(workers: int) -> int:
    """``workers``, or fewer when this process cannot open a socket for each: every worker
    holds one connection (two with the emulator in this process), so the open-file limit is
    raised to fit, and past the hard limit the concurrency is capped with a warning."""
    need = 2 * workers + 256
    soft = raise_fd_limit(need)
    if soft >= need:
        return workers
    capped = max(1, (soft - 256) // 2)
    logging.getLogger(__name__).warning(
        "concurrency %d needs about %d open files but the limit is %d: running %d workers",
        workers,
        need,
        soft,
        capped,
    )
    return capped


async def _cancel_all(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _route_error(group: AllAttemptsFailed) -> CallError:
    """The error a failed routed call counts as: the last candidate actually sent (as
    ``run_route_attempt`` decides), carrying every attempt's record."""
    from callproof.resilience.routes import final_error

    last = final_error(group)
    attempts = getattr(group, "attempts", None)
    if last.response is None:
        last.response = Response()
    if isinstance(attempts, list) and not last.response.attempts:
        last.response.attempts = attempts
    return last


def gate_failures(
    summary: dict[str, Any], fail_under: float, mode: str = "point"
) -> list[dict[str, Any]]:
    """Entries whose pass rate (``point``) or Wilson lower bound (``lower``) is under the
    threshold (a fraction; 90 is read as 90%)."""
    threshold = fail_under / 100 if fail_under > 1 else fail_under
    failing = []
    for entry in summary.get("results", []):
        value = entry["ci95"][0] if mode == "lower" else entry["pass_rate"]
        if value < threshold:
            failing.append(entry)
    return failing


@contextlib.asynccontextmanager
async def _emulator(
    config: Config, options: RunOptions
) -> AsyncIterator[tuple[Config, dict[str, Any] | None]]:
    seed = options.seed
    if not config.needs_emulator:
        yield config, None
        return
    if options.transport is not None:
        yield config.bind_emulator("http://emulator"), {"url": None, "in_process": "transport"}
        return
    from callproof.emulator import EmulatorServer

    settings = config.emulator
    server = EmulatorServer(
        preset=settings.preset,
        faults=settings.faults,
        seed=seed if seed is not None else settings.seed,
    )
    with server:
        info = {
            "url": server.url,
            "preset": settings.preset,
            "faults": str(settings.faults) if settings.faults else None,
            "seed": seed if seed is not None else settings.seed,
            "in_process": True,
        }
        yield config.bind_emulator(server.url), info


async def run_probe(config: Config, options: RunOptions) -> RunResult:
    """Run the probe described by ``config`` and ``options`` into ``options.out``.

    With ``options.resume`` the directory must hold an interrupted run; its finished attempts
    are kept and only the missing ones run. Returns the summary and meta; ``interrupted`` is
    True when the run was cancelled (Ctrl-C) before every attempt ended. The run directory's
    write lock (:func:`~callproof.probe.rundir.lock_run_dir`) is held throughout: a second
    writer of the same directory fails at once with ``RunDirLocked``.
    """
    _units(config, options)
    if options.n < 1:
        raise ConfigError("n must be at least 1", where="-n")
    if not options.resume:
        options.out.mkdir(parents=True, exist_ok=True)
    elif not options.out.is_dir():
        raise ConfigError(f"not a run directory: {options.out}", where="--resume")
    if options.seed is None:
        options.seed = _effective_seed(config)
    with lock_run_dir(options.out):
        return await _run_probe_locked(config, options)


def _effective_seed(config: Config) -> int | None:
    """The seed of the emulator's fault draws when ``--seed`` is not given: ``[emulator] seed``,
    else the fault plan's own ``seed``, else one drawn now (and recorded, so the run can be
    repeated). None when no target is served by the embedded emulator."""
    if not config.needs_emulator:
        return None
    if config.emulator.seed is not None:
        return config.emulator.seed
    if config.emulator.faults is not None:
        plan_seed = FaultPlan.load(config.emulator.faults).seed
        if plan_seed is not None:
            return plan_seed
    return secrets.randbelow(2**31)


async def _run_probe_locked(config: Config, options: RunOptions) -> RunResult:
    run_dir = options.out
    scenarios = _scenarios(config, options.scenarios)
    if options.resume:
        plan = load_plan(run_dir)
        run_id = str(plan.get("run_id") or uuid.uuid4().hex[:12])
        started_at = str(plan.get("started_at") or now_utc())
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / RESULTS).exists() and (run_dir / RESULTS).stat().st_size:
            raise ConfigError(
                f"{run_dir} already holds results; use --resume {run_dir} or another --out",
                where="--out",
            )
        run_id = uuid.uuid4().hex[:12]
        started_at = now_utc()
    plan = {
        "n": options.n,
        "targets": options.targets,
        "routes": options.routes,
        "scenarios": options.scenarios,
        "config": str(config.path.resolve()) if config.path else None,
        "seed": options.seed,
        "concurrency": options.concurrency,
        "per_target_concurrency": options.per_target_concurrency,
        "rate_limit": options.rate_limit,
        "capture_failures": options.capture_failures,
    }
    async with _emulator(config, options) as (bound, emulator_info):
        bound_units = _units(bound, options)
        from callproof.client import Client

        async with Client() as builder:
            scenarios_meta = [scenario_meta(builder, bound_units, s) for s in scenarios]
        meta: dict[str, Any] = {
            "run_id": run_id,
            "started_at": started_at,
            "finished_at": None,
            "interrupted": None,
            "argv": options.argv,
            "n": options.n,
            "config": plan["config"],
            "targets": [target_meta(u) for u in bound_units],
            "scenarios": scenarios_meta,
            "environment": environment(emulator_info),
            "plan": plan,
        }
        write_json(run_dir / "run.json", meta)
        runner = _Runner(bound, options, bound_units, scenarios, run_dir, run_id)
        if emulator_info is not None:
            runner.emulated = frozenset(
                name for name, t in config.targets.items() if t.endpoint.base_url == EMULATOR_URL
            )
        done: set[tuple[str, str, int]] = set()
        if options.resume:
            done, runner.seq = scan_existing(run_dir / RESULTS, runner.aggregator.add)
        interrupted = await runner.run(done)
    meta["finished_at"] = now_utc()
    meta["interrupted"] = interrupted
    meta["attempts"] = runner.aggregator.records
    summary = runner.aggregator.summary()
    summary["run"] = {
        "run_id": run_id,
        "run_dir": str(run_dir),
        "started_at": started_at,
        "finished_at": meta["finished_at"],
        "n": options.n,
        "interrupted": interrupted,
        "config": plan["config"],
        "seed": options.seed,
    }
    if config.compare_with:
        # the reports' comparison partners ([targets.X] compare_with), kept with the summary
        summary["compare_with"] = dict(config.compare_with)
        meta["compare_with"] = dict(config.compare_with)
    if options.fail_under is not None:
        failing = gate_failures(summary, options.fail_under, options.gate)
        summary["gate"] = {
            "fail_under": options.fail_under,
            "mode": options.gate,
            "passed": not failing,
            "failing": [{"target": e["target"], "scenario": e["scenario"]} for e in failing],
        }
    write_json(run_dir / "summary.json", summary)
    write_json(run_dir / "run.json", meta)
    return RunResult(
        run_dir=run_dir,
        run_id=run_id,
        summary=summary,
        meta=meta,
        interrupted=interrupted,
        written=runner.written,
    )


def run_sync(config: Config, options: RunOptions) -> RunResult:
    """:func:`run_probe` on a fresh event loop (the CLI's entry), with the collector tuned for
    many concurrent attempts (:func:`~callproof.looplag.tuned_gc`) while it runs."""
    with tuned_gc():
        return asyncio.run(run_probe(config, options))
