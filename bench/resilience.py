"""Resilience benchmark: the seeds' hang, routed around, against boto3, the openai SDK and LiteLLM.

Run:  python3 -m uv run --group bench python bench/resilience.py        (about 7 minutes)
      python bench/resilience.py --quick                       (a smoke run, about 4 minutes)

(To keep LiteLLM out of the project's .venv: ``UV_PROJECT_ENVIRONMENT=/tmp/bench-venv python3 -m
uv sync --group bench`` and run the script with that interpreter. Without LiteLLM installed the
script skips it and runs the rest.) Exit code 1 when callproof misses a target below.

Every setting runs on the emulator (loopback only, in a child process so that its CPU does not
share a GIL with the clients). The request is the seeds' tool-result turn. Settings:

* ``healthy``: no faults; its p99 is the reference for the latency target.
* ``hang 10% / 40% / 70%``: Kimi K2.5 hangs (headers, then no events) on that share of the
  tool-result requests, on Bedrock ConverseStream and on the OpenAI-compatible Bedrock endpoint
  (which the openai SDK baseline calls); OpenRouter's Kimi is healthy.
* ``slow healthy``: a thinking model whose first event comes after 3-5 s, never hangs; any
  stall declared on it is a false stall.

Clients, each on the same emulator and faults:

* **callproof**: ``Router("kimi", [bedrock-kimi, openrouter-kimi])`` with the default
  :class:`~callproof.resilience.RoutePolicy` (adaptive watchdog, quantile hedging, breaker). One
  router per setting, starting cold. The slow setting routes to the slow model alone.
* **boto3** ``converse_stream`` with its defaults (60 s read timeout, standard retries).
* **openai SDK** ``chat.completions.create(stream=True)`` with its defaults (600 s timeout,
  2 retries) against the OpenAI-compatible Bedrock endpoint.
* **LiteLLM** (pinned in the ``bench`` dependency group) with its best options for this failure:
  a ``litellm.Router`` with ``stream_timeout``, ``num_retries`` and a fallback from Bedrock Kimi
  to OpenRouter Kimi. The same options serve every setting (a user cannot know in advance
  which provider will be slow).

Scaled down, and said so in the output: the baselines run ``--baseline-calls`` calls (default
200) where nothing hangs; under hangs boto3, the openai SDK and LiteLLM wait 60 s / 600 s /
600 s per hang, so they run ``--hang-baseline-calls`` calls (default 100) all at once, each
client on its own emulator, and the harness stops waiting for a call at ``--cap`` seconds
(default 60 = boto3's read timeout; the openai SDK would wait 600 s and then retry). A call
still waiting at the cap counts as failed with latency = cap.

Latency is per call, from the call to its complete answer or its final error, over all calls
(failures included): what an agent waits. Requests per call are counted by the emulator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KIMI_BEDROCK = "moonshotai.kimi-k2.5"
KIMI_OPENROUTER = "moonshotai/kimi-k2.5"
SLOW = "slow.thinker-v1"
FAKE_KEY_ID = "AKIDEXAMPLE"
FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

# -- the emulator in a child process ---------------------------------------------------------


def fault_plan(hang: float) -> str:
    """A fault plan (TOML) with Kimi hanging on ``hang`` of the tool-result turns."""
    rules = ""
    if hang > 0:
        for api in ("bedrock", "openai"):
            rules += f"""
[[rules]]
model = "{KIMI_BEDROCK}"
api = "{api}"
turn = "after_tool_result"
fault = "hang_no_events"
probability = {hang}
"""
    return f"""seed = 20261121
{rules}
# Kimi on Bedrock's OpenAI-compatible endpoint (what the openai SDK baseline calls)
[[models]]
id = "{KIMI_BEDROCK}"
flavour = "openai"
thinking = true
first_event_s = 0.25
jitter = 0.15

[[models]]
id = "{SLOW}"
flavour = "bedrock"
thinking = true
first_event_s = 4.0
jitter = 1.0

