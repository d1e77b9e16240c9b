"""Gateway benchmark: the founding case end to end, the gateway's overhead, and streams/s.

Run:  python bench/gateway.py            (the full run: about 6 minutes on a quiet machine)
      python bench/gateway.py --quick    (a smoke run, about a minute; figures not for the README)

Everything runs on loopback. The emulator and the gateway (``callproof serve``) are child
processes, so neither shares a GIL with the clients. Figures are ratios against a baseline
measured in the same run (the machine may be shared).

1. **Founding case.** An unmodified boto3 tool-use loop (question -> tool_use -> tool result ->
   answer) against ``callproof serve`` with the seed preset behind it (Kimi K2.5 on Bedrock
   hangs on 40% of tool-result turns; route ``kimi`` = [Bedrock Kimi, OpenRouter Kimi]),
   ``--calls`` tool-result calls (default 1,000). Targets: success >= 99.9%, p99 latency of the
   tool-result call <= 1.5x the healthy p99 (the same loop, straight to a healthy emulator),
   <= 1.5 upstream requests per call (from the gateway's evidence records). The route hedges at
   the 0.6 quantile of the healthy first-event latency (``--policy``; ``--policy ''`` runs the
   embedded default's route as it is, which hedges at 0.9). Beside it, the same
   loop pointed at the bare seed emulator (the README's "60% against 100%"); boto3 would wait
   its 60 s read timeout on each hang, so that baseline uses ``--bare-timeout`` (default 5 s)
   and counts a hang as a failure.
2. **Overhead.** Streamed chat completions on the fast preset (no model latency), straight to
   the emulator and through the gateway, at 1 and 64 concurrent streams: the added first-event
   latency (p50, p99) and the added total. Target: added p99 first-event latency <= 5 ms at 64.
3. **Streams/s** at 1, 64 and 512 concurrent streams through the gateway (fast preset).
   Side by side: the LiteLLM proxy (``--litellm PATH`` to a ``litellm`` command of
   ``litellm[proxy]==1.80.17``; TODO: the pinned ``bench`` group carries plain ``litellm``, the
   proxy extra is not locked yet) with an equivalent fallback, on the same emulator's OpenAI
   front; the gateway's route for these runs puts that front first too.

4.-6. **Load from outside** (``--parts load``; bench/gateway_load.py). The load generator is
   h2load (Debian's nghttp2-client, C, its own process), over HTTP/1.1 (``--h1``, one
   connection per stream) and h2c with prior knowledge (min(N, 8) connections), POSTing the
   founding case's tool-result ConverseStream body; CPU comes from /proc/<pid>/stat of the
   gateway process (and of its workers under ``--workers N``) and of the emulator.
   4. streams/s and CPU per stream at 1, 64 and 512 concurrent streams, the fast preset called
      directly (the baseline) and through the gateway, in the same run.
   5. The first content event (the probe: a raw-asyncio HTTP/1.1 client in its own process,
      timing the first non-empty delta; h2load's "time to 1st byte" is per connection and a
      first byte is not a first event, see bench/gateway_load.py): the fast preset at 1 and 64
      streams, the healthy preset (first event 0.25 +- 0.15 s) at 8 and 64 held streams, direct
      and through a gateway whose route neither hedges nor breaks (its own cost only). Target
      (issue 8): added p99 first event <= 5 ms at 64 streams.
   6. The founding case by h2load: the tool-result call at ``--concurrency`` through the
      gateway over the seed emulator, against the healthy emulator called directly; p99 from
      h2load's per-request log, success (an answer with the tool's value) and upstream
      requests per call from the gateway's evidence. Same targets as 1.

Exit code 1 when a founding-case target is missed (1 or 6; never under --quick, a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config as BotoConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway_load as gl

ROOT = Path(__file__).resolve().parent.parent

GATEWAY_TOML = """\
[defaults]
timeouts = {{ connect = 2.0, first_event = {first_event}, idle = {idle}, deadline = 60.0 }}

