"""Probe runner throughput, client CPU per attempt, and memory; the transport designs compared.

1. attempts/s, client CPU per attempt (``time.process_time`` of the client process, so signing
   and every thread count) and peak RSS of ``run_probe`` at 1, 100, 1,000 and 5,000 concurrent
   attempts against the emulator on loopback (``create_app(preset="fast")`` under uvicorn in its
   own process: instant latency, no faults, so the client is what is measured; served by a
   plain ``uvicorn.run`` because ``EmulatorServer``'s pre-bound socket misses TCP_NODELAY),
   next to a bare httpx loop sending the same request body to the same emulator at the same
   concurrency (the baseline: the cost of HTTP + the emulator alone). Each measurement runs in
   a fresh process so peak RSS is its own.

   The client's transport designs (``--designs``), each behind the same httpx seam the tests
   inject ``MockTransport``/``ASGITransport`` through:

   * ``freelist``: the client's default transport, :func:`callproof.transport.make_transport`
     (now :class:`callproof.h1.H1Transport`: its own HTTP/1.1 connections, httptools parsing,
     on an O(1) last-in-first-out free list; earlier httpcore connections on the same list);
   * ``aiohttp``: httpx over aiohttp's connector (an adapter in this file);
   * ``httpcore-pool``: httpx's default transport, ``httpcore.AsyncConnectionPool`` with the
     limits callproof used before (``max_connections=1000, max_keepalive_connections=100``).

   Designs run alternately (A B, then B A on the next repeat), since the machine is shared.
   A run that does not finish in ``--cap`` seconds is reported as such (the old pool's cliff).
2. Memory over 100,000 attempts: ``run_probe`` through ``httpx.ASGITransport(create_app())``
   in-process (100,000 real HTTP attempts take too long on 2 cores), RSS sampled at 10k, 50k
   and 100k records: flat means records are written and aggregated, never held.

Usage: ``python bench/probe.py [--quick] [--designs freelist,aiohttp,httpcore-pool]``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """\
[defaults]
timeouts = {{ connect = 10.0, first_event = 30.0, idle = 30.0, deadline = 60.0 }}
[providers.bedrock]
api = "bedrock-converse-stream"
endpoint = "{url}"
[targets.nova]
provider = "bedrock"
model = "amazon.nova-pro-v1:0"
"""


def _rss_mb() -> float:
    """Current resident set size (Linux /proc), in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- workers (each in its own process) ----------------------------------------------------------


# --- the aiohttp design: httpx over aiohttp's connector ------------------------------------------


def _aiohttp_transport() -> Any:
    """An httpx transport that sends through one ``aiohttp.ClientSession`` (``TCPConnector``,
    no connection limit; aiohttp neither decompresses nor adds headers: httpx does both)."""
    import aiohttp
    import httpx
    import yarl

    class _Body(httpx.AsyncByteStream):
        def __init__(self, resp: aiohttp.ClientResponse) -> None:
            self._resp = resp

        async def __aiter__(self) -> Any:
            try:
                async for chunk in self._resp.content.iter_any():
                    yield chunk
            except aiohttp.ClientPayloadError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc
            except aiohttp.ClientError as exc:
                raise httpx.ReadError(str(exc)) from exc

        async def aclose(self) -> None:
            self._resp.release()

    class AiohttpTransport(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self._session: aiohttp.ClientSession | None = None

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if self._session is None:
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0, ssl=False),
                    auto_decompress=False,
                    timeout=aiohttp.ClientTimeout(total=None),
                    skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
                )
            body = await request.aread()
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
            try:
                resp = await self._session.request(
                    request.method,
                    yarl.URL(str(request.url), encoded=True),
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                )
            except aiohttp.ClientConnectorError as exc:
                raise httpx.ConnectError(str(exc)) from exc
            except aiohttp.ClientError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc
            return httpx.Response(resp.status, headers=list(resp.raw_headers), stream=_Body(resp))

        async def aclose(self) -> None:
            if self._session is not None:
                await self._session.close()

    return AiohttpTransport()


def _use_design(design: str) -> None:
    """Make ``Client`` send through ``design`` in this (worker) process."""
    import httpx

    from callproof import transport

    if design == "aiohttp":
        transport.make_transport = lambda verify=True: _aiohttp_transport()
    elif design == "httpcore-pool":
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        transport.make_transport = lambda verify=True: httpx.AsyncHTTPTransport(
            verify=verify, limits=limits
        )
    elif design != "freelist":
        raise SystemExit(f"unknown design {design!r}")


async def _worker_callproof(
    url: str, concurrency: int, attempts: int, design: str = "freelist"
) -> dict[str, Any]:
    from callproof.probe.config import parse_config
    from callproof.probe.runner import RunOptions, run_probe

    _use_design(design)
    config = parse_config(CONFIG.format(url=url))
    with tempfile.TemporaryDirectory() as tmp:
        options = RunOptions(
            out=Path(tmp) / "run",
            n=attempts,
            targets=["nova"],
            scenarios=["tool-result"],
            concurrency=concurrency,
        )
        t0, c0 = time.perf_counter(), time.process_time()
        result = await run_probe(config, options)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    entry = result.summary["results"][0]
    return {
        "attempts": entry["n"],
        "passed": entry["passed"],
        "seconds": elapsed,
        "per_s": entry["n"] / elapsed,
        "cpu_ms": 1000 * cpu / max(1, entry["n"]),
        "peak_rss_mb": _peak_rss_mb(),
    }


