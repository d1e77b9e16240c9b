"""Router load: 1,000 and 5,000 concurrent routed calls at 40% hangs, and whether the clocks
stay honest ("never livelock").

Run:  python bench/router_load.py                 (1,000 and 5,000 concurrent)
      python bench/router_load.py --quick         (a smoke run: 200 concurrent)

The emulator runs in its own process (``preset="seed"`` with the fault plan of
bench/resilience.py: Kimi K2.5 on Bedrock hangs, headers then no events, on ``--hang`` of the
tool-result turns; OpenRouter's Kimi is healthy), on the shipped server (``--server fast``: the
fast front; ``--server uvicorn`` is the earlier rounds' setup) with ``max_streams`` above the
load, so no stream is refused. Each measurement is a fresh client process running ``--calls``
(default 2x the concurrency) calls of ``Router("kimi", [bedrock-kimi, openrouter-kimi])`` with
the default route policy, ``concurrency`` at a time, on one event loop. The settings at each
concurrency, run in turn: ``healthy`` (no hangs; its p99 is the reference) and ``hang 40%``,
and (unless ``--no-clocks``) ``clocks``: hedging and breakers off and mixed faults
(:func:`mixed_plan`), so the first-event and idle watchdogs fire, calls fall back and some wait
out a backoff; it is judged on clock lateness and fds only, since its faults fail some calls on
both targets by design.

Reported per run:

* success (the answer has the seed's "22") and latency p50/p99 per call (failures included);
* requests per call (attempts sent);
* clock lateness: for every clock that fired, fired-at minus due on the loop's clock
  (``loop.time()``, the monotonic clock every callproof clock reads), p99 and max, overall and
  per clock: ``hedge`` (the router's wait for a first event before a backup), ``first_event``
  and ``idle`` (the client's watchdogs), ``deadline``, ``backoff`` (the router's waits before a
  retry; due = asked-for end, fired = the task running again), ``other`` (the grace read after
  a terminal event, error bodies). The client runs on a recording :class:`~callproof.clock.Clock`
  that tags each timer with its kind; the clocks themselves are the shipped ones;
* where the late time went: over the late fires (> 100 ms), the share of their lateness the
  loop thread spent waiting for a CPU (Linux schedstat: other processes had the cores) and in
  garbage-collector pauses; the rest is the loop's own work;
* event-loop lag (:class:`callproof.looplag.LoopLagMonitor`: a timer every 50 ms) p99 and max,
  and "own lag p99": the p99 over the ticks that were the loop's own work (not waiting for a
  CPU, which no client design fixes), the collector's longest pause, and the share of the
  run the loop waited for a CPU;
* the load average before each run;
* whether the healthy fallback's breaker ever opened;
* open file descriptors before the client and after it closed;
* client CPU per call (``time.process_time``).

Scheduling: Linux with ``sched_autogroup_enabled`` shares the CPU fairly between *sessions*,
not processes, so a client and an emulator started from one shell would split one session's
share. The emulator and each client run therefore start in their own session
(``start_new_session``): the client is scheduled as one party among the machine's others, and
the emulator's CPU (it stands for a provider on other machines) is not taken from the client's.

Designs (``--designs``): ``new`` (as shipped), ``nogate`` (the free list without the admission
gate), ``old`` (httpcore's pool, no gate), ``cycles`` (as shipped, but a finished attempt's
reference cycles are not broken: :meth:`callproof.resilience.hedge.AttemptRun._finished` off),
``gcfreeze`` (as shipped, and the client process calls :func:`callproof.looplag.tune_gc`: its
start-up objects out of the collector's reach, full collections a tenth as often: what
``callproof run`` and ``callproof serve`` do around their loop, :func:`~callproof.looplag.tuned_gc`,
and what a library user's application at this concurrency should do; ``new`` is a library
user who did not),
``burst`` (as shipped, but the admission gate lets up to 128 calls in per tick, its earlier
setting, instead of 16).

Targets (issues 10 and 14): success >= 99.9%, p99 <= 2x the healthy p99 at the same
concurrency, no clock late by more than 100 ms, the healthy fallback's breaker never open, fds
back to where they started. The machine is shared: compare within one run. Exit code 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from resilience import KIMI_BEDROCK, KIMI_OPENROUTER, fault_plan  # noqa: E402

HEALTHY_TARGET = "openrouter-kimi-k2.5"


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _fd_targets() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return sorted(out)


def _pct(xs: list[float], q: float) -> float | None:
    try:
        from callproof.quantile import quantile  # the one quantile function
    except ImportError:  # before the consolidation landed
        from callproof.resilience.watchdog import (  # type: ignore[attr-defined,no-redef,unused-ignore]
            quantile,
        )

    return quantile(sorted(xs), q) if xs else None


# -- the client process ------------------------------------------------------------------------


DESIGNS = ("new", "nogate", "old", "cycles", "gcfreeze", "burst")


def _use_design(design: str) -> None:
    """``new``: the client as shipped (the free-list transport, the admission gate);
    ``nogate``: the free list without the gate; ``old``: httpx's default transport
    (httpcore's pool at the limits callproof used before) and no gate; ``cycles``: as shipped,
    with a finished attempt's reference cycles left for the collector; ``gcfreeze``: as
    shipped, start-up objects frozen and full collections a tenth as often; ``burst``: as
    shipped, with the gate letting up to 128 calls in per tick (its earlier setting)."""
    import functools

    import httpx

    from callproof import client, looplag, transport
    from callproof.resilience import hedge

    if design not in DESIGNS:
        raise SystemExit(f"unknown design {design!r}")
    if design == "burst":
        client.AdmissionGate = functools.partial(  # type: ignore[attr-defined,assignment]
            looplag.AdmissionGate, max_batch=128
        )
    if design == "cycles":
        hedge.AttemptRun._finished = lambda self, task: None  # type: ignore[method-assign]
    if design == "gcfreeze":
        looplag.tune_gc()
    if design in ("old", "nogate"):
        client.AdmissionGate = lambda: None  # type: ignore[attr-defined,assignment,misc]
    if design == "old":
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        transport.make_transport = lambda verify=True: httpx.AsyncHTTPTransport(
            verify=verify, limits=limits
        )


#: The caller's function -> the clock it keeps (see the module docstring).
_KINDS = {
    "_acquire": "hedge",
    "_end_after_stop": "other",
    "_raise_status": "other",
    "_raise_json_for_stream": "other",
}
_STALLS = {
    "StallBeforeHeaders": "first_event",
    "StallNoEvents": "first_event",
    "StallMidStream": "idle",
    "DeadlineExceeded": "deadline",
}


def _kind(frame: Any) -> str:
    """Which clock a timer armed from ``frame`` (or its callers, up to three) is."""
    for _ in range(3):
        if frame is None:
            break
        name = frame.f_code.co_name
        if name in _KINDS:
            return _KINDS[name]
        if name in ("_read", "_open_admitted"):
            stall = frame.f_locals.get("stall_cls")
            return _STALLS.get(getattr(stall, "__name__", ""), "other")
        frame = frame.f_back
    return "other"


class _Fired:
    """Every clock that fired: (kind, lateness in seconds, fired at on the loop's clock)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []

    def add(self, kind: str, late: float) -> None:
        now = asyncio.get_running_loop().time()
        self.rows.append((kind, late, now))


def _recording_clock(fired: _Fired) -> Any:
    """The real clock, each timer tagged with its kind and its lateness recorded when it
    fires (fired-at minus due, both ``loop.time()``, which is ``time.monotonic()``)."""
    import asyncio.timeouts

    from callproof.clock import RealClock

    class Tagged(asyncio.timeouts.Timeout):  # type: ignore[misc]
        def __init__(self, when: float | None, kind: str) -> None:
            super().__init__(when)
            self.kind = kind

        def _on_timeout(self) -> None:
            when = self.when()
            if when is not None:
                fired.add(self.kind, asyncio.get_running_loop().time() - when)
            super()._on_timeout()  # type: ignore[misc]

    class Recording(RealClock):
        def timeout_at(self, deadline: float | None) -> Any:
            return Tagged(deadline, _kind(sys._getframe(1)))

        async def sleep(self, seconds: float) -> None:
            loop = asyncio.get_running_loop()
            due = loop.time() + max(0.0, seconds)
            await asyncio.sleep(seconds)
            if seconds > 0:
                fired.add("backoff", loop.time() - due)

    return Recording()


def _series_monitor() -> Any:
    """A :class:`LoopLagMonitor` that also keeps, per tick, the loop thread's cumulative
    runqueue wait and the collector's cumulative pauses (to say where late time went)."""
    from callproof.looplag import LoopLagMonitor, runqueue_wait_s

    class Series(LoopLagMonitor):
        def __init__(self) -> None:
            super().__init__(interval_s=0.02, warn_every_s=3600)
            self.series: list[tuple[float, float, float]] = []

        def _sample(self) -> None:
            assert self._loop is not None
            self.series.append((self._loop.time(), runqueue_wait_s() or 0.0, self.gc.total_s))

        def start(self) -> None:
            super().start()
            self._sample()

        def _tick(self) -> None:
            self._sample()
            super()._tick()

    return Series()


def _cum(series: list[tuple[float, float, float]], times: list[float], t: float, i: int) -> float:
    """Field ``i`` of the cumulative ``series`` at time ``t`` (linear between samples)."""
    import bisect

    k = bisect.bisect_left(times, t)
    if k == 0:
        return series[0][i]
    if k == len(series):
        return series[-1][i]
    (ta, *a), (tb, *b) = series[k - 1], series[k]
    frac = (t - ta) / (tb - ta) if tb > ta else 1.0
    return float(a[i - 1] + (b[i - 1] - a[i - 1]) * frac)


def _where_late(
    rows: list[tuple[str, float, float]], series: list[tuple[float, float, float]]
) -> dict[str, Any]:
    """Over the fires later than 100 ms: how many, and the shares of their late time (from
    due to fired) the loop thread spent waiting for a CPU and in collector pauses."""
    late = [(lt, at) for _, lt, at in rows if lt > 0.1]
    total = sum(lt for lt, _ in late)
    if not late or len(series) < 2:
        return {"late_fires": len(late), "cpu_wait_share": None, "gc_share": None}
    times = [t for t, _, _ in series]
    waited = paused = 0.0
    for lt, at in late:
        waited += min(lt, max(0.0, _cum(series, times, at, 1) - _cum(series, times, at - lt, 1)))
        paused += min(lt, max(0.0, _cum(series, times, at, 2) - _cum(series, times, at - lt, 2)))
    return {"late_fires": len(late), "cpu_wait_share": waited / total, "gc_share": paused / total}


async def _client(
    url: str, concurrency: int, calls: int, design: str, policy_name: str
) -> dict[str, Any]:
    from callproof.client import Client
    from callproof.errors import AllAttemptsFailed
    from callproof.resilience import Router
    from callproof.resilience.policy import BreakerPolicy, HedgePolicy, RoutePolicy
    from callproof.scenarios import tool_result
    from callproof.targets import Endpoint, Target, Timeouts
    from callproof.transport import raise_fd_limit

    raise_fd_limit(4 * concurrency + 1024)
    _use_design(design)
    fired = _Fired()
    clock = _recording_clock(fired)

    conv = tool_result().conversation
    # the clocks setting: a 3 s idle timeout (not 30 s), so a stalled stream ends in seconds
    timeouts = Timeouts(idle=3.0) if policy_name == "nohedge" else Timeouts()
    kimi = Target(
        "bedrock-kimi-k2.5",
        "bedrock-converse-stream",
        KIMI_BEDROCK,
        Endpoint(url, region="us-east-1"),
        timeouts=timeouts,
    )
    orr = Target(
        HEALTHY_TARGET,
        "openai-completions",
        KIMI_OPENROUTER,
        Endpoint(url + "/v1"),
        timeouts=timeouts,
    )
    fds_before, targets_before = _fds(), _fd_targets()
    latencies: list[float] = []
    ok = 0
    requests = 0
    errors: dict[str, int] = {}
    transport: dict[str, int] = {}
    sem = asyncio.Semaphore(concurrency)
    c0, t_start = time.process_time(), time.perf_counter()
    async with _series_monitor() as lag, Client(clock=clock) as client:
        policy = (
            RoutePolicy(hedge=HedgePolicy(mode="off"), breaker=BreakerPolicy(enabled=False))
            if policy_name == "nohedge"
            else None
        )
        router = Router("kimi", [kimi, orr], client=client, policy=policy)

        async def one() -> None:
            nonlocal ok, requests
            async with sem:
                t0 = time.perf_counter()
                try:
                    resp = await router.complete(conv)
                    requests += sum(1 for a in resp.attempts if a.get("sent"))
                    if "22" in resp.text:
                        ok += 1
                    else:
                        errors["answer without 22"] = errors.get("answer without 22", 0) + 1
                except AllAttemptsFailed as group:
                    attempts = getattr(group, "attempts", [])
                    requests += sum(1 for a in attempts if a.get("sent"))
                    for sub in group.exceptions:
                        if getattr(sub, "outcome", "") == "transport_error":
                            msg = f"transport_error: {str(sub)[:110]}"
                            transport[msg] = transport.get(msg, 0) + 1
                    key = "all attempts failed: " + " | ".join(
                        f"{type(e).__name__}: {str(e)[:90]}" for e in group.exceptions
                    )
                    errors[key] = errors.get(key, 0) + 1
                except Exception as exc:
                    key = f"{type(exc).__name__}: {str(exc)[:120]}"
                    errors[key] = errors.get(key, 0) + 1
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(one() for _ in range(calls)))
        transitions = router.breaker_transitions()
        gate = client.admission
        gate_info = (
            {"window": gate.window, "max_inflight": gate.max_inflight, "left": gate.inflight}
            if gate is not None
            else None
        )
    wall = time.perf_counter() - t_start
    cpu = time.process_time() - c0
    await asyncio.sleep(0.2)  # closed sockets settle
    opened = [t for t in transitions if t.get("target") == HEALTHY_TARGET and t.get("to") == "open"]
    late = [lt for _, lt, _ in fired.rows]
    kinds: dict[str, dict[str, Any]] = {}
    for kind in sorted({k for k, _, _ in fired.rows}):
        xs = [lt for k, lt, _ in fired.rows if k == kind]
        kinds[kind] = {"n": len(xs), "p99_s": _pct(xs, 0.99), "max_s": max(xs)}
    return {
        "calls": calls,
        "ok": ok,
        "success": ok / calls,
        "p50_s": _pct(latencies, 0.5),
        "p99_s": _pct(latencies, 0.99),
        "requests_per_call": requests / calls,
        "timeouts_fired": len(late),
        "late_p99_s": _pct(late, 0.99),
        "late_max_s": max(late) if late else None,
        "late_by_kind": kinds,
        "where_late": _where_late(fired.rows, lag.series),
        "lag": lag.stats(),
        "gate": gate_info,
        "healthy_breaker_opened": len(opened),
        "opened_because": sorted(
            {f"{t['target']}: {t['reason']}" for t in transitions if t.get("to") == "open"}
        )[:4],
        "fds_before": fds_before,
        "fds_after": _fds(),
        "fds_new": sorted(set(_fd_targets()) - set(targets_before))[:5],
        "cpu_ms_per_call": 1000 * cpu / calls,
        "wall_s": wall,
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:3]),
        "transport_errors": dict(sorted(transport.items(), key=lambda kv: -kv[1])[:3]),
    }