[[models]]
id = "{SLOW}"
flavour = "openai"
thinking = true
first_event_s = 4.0
jitter = 1.0
"""


def serve(plan_path: str) -> None:
    """Child process: the emulator plus a request counter at ``GET /__bench/counts``."""
    from callproof.emulator import EmulatorServer, create_app

    inner = create_app(preset="seed", faults=plan_path)
    counts: dict[str, int] = {}
    lock = threading.Lock()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/__bench/counts":
                with lock:
                    body = json.dumps(counts).encode()
                    if scope["method"] == "DELETE":
                        counts.clear()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
            with lock:
                counts["requests"] = counts.get("requests", 0) + 1
        await inner(scope, receive, send)

    with EmulatorServer(app=app) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


class Emulator:
    """A child-process emulator for one fault plan."""

    def __init__(self, hang: float, workdir: Path) -> None:
        plan = workdir / f"plan-{hang:.2f}.toml"
        plan.write_text(fault_plan(hang), encoding="utf-8")
        tomllib.loads(plan.read_text(encoding="utf-8"))
        self.log = (workdir / f"emulator-{hang:.2f}-{id(self)}.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(plan)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1"):
            raise RuntimeError(f"emulator did not start: {self.url!r}")

    def requests(self, *, reset: bool = False) -> int:
        import httpx

        method = "DELETE" if reset else "GET"
        r = httpx.request(method, self.url + "/__bench/counts", timeout=10)
        return int(r.json().get("requests", 0))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# -- measurements ----------------------------------------------------------------------------


@dataclass
class Result:
    client: str
    setting: str
    calls: int = 0
    ok: int = 0
    latencies: list[float] = field(default_factory=list)
    requests: int = 0
    false_stalls: int | None = None
    notes: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, max(0, round(q * len(xs) + 0.5) - 1))]

    @property
    def success(self) -> float:
        return self.ok / self.calls if self.calls else float("nan")


def seed_body(api: str, model: str) -> dict[str, Any]:
    """The seed's tool-result request exactly as callproof sends it on ``api``: every baseline
    sends the same bytes' worth of request as callproof."""
    from callproof.dialects import wire_body
    from callproof.scenarios import tool_result

    return wire_body(api, model, tool_result().conversation)


async def run_async_calls(
    n: int, concurrency: int, one: Callable[[], Awaitable[bool]], cap: float, res: Result
) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def call() -> None:
        async with sem:
            t0 = time.perf_counter()
            ok = False
            try:
                async with asyncio.timeout(cap):
                    ok = await one()
            except TimeoutError:
                res.errors["still waiting at the cap"] = (
                    res.errors.get("still waiting at the cap", 0) + 1
                )
            except Exception as exc:
                key = f"{type(exc).__name__}: {str(exc)[:120]}"
                res.errors[key] = res.errors.get(key, 0) + 1
            res.latencies.append(time.perf_counter() - t0)
            res.calls += 1
            res.ok += ok

    await asyncio.gather(*(call() for _ in range(n)))


# -- callproof ---------------------------------------------------------------------------------


async def bench_callproof(
    url: str, setting: str, n: int, concurrency: int, cap: float
) -> tuple[Result, dict[str, Any]]:
    from callproof.client import Client
    from callproof.errors import AllAttemptsFailed
    from callproof.resilience import Router
    from callproof.scenarios import tool_result
    from callproof.targets import Endpoint, Target

    res = Result("callproof", setting)
    conv = tool_result().conversation
    bedrock = Endpoint(url, region="us-east-1")
    kimi = Target("bedrock-kimi-k2.5", "bedrock-converse-stream", KIMI_BEDROCK, bedrock)
    orr = Target(
        "openrouter-kimi-k2.5", "openai-completions", KIMI_OPENROUTER, Endpoint(url + "/v1")
    )
    slow = Target("bedrock-slow-thinker", "bedrock-converse-stream", SLOW, bedrock)
    targets = [slow] if setting == "slow healthy" else [kimi, orr]
    stalls = 0
    async with Client() as client:
        router = Router("kimi", targets, client=client)

        async def one() -> bool:
            nonlocal stalls
            try:
                resp = await router.complete(conv)
            except AllAttemptsFailed as group:
                stalls += sum(1 for a in group.attempts if str(a["outcome"]).startswith("stall"))  # type: ignore[attr-defined]
                raise
            stalls += sum(
                1
                for a in resp.attempts
                if str(a["outcome"]).startswith("stall") or a.get("suspected_stall")
            )
            if "22" not in resp.text:
                key = f"answer without 22: {resp.text[:60]!r} {resp.stop_reason}"
                res.errors[key] = res.errors.get(key, 0) + 1
                return False
            return True

        await run_async_calls(n, concurrency, one, cap, res)
        info = {
            "breakers": router.breaker_transitions(),
            "states": router.breaker_states(),
        }
    if setting == "slow healthy":
        res.false_stalls = stalls
    return res, info