[providers.bedrock]
api = "bedrock-converse-stream"
endpoint = "{url}"
region = "us-east-1"

[providers.openrouter]
api = "openai-completions"
endpoint = "{url}/v1"

[targets."bedrock-kimi-k2.5"]
provider = "bedrock"
model = "moonshotai.kimi-k2.5"

[targets."openrouter-kimi-k2.5"]
provider = "openrouter"
model = "moonshotai/kimi-k2.5"

[routes.kimi]
targets = ["bedrock-kimi-k2.5", "openrouter-kimi-k2.5"]
{policy}

[routes.kimi-openai]
targets = ["openrouter-kimi-k2.5", "bedrock-kimi-k2.5"]
{policy}

[serve]
evidence = "{evidence}"

[serve.models]
"moonshotai.kimi-k2.5" = "route:kimi"
"moonshotai/kimi-k2.5" = "route:kimi"
"""

#: The founding case's route policy: hedge at the 0.6 quantile of the healthy first-event
#: latency (the default, 0.9, starts the backup too late for the p99 target at 40% hangs).
FOUNDING_POLICY = "hedge = { quantile = 0.6 }"

#: The throughput runs' route: the emulator's OpenAI front first (as the LiteLLM proxy is
#: configured), Bedrock as the fallback.
OPENAI_ROUTE = "kimi-openai"

#: The throughput runs' route policy (see main).
THROUGHPUT_POLICY = """hedge = "off"
watchdog = { mode = "fixed" }
breaker = { enabled = false }"""

TOOLS = [
    {
        "toolSpec": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "inputSchema": {
                "json": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                }
            },
        }
    }
]


# -- child processes ------------------------------------------------------------------------


class Child:
    """A ``callproof`` command in a child process that prints its URL first."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callproof", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            self.stop()
            raise RuntimeError(f"callproof {' '.join(args)} did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def emulator(preset: str) -> Child:
    return Child(
        "emulate", "--preset", preset, "--port", "0", "--seed", "7", "--max-streams", "100000"
    )


def gateway(
    emulator_url: str,
    workdir: Path,
    name: str,
    *,
    policy: str = "",
    first_event: float = 1.5,
    idle: float = 1.0,
    workers: int = 1,
) -> tuple[Child, Path]:
    """``callproof serve`` over the emulator at ``emulator_url``: the embedded default's
    targets and route (its clocks: first event 1.5 s, idle 1 s), ``policy`` lines added to the
    route; ``workers`` > 1 runs ``--workers`` (evidence in ``worker-K`` subdirectories)."""
    evidence = workdir / f"evidence-{name}"
    config = workdir / f"gateway-{name}.toml"
    text = GATEWAY_TOML.format(
        url=emulator_url,
        evidence=evidence.as_posix(),
        policy=policy,
        first_event=first_event,
        idle=idle,
    )
    config.write_text(text, encoding="utf-8")
    extra = ("--workers", str(workers)) if workers > 1 else ()
    return Child("serve", "--config", str(config), "--port", "0", *extra), evidence


# -- 1. the founding case -------------------------------------------------------------------


@dataclass
class LoopResult:
    label: str
    ok: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def calls(self) -> int:
        return self.ok + self.failed

    def p(self, q: float) -> float:
        values = sorted(self.latencies)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q * len(values)))]


def _client(url: str, read_timeout: float) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDBENCH",
        aws_secret_access_key="bench-secret",
        config=BotoConfig(
            read_timeout=read_timeout, retries={"mode": "standard"}, max_pool_connections=64
        ),
    )


def _collect(stream: Any) -> tuple[str, str | None, dict[str, Any] | None]:
    text, stop, tool = "", None, None
    for event in stream:
        if "contentBlockStart" in event:
            tool = {**event["contentBlockStart"]["start"]["toolUse"], "input": ""}
        elif "contentBlockDelta" in event:
            delta = event["contentBlockDelta"]["delta"]
            text += delta.get("text", "")
            if "toolUse" in delta and tool is not None:
                tool["input"] += delta["toolUse"]["input"]
        elif "messageStop" in event:
            stop = event["messageStop"]["stopReason"]
    return text, stop, tool


