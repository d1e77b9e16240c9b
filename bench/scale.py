"""The gateway at scale: workers, the cost of metrics and traces, and shared breaker state.

Run:  python bench/scale.py            (5 s per measurement)
      python bench/scale.py --quick    (a smoke run: 1.5 s per measurement)

Three measurements, each against a baseline measured in the same run (the machine is shared
by other work, so absolute figures mean little; ratios do):

1. **Workers.** ``callproof serve --workers W`` (W = 1, then 2) with the ``fast`` emulator
   preset behind route ``kimi``; ``--concurrency`` streaming OpenAI chat completions at a
   time, from a load generator in its own process, each stream on its own connection so the
   kernel spreads them over the workers. Streams per second, and the ratio 2 workers / 1.
2. **Metrics and traces.** One in-process gateway (``GatewayServer``) with metrics and traces
   off, metrics on, then metrics and traces on (an OpenTelemetry SDK provider with a batch
   processor and an exporter that drops spans, so export I/O is not measured); rounds
   interleaved, the median of three. Streams per second and the ratio to "off".
3. **Shared breaker.** Two replicas (routers with their own Redis connection) while the
   primary hangs, replica B starting 1 s after A: the time from the first circuit opening to
   the other replica's, and the requests sent to the hung primary, shared (Redis) and not.

Needs ``redis-server`` for (3) (skipped, saying so, when absent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

CONFIG = """\
[defaults]
timeouts = { connect = 5.0, first_event = 10.0, idle = 10.0, deadline = 60.0 }

[emulator]
preset = "fast"

[providers.bedrock]
api = "bedrock-converse-stream"
endpoint = "emulator"

[providers.openrouter]
api = "openai-completions"
endpoint = "emulator"

[targets."bedrock-kimi-k2.5"]
provider = "bedrock"
model = "moonshotai.kimi-k2.5"

[targets."openrouter-kimi-k2.5"]
provider = "openrouter"
model = "moonshotai/kimi-k2.5"

[routes.kimi]
targets = ["openrouter-kimi-k2.5", "bedrock-kimi-k2.5"]
hedge = "off"

[serve]
evidence = false