# -- boto3 -------------------------------------------------------------------------------------


def bench_boto3(url: str, setting: str, n: int, concurrency: int, cap: float) -> Result:
    import boto3

    res = Result("boto3 (defaults)", setting)
    model = SLOW if setting == "slow healthy" else KIMI_BEDROCK
    local = threading.local()
    lock = threading.Lock()
    body = seed_body("bedrock-converse-stream", model)

    def client() -> Any:
        if not hasattr(local, "client"):
            local.client = boto3.client(
                "bedrock-runtime",
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id=FAKE_KEY_ID,
                aws_secret_access_key=FAKE_SECRET,
            )
        return local.client

    def one() -> None:
        t0 = time.perf_counter()
        ok = False
        try:
            out = client().converse_stream(modelId=model, **body)
            text, stopped = "", False
            for event in out["stream"]:
                if "contentBlockDelta" in event:
                    text += event["contentBlockDelta"]["delta"].get("text", "")
                if "messageStop" in event:
                    stopped = True
            ok = stopped and "22" in text
        except Exception:
            ok = False
        with lock:
            res.latencies.append(min(time.perf_counter() - t0, cap))
            res.calls += 1
            res.ok += ok

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda _: one(), range(n)))
    return res


# -- the openai SDK ----------------------------------------------------------------------------


async def bench_openai(url: str, setting: str, n: int, concurrency: int, cap: float) -> Result:
    import openai

    res = Result("openai SDK (defaults)", setting)
    model = SLOW if setting == "slow healthy" else KIMI_BEDROCK
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="test-key")
    body = seed_body("openai-completions", model)

    async def one() -> bool:
        stream = await client.chat.completions.create(**body)
        text, finished = "", False
        try:
            async for chunk in stream:
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    finished = finished or choice.finish_reason is not None
        finally:
            await stream.close()
        return finished and "22" in text

    await run_async_calls(n, concurrency, one, cap, res)
    await client.close()
    return res


# -- LiteLLM -----------------------------------------------------------------------------------

LITELLM_STREAM_TIMEOUT = 2.0


async def bench_litellm(url: str, setting: str, n: int, concurrency: int, cap: float) -> Result:
    # Loopback only: LiteLLM would fetch its cost map and a tiktoken file from the internet.
    import importlib.util
    import warnings

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    spec = importlib.util.find_spec("litellm")
    assert spec is not None
    assert spec.submodule_search_locations
    os.environ["TIKTOKEN_CACHE_DIR"] = os.path.join(
        next(iter(spec.submodule_search_locations)), "litellm_core_utils", "tokenizers"
    )
    warnings.filterwarnings("ignore", module="pydantic")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    res = Result(f"LiteLLM {litellm_version()} (best options)", setting)
    bedrock_model = SLOW if setting == "slow healthy" else KIMI_BEDROCK
    chat = seed_body("openai-completions", bedrock_model)  # LiteLLM takes OpenAI messages
    model_list: list[dict[str, Any]] = [
        {
            "model_name": "kimi-bedrock",
            "litellm_params": {
                "model": f"bedrock/converse/{bedrock_model}",
                "aws_bedrock_runtime_endpoint": url,
                "aws_region_name": "us-east-1",
                "aws_access_key_id": FAKE_KEY_ID,
                "aws_secret_access_key": FAKE_SECRET,
                "stream_timeout": LITELLM_STREAM_TIMEOUT,
                # LiteLLM does not know this model id takes tools; say so rather than drop them
                "allowed_openai_params": ["tools"],
            },
        }
    ]
    fallbacks: list[dict[str, list[str]]] = []
    if setting != "slow healthy":
        model_list.append(
            {
                "model_name": "kimi-openrouter",
                "litellm_params": {
                    "model": f"openai/{KIMI_OPENROUTER}",
                    "api_base": url + "/v1",
                    "api_key": "test-key",
                    "stream_timeout": LITELLM_STREAM_TIMEOUT,
                },
            }
        )
        fallbacks = [{"kimi-bedrock": ["kimi-openrouter"]}]
    router = litellm.Router(
        model_list=model_list,
        fallbacks=fallbacks,
        num_retries=2,
        retry_after=0,
        timeout=30,
    )

    async def one() -> bool:
        stream = await router.acompletion(
            model="kimi-bedrock",
            messages=chat["messages"],
            tools=chat["tools"],
            max_tokens=100,
            stream=True,
        )
        text, finished = "", False
        async for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finished = finished or choice.finish_reason is not None
        return finished and "22" in text

    await run_async_calls(n, concurrency, one, cap, res)
    return res