def one_loop(client: Any) -> tuple[bool, float, str]:
    """An agent's loop: the question, the tool call, its result, the answer. Returns (passed,
    latency of the tool-result call, why it failed)."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"text": "Weather for Tokyo?"}]}]
    try:
        first = client.converse_stream(
            modelId="moonshotai.kimi-k2.5", messages=messages, toolConfig={"tools": TOOLS}
        )
        _, stop, tool = _collect(first["stream"])
        if stop != "tool_use" or tool is None:
            return False, 0.0, f"first turn stop {stop}"
        arguments = json.loads(tool["input"]) if tool["input"] else {}
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {
                        "toolUse": {
                            "toolUseId": tool["toolUseId"],
                            "name": tool["name"],
                            "input": arguments,
                        }
                    }
                ],
            }
        )
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": tool["toolUseId"],
                            "content": [{"json": {"temp": 22}}],
                        }
                    }
                ],
            }
        )
        t0 = time.perf_counter()
        second = client.converse_stream(
            modelId="moonshotai.kimi-k2.5", messages=messages, toolConfig={"tools": TOOLS}
        )
        text, stop, _ = _collect(second["stream"])
        latency = time.perf_counter() - t0
    except Exception as exc:
        return False, 0.0, type(exc).__name__
    if stop != "end_turn" or "22" not in text:
        return False, latency, f"answer stop {stop}"
    return True, latency, ""


def run_loops(label: str, url: str, n: int, concurrency: int, read_timeout: float) -> LoopResult:
    result = LoopResult(label)
    client = _client(url, read_timeout)
    with ThreadPoolExecutor(concurrency) as pool:
        for passed, latency, why in pool.map(lambda _: one_loop(client), range(n)):
            if passed:
                result.ok += 1
                result.latencies.append(latency)
            else:
                result.failed += 1
                result.errors[why] = result.errors.get(why, 0) + 1
                if latency:
                    result.latencies.append(latency)
    return result


def evidence_records(evidence: Path) -> list[dict[str, Any]]:
    """Every call record of a gateway's evidence (every worker's under ``--workers``)."""
    records = []
    for path in sorted(evidence.rglob("results.jsonl")):
        records += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return records


def upstream_requests(evidence: Path) -> tuple[int, int]:
    """(tool-result calls, upstream requests they sent) from the gateway's evidence."""
    calls = requests = 0
    for record in evidence_records(evidence):
        if record.get("tool_calls"):
            continue  # the question turn (answered with a tool call)
        calls += 1
        requests += int(record.get("requests") or 0)
    return calls, requests


# -- 2./3. overhead and streams/s -----------------------------------------------------------

CHAT = {
    "model": "moonshotai/kimi-k2.5",
    "messages": [{"role": "user", "content": "Weather for Tokyo?"}],
    "stream": True,
}


async def _stream_once(
    http: httpx.AsyncClient, url: str, model: str = "moonshotai/kimi-k2.5"
) -> tuple[float, float] | None:
    """(first content event, total) seconds of one complete streamed chat completion; None
    when it failed."""
    t0 = time.perf_counter()
    first = None
    try:
        body = {**CHAT, "model": model}
        async with http.stream("POST", url + "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                return None
            async for line in response.aiter_lines():
                if first is None and line.startswith("data: {"):
                    first = time.perf_counter() - t0
                if line == "data: [DONE]":
                    return first or float("nan"), time.perf_counter() - t0
    except httpx.HTTPError:
        return None
    return None


async def streams(
    url: str, concurrency: int, total: int, model: str = "moonshotai/kimi-k2.5"
) -> tuple[list[float], list[float], float, int]:
    """Run ``total`` streams, ``concurrency`` at a time: first-event and total latencies of
    the complete ones, the wall time and the number that failed."""
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency)
    firsts: list[float] = []
    totals: list[float] = []
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        for _ in range(min(concurrency, 16)):  # warm the connections and the gateway
            await _stream_once(http, url, model)
        queue = iter(range(total))
        failed = 0
        t0 = time.perf_counter()

        async def worker() -> None:
            nonlocal failed
            for _ in queue:
                got = await _stream_once(http, url, model)
                if got is None:
                    failed += 1
                    continue
                firsts.append(got[0])
                totals.append(got[1])

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return firsts, totals, wall, failed