async def _worker_httpx(url: str, concurrency: int, attempts: int) -> dict[str, Any]:
    import httpx

    from callproof.dialects import get_dialect
    from callproof.scenarios import tool_result

    wire = get_dialect("bedrock-converse-stream").encode_request(
        "amazon.nova-pro-v1:0", tool_result().conversation
    )
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    ok = 0
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as http:
        todo = iter(range(attempts))

        async def one() -> None:
            nonlocal ok
            for _ in todo:
                async with http.stream(
                    wire.method, wire.path, content=wire.body, headers=wire.headers
                ) as resp:
                    async for _chunk in resp.aiter_bytes():
                        pass
                    ok += resp.status_code == 200

        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one() for _ in range(min(concurrency, attempts))))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "attempts": attempts,
        "passed": ok,
        "seconds": elapsed,
        "per_s": attempts / elapsed,
        "cpu_ms": 1000 * cpu / attempts,
        "peak_rss_mb": _peak_rss_mb(),
    }


async def _worker_flat(attempts: int, marks: list[int]) -> dict[str, Any]:
    import httpx

    from callproof.emulator import create_app
    from callproof.looplag import tuned_gc
    from callproof.probe.config import parse_config
    from callproof.probe.runner import RunOptions, run_probe

    config = parse_config(CONFIG.format(url="emulator"))
    samples: dict[int, float] = {}
    seen = 0

    def on_record(record: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        if seen in marks:
            samples[seen] = _rss_mb()

    with tempfile.TemporaryDirectory() as tmp:
        options = RunOptions(
            out=Path(tmp) / "run",
            n=attempts,
            targets=["nova"],
            scenarios=["tool-result"],
            concurrency=100,
            on_record=on_record,
            transport=httpx.ASGITransport(create_app(preset="fast", seed=1)),
        )
        t0 = time.perf_counter()
        with tuned_gc():  # as `callproof run` runs (probe.runner.run_sync)
            result = await run_probe(config, options)
        elapsed = time.perf_counter() - t0
        size = (result.run_dir / "results.jsonl").stat().st_size
    return {
        "attempts": result.summary["results"][0]["n"],
        "passed": result.summary["results"][0]["passed"],
        "seconds": elapsed,
        "per_s": attempts / elapsed,
        "rss_mb": {str(k): round(v, 1) for k, v in sorted(samples.items())},
        "results_mb": size / 1e6,
    }


def _worker(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "flat":
        attempts = int(argv[1])
        marks = [int(x) for x in argv[2].split(",")]
        out = asyncio.run(_worker_flat(attempts, marks))
    else:
        url, concurrency, attempts = argv[1], int(argv[2]), int(argv[3])
        if kind == "httpx":
            out = asyncio.run(_worker_httpx(url, concurrency, attempts))
        else:
            out = asyncio.run(_worker_callproof(url, concurrency, attempts, argv[4]))
    print(json.dumps(out))


# --- driver -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_worker(*args: str, cap: float | None = None) -> dict[str, Any] | None:
    """One measurement in a fresh process; None when it did not finish within ``cap`` s."""
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
            timeout=cap,
        )
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _serve(port: int) -> subprocess.Popen[bytes]:
    # the emulator app under a plain uvicorn in its own process (see the module docstring);
    # max_streams above the highest concurrency, so no stream is refused with a 429
    serve = (
        "import uvicorn\nfrom callproof.emulator import create_app\n"
        "from callproof.emulator.state import Limits\n"
        "app = create_app(preset='fast', seed=1, limits=Limits(max_streams=20000))\n"
        f"uvicorn.run(app, host='127.0.0.1', port={port}, "
        "log_level='error', access_log=False, lifespan='off', backlog=8192)"
    )
    return subprocess.Popen(
        [sys.executable, "-c", serve],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )


def _fmt(row: dict[str, Any] | None, attempts: int, key: str, spec: str) -> str:
    if row is None:
        return "DNF"
    if row["passed"] != attempts:
        return f"{row['passed']}/{attempts} ok"
    return format(row[key], spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer attempts (a smoke run)")
    parser.add_argument(
        "--designs",
        default="freelist,aiohttp,httpcore-pool",
        help="transport designs to compare (comma-separated; the first is the default)",
    )
    parser.add_argument("--levels", default=None, help="concurrency levels, e.g. 1,100,1000")
    parser.add_argument("--repeat", type=int, default=1, help="runs per design and level")
    parser.add_argument(
        "--cap", type=float, default=180.0, help="seconds before a run counts as not finished"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the 100,000-attempt run")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker)
        return

    designs = [d for d in args.designs.split(",") if d]
    if "aiohttp" in designs and importlib.util.find_spec("aiohttp") is None:
        print("aiohttp is not installed: its design is skipped", file=sys.stderr)
        designs.remove("aiohttp")
    sizes = {1: 300, 100: 3000, 1000: 5000, 5000: 10000}
    quick_sizes = {1: 100, 100: 500, 1000: 1000, 5000: 5000}
    levels = [int(x) for x in args.levels.split(",")] if args.levels else [1, 100, 1000, 5000]
    if args.quick and not args.levels:
        levels = [1, 100, 1000]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = _serve(port)
    rows: list[tuple[int, int, dict[str, Any] | None, dict[str, list[dict[str, Any] | None]]]] = []
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/v1/models", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        for concurrency in levels:
            attempts = (quick_sizes if args.quick else sizes).get(concurrency, 5 * concurrency)
            base = _run_worker("httpx", url, str(concurrency), str(attempts), cap=args.cap)
            runs: dict[str, list[dict[str, Any] | None]] = {d: [] for d in designs}
            for rep in range(args.repeat):
                order = designs if rep % 2 == 0 else designs[::-1]
                for design in order:
                    out = _run_worker(
                        "callproof", url, str(concurrency), str(attempts), design, cap=args.cap
                    )
                    runs[design].append(out)
            rows.append((concurrency, attempts, base, runs))
    finally:
        server.terminate()
        server.wait(10)

    def best(xs: list[dict[str, Any] | None]) -> dict[str, Any] | None:
        done = [x for x in xs if x is not None]
        return min(done, key=lambda x: x["cpu_ms"]) if len(done) == len(xs) else None

    print(
        f"Probe throughput against the emulator on loopback ({os.cpu_count()} CPUs, a machine "
        "shared with other work: compare ratios within this run, not absolute figures)"
    )
    print(
        "attempts/s, client CPU ms per attempt (process_time), peak RSS; 'DNF' = did not finish "
        f"within {args.cap:g} s; best of {args.repeat} alternated run(s) per design"
    )
    header = f"{'conc':>5} {'attempts':>8} {'bare httpx':>18}"
    for design in designs:
        header += f" {design:>30}"
    print(header)
    for concurrency, attempts, base, runs in rows:
        line = f"{concurrency:>5} {attempts:>8} "
        line += f"{_fmt(base, attempts, 'per_s', '.0f'):>8}/s "
        line += f"{_fmt(base, attempts, 'cpu_ms', '.2f'):>5}ms"
        for design in designs:
            r = best(runs[design])
            cell = (
                f"{_fmt(r, attempts, 'per_s', '.0f')}/s {_fmt(r, attempts, 'cpu_ms', '.2f')}ms "
                f"{_fmt(r, attempts, 'peak_rss_mb', '.0f')}MB"
            )
            line += f" {cell:>30}"
        print(line)

    print()
    print("Ratios (same run):")
    by_level = {c: (base, runs) for c, _, base, runs in rows}
    for design in designs:
        first = by_level.get(levels[0])
        if first is None:
            continue
        ref = best(first[1][design])
        for concurrency in levels[1:]:
            base, runs = by_level[concurrency]
            r = best(runs[design])
            if r is None or ref is None:
                print(f"  {design:>14} c={concurrency}: did not finish")
                continue
            vs_base = f"{r['per_s'] / base['per_s']:.2f}x bare httpx" if base else "n/a"
            print(
                f"  {design:>14} c={concurrency}: {r['per_s'] / ref['per_s']:.2f}x its rate at "
                f"c={levels[0]}, {vs_base}, CPU/attempt {r['cpu_ms'] / ref['cpu_ms']:.2f}x "
                f"c={levels[0]}'s"
            )
    if len(designs) > 1:
        for concurrency in levels:
            _, runs = by_level[concurrency]
            ref = best(runs[designs[0]])
            for other in designs[1:]:
                r = best(runs[other])
                if ref is None or r is None:
                    continue
                cpu = ref["cpu_ms"] / r["cpu_ms"]
                print(
                    f"  c={concurrency}: {designs[0]} CPU/attempt {cpu:.2f}x {other}'s, "
                    f"rate {ref['per_s'] / r['per_s']:.2f}x"
                )
    if args.no_memory:
        return

    total = 10_000 if args.quick else 100_000
    marks = [total // 10, total // 2, total]
    flat = _run_worker("flat", str(total), ",".join(map(str, marks)))
    assert flat is not None
    rss = flat["rss_mb"]
    first, last = rss[str(marks[0])], rss[str(marks[-1])]
    print()
    print(
        f"Memory over {total:,} attempts (in-process ASGI transport, concurrency 100): "
        f"{flat['per_s']:.0f} attempts/s, results.jsonl {flat['results_mb']:.0f} MB"
    )
    for mark in marks:
        print(f"  RSS after {mark:>7,} attempts: {rss[str(mark)]:7.1f} MB")
    print(
        f"  growth from {marks[0]:,} to {marks[-1]:,}: {last - first:+.1f} MB ({last / first:.2f}x)"
    )


if __name__ == "__main__":
    main()