# -- the emulator process ---------------------------------------------------------------------


def _serve(plan: str, port: int, server: str) -> None:
    """The emulator process: ``fast``, the shipped server (:class:`EmulatorServer`: its fast
    front serves the model routes on a bare asyncio Protocol from response plans), or
    ``uvicorn``, the same app on uvicorn (the setup of the earlier rounds, about ten times the
    server CPU per stream, which the client's clocks then wait for on 2 shared cores)."""
    from callproof.emulator import create_app
    from callproof.emulator.state import Limits
    from callproof.transport import raise_fd_limit

    raise_fd_limit(60000)
    app = create_app(preset="seed", faults=plan, limits=Limits(max_streams=100_000))
    if server == "fast":
        from callproof.emulator.server import EmulatorServer
        from callproof.http_server import ServerLimits

        limits = ServerLimits(max_connections=50_000, header_timeout_s=600.0)
        EmulatorServer(app=app, port=port, limits=limits, log_level="error").start().wait()
        return
    import uvicorn

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="error",
        access_log=False,
        lifespan="off",
        backlog=8192,
    )


def mixed_plan() -> str:
    """The ``clocks`` setting's faults: Kimi on Bedrock hangs before its first event (15%),
    stalls mid-stream after two events (15%) or answers 503 (15%) on the tool-result turns, and
    OpenRouter's Kimi answers 503 on 20%, so with hedging off the first-event and idle
    watchdogs fire, calls fall back, and calls that failed on both targets wait out a backoff."""
    rules = f"""
[[rules]]
model = "{KIMI_BEDROCK}"
api = "bedrock"
turn = "after_tool_result"
faults = [
  {{ fault = "hang_no_events", probability = 0.15 }},
  {{ fault = "stall_after:2", probability = 0.15 }},
  {{ fault = "http_error:503", probability = 0.15 }},
]

[[rules]]
model = "{KIMI_OPENROUTER}"
api = "openai"
turn = "after_tool_result"
fault = "http_error:503"
probability = 0.2
"""
    base = fault_plan(0.0)
    head, _, tail = base.partition("\n")  # the seed line first
    return f"{head}\n{rules}{tail}"