def _q(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


# -- the LiteLLM proxy ----------------------------------------------------------------------

LITELLM_YAML = """\
model_list:
  - model_name: kimi
    litellm_params:
      model: openai/moonshotai/kimi-k2.5
      api_base: {url}/v1
      api_key: unused
      stream_timeout: 30
  - model_name: kimi-fallback
    litellm_params:
      model: openai/moonshotai/kimi-k2.5
      api_base: {url}/v1
      api_key: unused
      stream_timeout: 30
router_settings:
  num_retries: 1
  fallbacks: [{{"kimi": ["kimi-fallback"]}}]
litellm_settings:
  telemetry: false
"""


class Proxy:
    """The LiteLLM proxy (``litellm --config``) on a free port."""

    def __init__(self, binary: str, emulator_url: str, workdir: Path) -> None:
        import socket

        config = workdir / "litellm.yaml"
        config.write_text(LITELLM_YAML.format(url=emulator_url), encoding="utf-8")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        self.proc = subprocess.Popen(
            [binary, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the LiteLLM proxy exited at start")
            try:
                if httpx.get(self.url + "/health/liveliness", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("the LiteLLM proxy did not start within 120 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def litellm_proxy(binary: str | None, emulator_url: str, workdir: Path) -> Proxy | None:
    """The proxy when a ``litellm`` command with the proxy extra is given or in .venv-bench."""
    candidates = [binary] if binary else [str(ROOT / ".venv-bench" / "bin" / "litellm")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            try:
                return Proxy(candidate, emulator_url, workdir)
            except RuntimeError as exc:
                print(f"LiteLLM proxy: {exc}")
    return None


# -- 4./5./6. load from outside (h2load, the probe) ------------------------------------------

CONVERSE_STREAM = "/model/moonshotai.kimi-k2.5/converse-stream"


def tool_result_body(workdir: Path) -> Path:
    """The founding case's tool-result ConverseStream request (what one_loop sends second)."""
    tool = {"toolUseId": "tooluse_bench01", "name": "get_weather", "input": {"city": "Tokyo"}}
    body = {
        "messages": [
            {"role": "user", "content": [{"text": "Weather for Tokyo?"}]},
            {"role": "assistant", "content": [{"toolUse": tool}]},
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": tool["toolUseId"],
                            "content": [{"json": {"temp": 22}}],
                        }
                    }
                ],
            },
        ],
        "toolConfig": {"tools": TOOLS},
    }
    path = workdir / "tool-result.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def _ms(seconds: float) -> float:
    return seconds * 1e3


def throughput(fast: Child, fast_gw: Child, body: Path, streams: int) -> None:
    """4. streams/s and CPU per stream, h2load over HTTP/1.1 and h2c, direct and through."""
    print(
        "\n4. load from outside: h2load (own process), Bedrock ConverseStream tool-result turn, "
        "fast preset"
    )
    print(f"   load average before: {gl.load_average()}")
    print(
        f"{'proto':>5} {'level':>5} {'direct/s':>9} {'gateway/s':>9} {'gw/dir':>6} "
        f"{'emu ms/str':>10} {'gw ms/str':>9} {'emu behind':>10} {'gw/emu':>6} "
        f"{'p99 dir ms':>10} {'p99 gw ms':>9} {'err':>4}"
    )
    for proto in ("h1", "h2c"):
        for level in (1, 64, 512):
            n = streams // 4 if level == 1 else streams
            runs = []
            for url in (fast.url, fast_gw.url):
                gl.run_h2load(  # warm the connections (and the gateway's upstream pool)
                    url + CONVERSE_STREAM, body, proto=proto, concurrency=level, requests=level
                )
                gw0, emu0 = gl.cpu_seconds(fast_gw.proc.pid), gl.cpu_seconds(fast.proc.pid)
                got = gl.run_h2load(
                    url + CONVERSE_STREAM, body, proto=proto, concurrency=level, requests=n
                )
                gw_cpu = gl.cpu_seconds(fast_gw.proc.pid) - gw0
                emu_cpu = gl.cpu_seconds(fast.proc.pid) - emu0
                runs.append((got, gw_cpu, emu_cpu))
            (d, _, d_emu), (g, g_cpu, g_emu) = runs
            if d is None or g is None:
                print(f"{proto:>5} {level:>5}  h2load failed")
                continue
            print(
                f"{proto:>5} {level:>5} {d.per_s:>9.0f} {g.per_s:>9.0f} {g.per_s / d.per_s:>6.2f} "
                f"{_ms(d_emu / max(d.ok, 1)):>10.2f} {_ms(g_cpu / max(g.ok, 1)):>9.2f} "
                f"{_ms(g_emu / max(g.ok, 1)):>10.2f} {g_cpu / max(g_emu, 1e-9):>6.2f} "
                f"{_ms(gl.quantile(d.times, 0.99)):>10.1f} {_ms(gl.quantile(g.times, 0.99)):>9.1f} "
                f"{d.errors + g.errors:>4}"
            )
    print(f"   load average after: {gl.load_average()}")
    print(
        "   emu ms/str: the emulator's CPU per stream called directly; gw ms/str: the gateway "
        "process's\n   (and workers'); emu behind: the emulator's CPU per stream behind the "
        "gateway; gw/emu: gateway CPU\n   over the emulator's for the same streams. h1 rows "
        "count completed responses (h2load records\n   no status for hypercorn's empty reason "
        "phrase); the gateway's evidence is checked below."
    )


def first_event(pairs: list[tuple[str, Child, Child, int, int]], body: Path) -> float | None:
    """5. the first content event through the gateway against straight to the emulator,
    measured by the probe (bench/gateway_load.py) in its own process. Returns the added p99 at
    64 held streams."""
    print("\n5. first event (probe: own process, HTTP/1.1, first non-empty content delta)")
    print(
        f"{'case':34} {'streams':>7} {'direct p50/p99 ms':>18} {'gateway p50/p99 ms':>19} "
        f"{'added p50/p99 ms':>17} {'added total p50':>15} {'failed':>6}"
    )
    added_held = None
    for label, direct, through, level, n in pairs:
        d = gl.probe(direct.url + CONVERSE_STREAM, body, level, n, "22")
        g = gl.probe(through.url + CONVERSE_STREAM, body, level, n, "22")
        d50, d99 = _ms(gl.quantile(d.firsts, 0.5)), _ms(gl.quantile(d.firsts, 0.99))
        g50, g99 = _ms(gl.quantile(g.firsts, 0.5)), _ms(gl.quantile(g.firsts, 0.99))
        total = _ms(gl.quantile(g.totals, 0.5) - gl.quantile(d.totals, 0.5))
        failed = sum(d.failed.values()) + sum(g.failed.values())
        print(
            f"{label:34} {len(g.firsts):>7} {d50:>8.1f}/{d99:<9.1f} {g50:>8.1f}/{g99:<10.1f} "
            f"{g50 - d50:>7.1f}/{g99 - d99:<9.1f} {total:>15.1f} {failed:>6}"
            + (f"  {d.failed} {g.failed}" if failed else "")
        )
        if label.endswith("64 held streams"):
            added_held = g99 - d99
    print(f"   load average: {gl.load_average()}")
    return added_held


def founding_h2load(
    healthy: Child, serve: Child, evidence: Path, body: Path, calls: int, concurrency: int
) -> bool:
    """6. the founding case's tool-result call driven by h2load (no Python client sharing the
    CPU): p99 through the gateway over the seed emulator against straight to a healthy one,
    success and upstream requests from the gateway's evidence. True when a target is missed."""
    print(
        f"\n6. founding case by h2load: {calls} tool-result calls, {concurrency} concurrent, "
        "route kimi over the seed emulator"
    )
    print(
        f"{'proto':>5} {'healthy p50/p99 s':>18} {'gateway p50/p99 s':>18} {'p99 ratio':>9} "
        f"{'success':>8} {'req/call':>8}"
    )
    missed = False
    seen = 0
    for proto in ("h1", "h2c"):
        base = gl.run_h2load(
            healthy.url + CONVERSE_STREAM, body, proto=proto, concurrency=concurrency,
            requests=calls,
        )  # fmt: skip
        got = gl.run_h2load(
            serve.url + CONVERSE_STREAM, body, proto=proto, concurrency=concurrency,
            requests=calls,
        )  # fmt: skip
        time.sleep(0.5)  # the evidence of the last calls is written after their last byte
        records = evidence_records(evidence)[seen:]
        seen += len(records)
        if base is None or got is None or not records:
            print(f"{proto:>5}  h2load failed")
            missed = True
            continue
        passed = sum(1 for r in records if r.get("passed") and "22" in (r.get("text") or ""))
        success = passed / max(len(records), got.done)
        per_call = sum(int(r.get("requests") or 0) for r in records) / len(records)
        b50, b99 = gl.quantile(base.times, 0.5), gl.quantile(base.times, 0.99)
        g50, g99 = gl.quantile(got.times, 0.5), gl.quantile(got.times, 0.99)
        print(
            f"{proto:>5} {b50:>8.3f}/{b99:<9.3f} {g50:>8.3f}/{g99:<9.3f} "
            f"{g99 / b99:>8.2f}x {success:>8.2%} {per_call:>8.3f}"
        )
        missed |= success < 0.999 or g99 / b99 > 1.5 or per_call > 1.5
    print(
        "   targets: p99 <= 1.5x healthy, success >= 99.9%, <= 1.5 requests per call; "
        f"load average {gl.load_average()}"
    )
    return missed


def load_part(args: argparse.Namespace, work: Path) -> bool:
    """Parts 4-6 (``--parts load``); True when a founding-case target is missed."""
    if gl.H2LOAD is None:
        print("\n4.-6. load from outside: h2load not installed (apt-get install nghttp2-client)")
        return False
    body = tool_result_body(work)
    missed = False
    fast, healthy = emulator("fast"), emulator("healthy")
    children = [fast, healthy]
    try:
        fast_gw, fast_evidence = gateway(
            fast.url, work, "load-fast", first_event=30.0, idle=30.0,
            policy=THROUGHPUT_POLICY, workers=args.workers,
        )  # fmt: skip
        children.append(fast_gw)
        throughput(fast, fast_gw, body, args.streams)
        time.sleep(0.5)  # the last calls' records are written after their last byte
        records = evidence_records(fast_evidence)
        answered = sum(1 for r in records if r.get("passed") and "22" in (r.get("text") or ""))
        print(f"   gateway evidence: {len(records)} calls (warm-ups included), {answered} answered")
        healthy_gw, _ = gateway(
            healthy.url, work, "load-healthy", first_event=30.0, idle=30.0,
            policy=THROUGHPUT_POLICY, workers=args.workers,
        )  # fmt: skip
        children.append(healthy_gw)
        added = first_event(
            [
                ("fast preset, 1 stream", fast, fast_gw, 1, max(50, args.streams // 8)),
                ("fast preset, 64 (saturated)", fast, fast_gw, 64, args.streams),
                ("healthy preset, 8 held streams", healthy, healthy_gw, 8, args.first_streams // 8),
                ("healthy preset, 64 held streams", healthy, healthy_gw, 64, args.first_streams),
            ],
            body,
        )
        if added is not None:
            print(f"   added p99 first event at 64 held streams {added:.1f} ms (target <= 5 ms)")
        seed = emulator("seed")
        children.append(seed)
        serve, evidence = gateway(seed.url, work, "seed-h2load", policy=args.policy)
        children.append(serve)
        missed = founding_h2load(healthy, serve, evidence, body, args.calls, args.concurrency)
    finally:
        for child in reversed(children):
            child.stop()
    return missed


# -- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1000, help="tool-result calls (founding)")
    parser.add_argument("--bare-calls", type=int, default=200, help="loops on the bare emulator")
    parser.add_argument("--bare-timeout", type=float, default=5.0, help="boto3 read timeout, bare")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent loops")
    parser.add_argument("--streams", type=int, default=2000, help="streams per overhead level")
    parser.add_argument(
        "--policy",
        default=FOUNDING_POLICY,
        help="TOML lines added to route kimi of the founding case (default: %(default)r; "
        "'' is the embedded default's route as it is)",
    )
    parser.add_argument(
        "--parts",
        default="founding,overhead,load",
        help="what to run: founding, overhead, load (h2load from outside: streams/s and CPU per "
        "stream, the first-event probe, the founding case by h2load), scale (streams/s with 1 "
        "and 2 workers, the cost of metrics and traces, shared breaker state: bench/scale.py, "
        "which make bench runs)",
    )
    parser.add_argument(
        "--litellm",
        help="a `litellm` command with the proxy extra (litellm[proxy]==1.80.17); default: "
        ".venv-bench/bin/litellm when present",
    )
    parser.add_argument(
        "--first-streams", type=int, default=2000, help="held streams for the first-event probe"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="callproof serve --workers for parts 4-5"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run (small sizes)")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.bare_calls, args.streams, args.first_streams = 60, 30, 200, 128
    work = Path(tempfile.mkdtemp(prefix="callproof-bench-gateway-"))
    print("callproof gateway benchmark (loopback; the machine may be shared: read the ratios)")
    failed = False

    # 1. the founding case
    parts = set(args.parts.split(","))
    if "founding" in parts:
        healthy = emulator("healthy")
        seed = emulator("seed")
        serve, evidence = gateway(seed.url, work, "seed", policy=args.policy)
        try:
            base = run_loops(
                "boto3 -> healthy emulator", healthy.url, args.calls, args.concurrency, 60
            )
            bare = run_loops(
                f"boto3 -> bare seed emulator (read_timeout {args.bare_timeout:g} s)",
                seed.url,
                args.bare_calls,
                max(args.concurrency, 32),
                args.bare_timeout,
            )
            through = run_loops(
                "boto3 -> callproof serve -> seed emulator",
                serve.url,
                args.calls,
                args.concurrency,
                60,
            )
        finally:
            serve.stop()
            healthy.stop()
            seed.stop()
        calls, requests = upstream_requests(evidence)
        print("\n1. founding case: boto3 tool-use loop, tool-result calls")
        print(f"{'client':58} {'calls':>6} {'success':>8} {'p50 s':>7} {'p99 s':>7}")
        for r in (base, bare, through):
            rate = r.ok / r.calls if r.calls else 0.0
            print(f"{r.label:58} {r.calls:>6} {rate:>8.1%} {r.p(0.5):>7.3f} {r.p(0.99):>7.3f}")
            if r.errors:
                print(f"{'':4}failures: {r.errors}")
        success = through.ok / through.calls if through.calls else 0.0
        ratio = through.p(0.99) / base.p(0.99)
        per_call = requests / calls if calls else float("nan")
        print(f"success through the gateway {success:.2%} (target >= 99.9%)")
        print(f"p99 / healthy p99 = {ratio:.2f}x (target <= 1.5x)")
        print(f"upstream requests per tool-result call = {per_call:.3f} (target <= 1.5)")
        failed |= success < 0.999 or ratio > 1.5 or per_call > 1.5

    # 2./3. overhead and streams/s, on the fast preset
    if "overhead" in parts:
        fast = emulator("fast")
        # overload must not read as a stall: generous clocks for the throughput runs
        # and no hedging, a fixed watchdog and no breaker: this measures the gateway's cost,
        # not the router's answer to an emulator it overloads itself
        fast_gw, _ = gateway(
            fast.url, work, "fast", first_event=30.0, idle=30.0, policy=THROUGHPUT_POLICY
        )
        try:
            print("\n2. overhead: streamed chat completions, fast preset (no model latency)")
            print(
                f"{'level':>6} {'direct p50/p99 ms':>20} {'gateway p50/p99 ms':>20} "
                f"{'added p50/p99 ms':>18} {'added total p50 ms':>19}"
            )
            for level in (1, 64):
                n = args.streams // 4 if level == 1 else args.streams
                d_first, d_total, _, d_failed = asyncio.run(streams(fast.url, level, n))
                g_first, g_total, _, g_failed = asyncio.run(
                    streams(fast_gw.url, level, n, OPENAI_ROUTE)
                )
                d50, d99, g50, g99 = (
                    _q(d_first, 0.5) * 1e3,
                    _q(d_first, 0.99) * 1e3,
                    _q(g_first, 0.5) * 1e3,
                    _q(g_first, 0.99) * 1e3,
                )
                added_total = (statistics.median(g_total) - statistics.median(d_total)) * 1e3
                print(
                    f"{level:>6} {d50:>9.1f}/{d99:<10.1f} {g50:>9.1f}/{g99:<10.1f} "
                    f"{g50 - d50:>8.1f}/{g99 - d99:<9.1f} {added_total:>19.1f}"
                    + (
                        f"  (failed: direct {d_failed}, gateway {g_failed})"
                        if d_failed or g_failed
                        else ""
                    )
                )
            print("\n3. streams/s (fast preset; complete streams per second of wall time)")
            proxy = litellm_proxy(args.litellm, fast.url, work)
            print(
                f"{'level':>6} {'direct':>10} {'gateway':>10} {'LiteLLM':>10} "
                f"{'gateway/direct':>15} {'gateway/LiteLLM':>16} {'failed':>8}"
            )
            try:
                for level in (1, 64, 512):
                    n = args.streams // 4 if level == 1 else args.streams
                    d_ok, _, d_wall, d_failed = asyncio.run(streams(fast.url, level, n))
                    g_ok, _, g_wall, g_failed = asyncio.run(
                        streams(fast_gw.url, level, n, OPENAI_ROUTE)
                    )
                    direct, through = len(d_ok) / d_wall, len(g_ok) / g_wall
                    lite, l_failed = float("nan"), 0
                    if proxy is not None:
                        l_ok, _, l_wall, l_failed = asyncio.run(
                            streams(proxy.url, level, n, "kimi")
                        )
                        lite = len(l_ok) / l_wall
                    print(
                        f"{level:>6} {direct:>10.0f} {through:>10.0f} {lite:>10.0f} "
                        f"{through / direct:>15.2f} {through / lite:>16.2f} "
                        f"{d_failed + g_failed + l_failed:>8}"
                    )
            finally:
                if proxy is not None:
                    proxy.stop()
            if proxy is None:
                print(
                    "LiteLLM proxy: not measured (give --litellm PATH to a `litellm` command of "
                    "litellm[proxy]==1.80.17; TODO: lock the proxy extra in the bench group)"
                )
        finally:
            fast_gw.stop()
            fast.stop()
    if "load" in parts:
        failed |= load_part(args, work)
    if "scale" in parts:
        print("\n4. at scale (bench/scale.py)", flush=True)
        quick = ["--quick"] if args.quick else []
        subprocess.run([sys.executable, str(ROOT / "bench" / "scale.py"), *quick], check=False)
    # a quick run is a smoke run: its small samples judge nothing
    return 1 if failed and not args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
