"""Probe runner throughput and memory.

1. attempts/s and peak RSS of ``run_probe`` at 1, 100 and 1,000 concurrent attempts against the
   emulator on loopback (``create_app(preset="fast")`` under uvicorn in its own process: instant
   latency, no faults, so the client is what is measured; served by a plain ``uvicorn.run``
   because ``EmulatorServer``'s pre-bound socket misses TCP_NODELAY, which costs every
   keep-alive request ~40 ms of delayed ACK), next to a bare httpx loop sending the
   same request body to the same emulator at the same concurrency (the baseline: the cost of
   HTTP + the emulator alone). Each measurement runs in a fresh process so peak RSS is its own.
2. Memory over 100,000 attempts: ``run_probe`` through ``httpx.ASGITransport(create_app())``
   in-process (100,000 real HTTP attempts take too long on 2 cores), RSS sampled at 10k, 50k
   and 100k records: flat means records are written and aggregated, never held.

Usage: ``python bench/probe.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
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


async def _worker_callproof(url: str, concurrency: int, attempts: int) -> dict[str, Any]:
    from callproof.probe.config import parse_config
    from callproof.probe.runner import RunOptions, run_probe

    config = parse_config(CONFIG.format(url=url))
    with tempfile.TemporaryDirectory() as tmp:
        options = RunOptions(
            out=Path(tmp) / "run",
            n=attempts,
            targets=["nova"],
            scenarios=["tool-result"],
            concurrency=concurrency,
        )
        t0 = time.perf_counter()
        result = await run_probe(config, options)
        elapsed = time.perf_counter() - t0
    entry = result.summary["results"][0]
    return {
        "attempts": entry["n"],
        "passed": entry["passed"],
        "seconds": elapsed,
        "per_s": entry["n"] / elapsed,
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

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(min(concurrency, attempts))))
        elapsed = time.perf_counter() - t0
    return {
        "attempts": attempts,
        "passed": ok,
        "seconds": elapsed,
        "per_s": attempts / elapsed,
        "peak_rss_mb": _peak_rss_mb(),
    }


async def _worker_flat(attempts: int, marks: list[int]) -> dict[str, Any]:
    import httpx

    from callproof.emulator import create_app
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
        fn = _worker_callproof if kind == "callproof" else _worker_httpx
        out = asyncio.run(fn(url, concurrency, attempts))
    print(json.dumps(out))


# --- driver -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_worker(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer attempts (a smoke run)")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker)
        return

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # the emulator app under a plain uvicorn in its own process (see the module docstring)
    serve = (
        "import uvicorn\nfrom callproof.emulator import create_app\n"
        f"uvicorn.run(create_app(preset='fast', seed=1), host='127.0.0.1', port={port}, "
        "log_level='error', access_log=False, lifespan='off', backlog=4096)"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", serve],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/v1/models", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        levels = [(1, 100 if args.quick else 300), (100, 500 if args.quick else 3000)]
        levels.append((1000, 1000 if args.quick else 5000))
        rows = []
        for concurrency, attempts in levels:
            base = _run_worker("httpx", url, str(concurrency), str(attempts))
            ours = _run_worker("callproof", url, str(concurrency), str(attempts))
            rows.append((concurrency, attempts, base, ours))
    finally:
        server.terminate()
        server.wait(10)

    print(f"Probe throughput against the emulator on loopback ({os.cpu_count()} CPUs)")
    print(
        f"{'concurrent':>10} {'attempts':>8} {'bare httpx/s':>13} {'callproof/s':>12} "
        f"{'ratio':>6} {'httpx RSS MB':>13} {'callproof RSS MB':>17}"
    )
    for concurrency, attempts, base, ours in rows:
        assert ours["passed"] == attempts, ours
        print(
            f"{concurrency:>10} {attempts:>8} {base['per_s']:>13.0f} {ours['per_s']:>12.0f} "
            f"{ours['per_s'] / base['per_s']:>6.2f} {base['peak_rss_mb']:>13.0f} "
            f"{ours['peak_rss_mb']:>17.0f}"
        )

    total = 10_000 if args.quick else 100_000
    marks = [total // 10, total // 2, total]
    flat = _run_worker("flat", str(total), ",".join(map(str, marks)))
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