[serve.models]
"moonshotai/kimi-k2.5" = "route:kimi"
"""

BODY = {
    "model": "moonshotai/kimi-k2.5",
    "stream": True,
    "messages": [{"role": "user", "content": "What is the weather in Tokyo?"}],
}


# -- load generator (runs in its own process: python bench/scale.py --load URL ...) --------


async def _load(url: str, concurrency: int, duration: float) -> dict[str, Any]:
    import httpx

    done = 0
    failed = 0
    errors: dict[str, int] = {}
    end = time.monotonic() + duration

    # no keep-alive: every stream opens its own connection, which SO_REUSEPORT spreads over
    # the workers (it balances connections, not requests); one client, so no per-stream setup
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    http = httpx.AsyncClient(base_url=url, timeout=30, limits=limits)

    async def one() -> None:
        nonlocal done, failed
        while time.monotonic() < end:
            try:
                async with http.stream("POST", "/v1/chat/completions", json=BODY) as r:
                    body = b"".join([c async for c in r.aiter_bytes()])
                if r.status_code == 200 and b"[DONE]" in body:
                    done += 1
                else:
                    failed += 1
                    errors[f"HTTP {r.status_code}"] = errors.get(f"HTTP {r.status_code}", 0) + 1
            except httpx.HTTPError as exc:
                failed += 1
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    took = time.monotonic() - t0
    await http.aclose()
    return {
        "streams": done,
        "failed": failed,
        "errors": errors,
        "seconds": took,
        "per_s": done / took,
    }


def _run_load(url: str, concurrency: int, duration: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--load", url, "--concurrency", str(concurrency),
         "--duration", str(duration)],
        capture_output=True, text=True, check=True, timeout=duration + 120,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- 1. workers -----------------------------------------------------------------------------


def bench_workers(config: Path, concurrency: int, duration: float) -> dict[int, dict[str, Any]]:
    results = {}
    for workers in (1, 2):
        proc = subprocess.Popen(
            [sys.executable, "-m", "callproof", "serve", "--config", str(config), "--port", "0",
             "--workers", str(workers)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            _run_load(url, 4, 0.5)  # warm up every worker's pools
            results[workers] = _run_load(url, concurrency, duration)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    return results


# -- 2. metrics and traces ------------------------------------------------------------------


def bench_telemetry(
    config: Path, concurrency: int, duration: float
) -> dict[str, dict[str, list[float]]]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from callproof.gateway.config import load_serve_config
    from callproof.gateway.server import GatewayServer
    from callproof.telemetry.tracing import Tracing

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    settings: dict[str, dict[str, Any]] = {
        "off": {"metrics": False, "tracing": None},
        "metrics": {"metrics": True, "tracing": None},
        "metrics+traces": {"metrics": True, "tracing": Tracing(provider)},
    }
    serve = load_serve_config(config)
    rates: dict[str, list[float]] = {k: [] for k in settings}
    cpu: dict[str, list[float]] = {k: [] for k in settings}
    for _ in range(3):
        for name, options in settings.items():
            with GatewayServer(serve, app_options={"scale_options": options}) as gw:
                _run_load(gw.url, 4, 0.3)
                # this process runs the gateway and its emulator (the load is elsewhere): its
                # CPU time per stream is steadier than streams/s on a shared machine
                before = time.process_time()
                result = _run_load(gw.url, concurrency, duration)
                used = time.process_time() - before
                rates[name].append(result["per_s"])
                cpu[name].append(used / max(1, result["streams"]) * 1000)
    provider.shutdown()
    return {"streams_per_s": rates, "cpu_ms_per_stream": cpu}


def _micro(kind: str) -> float:
    """Microseconds per call of Metrics.observe or Tracing.emit on a two-attempt call."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    from callproof.telemetry.metrics import Metrics
    from callproof.telemetry.summary import AttemptSummary, CallSummary
    from callproof.telemetry.tracing import Tracing

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    common: dict[str, Any] = {"hedge": False, "sent": True, "breaker": "closed", "model": "m"}
    attempt = AttemptSummary(
        number=1, target="a", provider="aws.bedrock", outcome="http_error", started_s=0.0,
        ended_s=0.1, first_event_s=None, abandoned_reason=None, error_type="HTTPStatusError",
        **common,
    )  # fmt: skip
    ok = AttemptSummary(
        number=2, target="b", provider="openrouter", outcome="ok", started_s=0.1, ended_s=0.3,
        first_event_s=0.05, abandoned_reason=None, error_type=None, **common,
    )  # fmt: skip
    call = CallSummary(
        operation="chat", request_model="m", response_model="m", provider="openrouter",
        route="kimi", started_at=time.time(), duration_s=0.3, time_to_first_chunk_s=0.15,
        input_tokens=10, output_tokens=20, outcome="ok", error_type=None, served_by="b",
        finish_reason="end_turn", attempts=(attempt, ok), front="chat-stream",
    )  # fmt: skip
    if kind == "metrics":
        step: Any = Metrics().observe
    else:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(Drop()))
        step = Tracing(provider).emit
    n = 3000
    t0 = time.process_time()
    for _ in range(n):
        step(call)
    return (time.process_time() - t0) / n * 1e6