def litellm_version() -> str:
    from importlib.metadata import version

    return version("litellm")


# -- the table ---------------------------------------------------------------------------------


def table(results: list[Result], healthy_p99: dict[str, float]) -> str:
    lines = [
        "| setting | client | calls | success | p50 s | p95 s | p99 s | p99 / healthy p99 "
        "| requests/call | false stalls |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ref = healthy_p99.get(r.client) if r.setting != "slow healthy" else None
        ratio = f"{r.pct(0.99) / ref:.2f}" if ref else "-"
        lines.append(
            f"| {r.setting} | {r.client} | {r.calls} | {r.success:.1%} | {r.pct(0.5):.2f} "
            f"| {r.pct(0.95):.2f} | {r.pct(0.99):.2f} | {ratio} "
            f"| {r.requests / max(r.calls, 1):.2f} "
            f"| {'-' if r.false_stalls is None else r.false_stalls} |"
        )
    return "\n".join(lines)


SETTINGS: dict[str, float] = {
    "healthy": 0.0,
    "hang 10%": 0.10,
    "hang 40%": 0.40,
    "hang 70%": 0.70,
    "slow healthy": 0.0,
}


async def run_client(
    name: str, emu: Emulator, setting: str, n: int, concurrency: int, cap: float
) -> tuple[Result, dict[str, Any] | None]:
    """One client's calls on one emulator; requests counted by that emulator."""
    emu.requests(reset=True)
    t0 = time.perf_counter()
    info = None
    if name == "callproof":
        res, info = await bench_callproof(emu.url, setting, n, concurrency, cap)
    elif name == "boto3":
        res = await asyncio.to_thread(bench_boto3, emu.url, setting, n, concurrency, cap)
    elif name == "openai":
        res = await bench_openai(emu.url, setting, n, concurrency, cap)
    else:
        res = await bench_litellm(emu.url, setting, n, concurrency, cap)
    res.wall_s = time.perf_counter() - t0
    res.requests = await asyncio.to_thread(emu.requests)
    print(
        f"{setting:13} {res.client:32} n={res.calls:5} ok={res.success:7.2%} "
        f"p99={res.pct(0.99):6.2f}s req/call={res.requests / max(res.calls, 1):.2f} "
        f"({res.wall_s:.0f} s)",
        file=sys.stderr,
        flush=True,
    )
    for err, count in sorted(res.errors.items(), key=lambda kv: -kv[1])[:4]:
        print(f"    {count} x {err}", file=sys.stderr)
    return res, info


async def main_async(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    results: list[Result] = []
    clients = args.clients.split(",")
    if "litellm" in clients:
        try:
            litellm_version()
        except Exception:
            print("LiteLLM is not installed (uv run --group bench); skipping it", file=sys.stderr)
            clients.remove("litellm")
    baselines = [c for c in clients if c != "callproof"]
    cp_info: dict[str, Any] = {}
    t_start = time.perf_counter()
    settings = args.settings.split(",")
    # 1. callproof on every setting (alone on the machine), and the baselines where nothing
    #    hangs, one client at a time.
    for setting in settings:
        hang = SETTINGS[setting]
        slow = setting == "slow healthy"
        emu = Emulator(hang, workdir)
        try:
            if "callproof" in clients:
                n = args.slow_calls if slow else args.calls
                conc = args.slow_concurrency if slow else args.concurrency
                res, info = await run_client("callproof", emu, setting, n, conc, args.cap)
                cp_info[setting] = info
                results.append(res)
            if hang == 0:
                for name in baselines:
                    conc = args.slow_concurrency if slow else args.concurrency
                    res, _ = await run_client(
                        name, emu, setting, args.baseline_calls, conc, args.cap
                    )
                    if args.baseline_calls < (args.slow_calls if slow else args.calls):
                        res.notes.append(f"scaled down to {args.baseline_calls} calls")
                    results.append(res)
        finally:
            emu.close()
    # 2. the baselines under hangs: each waits out its read timeout (or the cap) per hang, so
    #    fewer calls, all at once, the three clients side by side on their own emulators.
    for setting in settings:
        hang = SETTINGS[setting]
        if hang == 0 or not baselines:
            continue
        emus = [Emulator(hang, workdir) for _ in baselines]
        try:
            done = await asyncio.gather(
                *(
                    run_client(
                        name,
                        emu,
                        setting,
                        args.hang_baseline_calls,
                        args.hang_baseline_calls,
                        args.cap,
                    )
                    for name, emu in zip(baselines, emus, strict=True)
                )
            )
        finally:
            for emu in emus:
                emu.close()
        for res, _ in done:
            res.notes.append(
                f"scaled down to {res.calls} calls run at once; each call's wait capped at "
                f"{args.cap:g} s (counted as failed at the cap)"
            )
            results.append(res)
    order = {name: i for i, name in enumerate(settings)}
    results.sort(key=lambda r: (order[r.setting], r.client != "callproof", r.client))
    healthy = {r.client: r.pct(0.99) for r in results if r.setting == "healthy"}
    print()
    print(table(results, healthy))
    print()
    for r in results:
        for note in r.notes:
            print(f"* {r.setting}, {r.client}: {note}")
    print(f"* total wall time {time.perf_counter() - t_start:.0f} s")
    verdict = 0
    cp = next((r for r in results if r.client == "callproof" and r.setting == "hang 40%"), None)
    if cp is not None and "callproof" in healthy:
        ratio = cp.pct(0.99) / healthy["callproof"]
        per_call = cp.requests / max(cp.calls, 1)
        checks = [
            (cp.success >= 0.999, f"success {cp.success:.2%} >= 99.9%"),
            (ratio <= 1.5, f"p99 {ratio:.2f}x healthy <= 1.5x"),
            (per_call <= 1.5, f"{per_call:.2f} requests/call <= 1.5"),
        ]
        print(
            "* callproof targets at 40% hangs: "
            + "; ".join(f"{'PASS' if ok else 'FAIL'} {text}" for ok, text in checks)
        )
        verdict = 0 if all(ok for ok, _ in checks) else 1
    slow_cp = next(
        (r for r in results if r.client == "callproof" and r.setting == "slow healthy"), None
    )
    if slow_cp is not None:
        print(f"* callproof false stalls on the slow healthy model: {slow_cp.false_stalls}")
        if slow_cp.false_stalls:
            verdict = 1
    if args.json:
        await asyncio.to_thread(
            Path(args.json).write_text,
            json.dumps(
                {
                    "results": [
                        {
                            "setting": r.setting,
                            "client": r.client,
                            "calls": r.calls,
                            "success": r.success,
                            "p50_s": r.pct(0.5),
                            "p95_s": r.pct(0.95),
                            "p99_s": r.pct(0.99),
                            "requests_per_call": r.requests / max(r.calls, 1),
                            "false_stalls": r.false_stalls,
                            "notes": r.notes,
                            "errors": r.errors,
                            "wall_s": r.wall_s,
                        }
                        for r in results
                    ],
                    "callproof_breakers": cp_info,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    return verdict


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--calls", type=int, default=1000, help="callproof calls per setting")
    p.add_argument("--slow-calls", type=int, default=1000, help="callproof calls, slow model")
    p.add_argument("--baseline-calls", type=int, default=200, help="baseline calls, no hangs")
    p.add_argument("--hang-baseline-calls", type=int, default=100, help="baseline calls, hangs")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--slow-concurrency", type=int, default=100)
    p.add_argument("--cap", type=float, default=60.0, help="harness wait cap per call (s)")
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--clients", default="callproof,litellm,boto3,openai")
    p.add_argument("--workdir", default="/tmp/callproof-bench-resilience")
    p.add_argument("--json", help="also write the figures as JSON here")
    p.add_argument("--quick", action="store_true", help="smoke run: fewer calls, cap 10 s")
    args = p.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.calls, args.slow_calls, args.cap = 200, 100, 10.0
        args.baseline_calls, args.hang_baseline_calls = 50, 20
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