class Emulator:
    def __init__(self, key: str, plan_text: str, workdir: Path, server: str) -> None:
        plan = workdir / f"plan-{key}.toml"
        plan.write_text(plan_text, encoding="utf-8")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(plan), str(port), server],
            stdout=subprocess.DEVNULL,
            stderr=(workdir / f"emulator-{key}.log").open("w"),
            cwd=ROOT,
            start_new_session=True,  # its own scheduler group (see the module docstring)
        )
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{self.url}/v1/models", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the emulator did not start")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _renice(value: str | None) -> None:
    """Give the client process (and, with autogroup, its session's group) this nice value."""
    if not value:
        return
    nice = int(value)
    os.setpriority(os.PRIO_PROCESS, 0, nice)
    with contextlib.suppress(OSError):  # no autogroup: the process's nice value is what counts
        Path("/proc/self/autogroup").write_text(str(nice), encoding="ascii")


def _autogroup() -> str:
    try:
        on = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text(encoding="ascii")
    except OSError:
        return "unknown"
    return "on" if on.strip() == "1" else "off"


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text(encoding="ascii").split()[:3])
    except OSError:
        return "?"


def _run(
    url: str, concurrency: int, calls: int, design: str, policy: str, cap: float
) -> dict[str, Any] | None:
    load = _loadavg()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--client",
                url,
                str(concurrency),
                str(calls),
                design,
                policy,
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
            timeout=cap,
            start_new_session=True,  # its own scheduler group (see the module docstring)
        )
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        raise SystemExit(f"client run failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["loadavg_before"] = load
    return result


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{1000 * x:.0f}"


def _pc(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="1000,5000", help="concurrency levels")
    parser.add_argument("--calls", type=int, default=None, help="calls per run (default 2x)")
    parser.add_argument("--hang", type=float, default=0.4, help="share of hung turns")
    parser.add_argument("--cap", type=float, default=600.0, help="seconds before a run is DNF")
    parser.add_argument("--quick", action="store_true", help="a smoke run at 200 concurrent")
    parser.add_argument(
        "--designs",
        default="new",
        help="client designs, run in turn: new (as shipped), nogate (free list, no admission "
        "gate), old (httpcore's pool, no gate), cycles (attempt cycles left to the collector), "
        "gcfreeze (start-up objects frozen, full collections 10x rarer), burst (gate batch 128)",
    )
    parser.add_argument(
        "--client-nice",
        type=int,
        default=None,
        help="run each client at this nice value (negative needs root): isolates the lateness "
        "the client causes from the machine's other load; default: the machine's own priority",
    )
    parser.add_argument(
        "--no-clocks",
        action="store_true",
        help="skip the 'clocks' setting (hedging and breakers off, mixed faults: the first-event "
        "and idle watchdogs and backoff fire; judged on clock lateness and fds only)",
    )
    parser.add_argument("--client", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument(
        "--server",
        choices=("fast", "uvicorn"),
        default="fast",
        help="the emulator's server: fast (as shipped: the fast front; default) or uvicorn "
        "(the same app on uvicorn, the earlier rounds' setup)",
    )
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return 0
    if args.client:
        _renice(os.environ.get("ROUTER_LOAD_CLIENT_NICE"))
        url, conc, calls, design, policy = args.client
        print(json.dumps(asyncio.run(_client(url, int(conc), int(calls), design, policy))))
        return 0

    if args.client_nice is not None:
        os.environ["ROUTER_LOAD_CLIENT_NICE"] = str(args.client_nice)
    levels = [200] if args.quick else [int(x) for x in args.levels.split(",")]
    # (name, emulator plan, route policy)
    plans = {"healthy": fault_plan(0.0), "hang": fault_plan(args.hang)}
    settings = [("healthy", "healthy", "default"), (f"hang {args.hang:.0%}", "hang", "default")]
    if not args.no_clocks and not args.quick:
        plans["mixed"] = mixed_plan()
        settings.append(("clocks", "mixed", "nohedge"))
    designs = args.designs.split(",")
    rows: list[tuple[int, str, str, dict[str, Any] | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        emulators = {
            key: Emulator(key, text, Path(tmp), args.server) for key, text in plans.items()
        }
        try:
            for concurrency in levels:
                calls = args.calls or 2 * concurrency
                for i, design in enumerate(designs):
                    order = settings if i % 2 == 0 else settings[::-1]
                    for name, key, policy in order:
                        url = emulators[key].url
                        result = _run(url, concurrency, calls, design, policy, args.cap)
                        rows.append((concurrency, design, name, result))
        finally:
            for emu in emulators.values():
                emu.close()

    print(
        f"Routed calls under load ({os.cpu_count()} CPUs, shared with other work; the emulator in "
        f"its own process and session, autogroup {_autogroup()}; client nice "
        f"{'default' if args.client_nice is None else args.client_nice}; ratios within this run)"
    )
    print(
        f"{'conc':>5} {'design':>6} {'setting':>9} {'calls':>6} {'success':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} "
        f"{'p99/healthy':>11} {'req/call':>8} {'late p99':>8} {'late max':>8} {'lag p99':>7} "
        f"{'lag max':>7} {'own lag p99':>11} {'fallback open':>13} {'fds':>11} {'CPU ms/call':>11}"
    )
    failed = False
    healthy_p99 = {(c, d): r["p99_s"] for c, d, n, r in rows if n == "healthy" and r and r["p99_s"]}
    for concurrency, design, name, r in rows:
        if r is None:
            print(f"{concurrency:>5} {design:>6} {name:>9} did not finish within {args.cap:g} s")
            failed = design == designs[0] or failed
            continue
        ref = healthy_p99.get((concurrency, design))
        ratio = r["p99_s"] / ref if ref and r["p99_s"] else None
        lag = r["lag"]
        print(
            f"{concurrency:>5} {design:>6} {name:>9} {r['calls']:>6} {r['success']:>8.2%} "
            f"{_ms(r['p50_s']):>7} "
            f"{_ms(r['p99_s']):>7} {'-' if ratio is None else f'{ratio:.2f}x':>11} "
            f"{r['requests_per_call']:>8.2f} {_ms(r['late_p99_s']):>8} {_ms(r['late_max_s']):>8} "
            f"{_ms(lag['p99_s']):>7} {_ms(lag['max_s']):>7} {_ms(lag['own_p99_s']):>11} "
            f"{r['healthy_breaker_opened']:>13} "
            f"{r['fds_before']:>5}->{r['fds_after']:<5} {r['cpu_ms_per_call']:>11.2f}"
        )
        kinds = ", ".join(
            f"{k} {_ms(v['p99_s'])}/{_ms(v['max_s'])} (n={v['n']})"
            for k, v in r["late_by_kind"].items()
        )
        print(f"      clock late p99/max ms by kind: {kinds}")
        where = r["where_late"]
        share = "-" if lag["runqueue_share"] is None else f"{lag['runqueue_share']:.0%}"
        print(
            f"      load {r['loadavg_before']}; loop waited for a CPU {share} of the run; "
            f"collector: {lag['gc_pauses']} pauses, longest {_ms(lag['gc_max_s'])} ms; "
            f"{where['late_fires']} fires > 100 ms late, their late time "
            f"{_pc(where['cpu_wait_share'])} waiting for a CPU, {_pc(where['gc_share'])} in "
            "the collector"
        )
        if r.get("gate"):
            g = r["gate"]
            print(
                f"      gate: window {g['window']}, at most {g['max_inflight']} calls in flight, "
                f"{g['left']} slots left taken"
            )
        for why in r.get("opened_because", []):
            print(f"      breaker opened: {why}")
        for key, count in {**r["errors"], **r.get("transport_errors", {})}.items():
            print(f"      {count} x {key}")
        misses = []
        clocks_only = name == "clocks"  # its faults fail some calls by design
        if r["success"] < 0.999 and not clocks_only:
            misses.append("success < 99.9%")
        if ratio is not None and ratio > 2.0 and not clocks_only:
            misses.append("p99 > 2x healthy")
        if (r["late_p99_s"] or 0) > 0.1:
            misses.append("clock p99 late > 100 ms")
        if r["healthy_breaker_opened"] and not clocks_only:
            misses.append("healthy fallback's breaker opened")
        if r["fds_after"] > r["fds_before"]:
            misses.append(f"fds leaked ({', '.join(r['fds_new'])})")
        if misses:
            failed = design == designs[0] or failed  # the shipped design is the one judged
            print(f"      MISSED: {', '.join(misses)}")
    if args.quick:
        return 0  # a smoke run: the figures are printed, the targets are judged by full runs
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