# -- 3. shared breaker ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _breaker_run(redis_url: str | None) -> dict[str, Any]:
    from callproof.client import Client
    from callproof.emulator import EmulatorServer
    from callproof.resilience import BreakerPolicy, HedgePolicy, RoutePolicy, Router, WatchdogPolicy
    from callproof.scenarios import tool_result
    from callproof.state import InProcessState, RedisState, StateBackend
    from callproof.targets import Endpoint, Target, Timeouts

    policy = RoutePolicy(
        hedge=HedgePolicy(mode="off"),
        breaker=BreakerPolicy(failures=3, open_s=30.0),
        watchdog=WatchdogPolicy(mode="fixed"),
    )
    conv = tool_result().conversation
    timeouts = Timeouts(connect=2.0, first_event=0.6, idle=1.0, deadline=10.0)
    with EmulatorServer(preset="fast", seed=3) as emu:

        def target(name: str, fault: str | None = None) -> Target:
            headers = {"x-callproof-fault": fault} if fault else {}
            return Target(
                name=name, api="bedrock-converse-stream", model="amazon.nova-pro-v1:0",
                endpoint=Endpoint(emu.url, region="us-east-1", headers=headers), timeouts=timeouts,
            )  # fmt: skip

        async with Client() as client:
            routers, backends = [], []
            for _ in range(2):
                router = Router(
                    "kimi", [target("primary", "hang_no_events"), target("backup")],
                    client=client, policy=policy,
                )  # fmt: skip
                backend: StateBackend = (
                    RedisState(redis_url, namespace="callproof:bench")
                    if redis_url
                    else InProcessState()
                )
                backend.attach(router)
                await backend.start()
                routers.append(router)
                backends.append(backend)
            await asyncio.sleep(0.3)

            async def replica(k: int, router: Router) -> int:
                await asyncio.sleep(k * 1.0)
                sent = 0
                for _ in range(8):
                    resp = await router.complete(conv)
                    sent += sum(1 for a in resp.attempts if a["target"] == "primary" and a["sent"])
                    await asyncio.sleep(0.05)
                return sent

            sent = await asyncio.gather(*(replica(k, r) for k, r in enumerate(routers)))
            for backend in backends:
                await backend.aclose()
    opened = sorted(
        t["at"] for r in routers for t in r.breaker_transitions()
        if t["to"] == "open" and t["target"] == "primary"
    )  # fmt: skip
    return {
        "primary_requests": sum(sent),
        "per_replica": list(sent),
        "opened_on": len(opened),
        "spread_s": (opened[-1] - opened[0]) if len(opened) == 2 else None,
    }


def bench_breaker() -> dict[str, Any] | None:
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if binary is None:
        print("redis-server not found: skipping the shared-breaker measurement", file=sys.stderr)
        return None
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="callproof-bench-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        shared = asyncio.run(_breaker_run(f"redis://127.0.0.1:{port}/0"))
        alone = asyncio.run(_breaker_run(None))
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    return {"shared": shared, "unshared": alone}


# -- report ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(asyncio.run(_load(args.load, args.concurrency, args.duration))))
        return 0
    duration = 1.5 if args.quick else args.duration
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "callproof.toml"
        config.write_text(CONFIG, encoding="utf-8")
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        print(f"(shared machine, {os.cpu_count()} CPUs; ratios against a baseline of this run)")
        workers = bench_workers(config, args.concurrency, duration)
        one, two = workers[1], workers[2]
        print("\n1. streams/s, OpenAI chat streaming through callproof serve, "
              f"{args.concurrency} concurrent")  # fmt: skip
        for w, r in workers.items():
            ok = f"({r['streams']} ok, {r['failed']} failed {r['errors'] or ''})"
            print(f"   --workers {w}: {r['per_s']:8.1f} streams/s  {ok}")
        print(f"   2 workers / 1 worker: {two['per_s'] / one['per_s']:.2f}x")
        found = bench_telemetry(config, args.concurrency, duration)
        rates, cpu = found["streams_per_s"], found["cpu_ms_per_stream"]
        base, base_cpu = statistics.median(rates["off"]), statistics.median(cpu["off"])
        print("\n2. cost of metrics and traces (one process; median of 3 interleaved rounds)")
        for name, values in rates.items():
            med, med_cpu = statistics.median(values), statistics.median(cpu[name])
            print(
                f"   {name:15s} {med:8.1f} streams/s  {med / base:.3f}x of off;  "
                f"gateway CPU {med_cpu:6.2f} ms/stream  {med_cpu / base_cpu:.3f}x of off"
            )
        print(
            f"   per call: observe {_micro('metrics'):.1f} us, emit spans {_micro('traces'):.1f} us"
        )
    breaker = bench_breaker()
    if breaker is not None:
        s, u = breaker["shared"], breaker["unshared"]
        print("\n3. two replicas, the primary hangs (breaker.failures = 3; B starts 1 s after A)")
        shared = f"shared {s['primary_requests']} {s['per_replica']}"
        alone = f"unshared {u['primary_requests']} {u['per_replica']}"
        print(f"   requests to the hung primary: {shared}, {alone}")
        spread = s["spread_s"]
        within = f"{spread * 1000:.0f} ms of each other (shared)" if spread is not None else "n/a"
        print("   circuit open on both replicas within " + within)
    return 0


if __name__ == "__main__":
    sys.exit(main())
