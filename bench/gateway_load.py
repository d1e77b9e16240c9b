"""Load from outside for bench/gateway.py: h2load runs, process CPU from /proc, and a
first-event probe, each in a process of its own (never the gateway's or the bench's loop).

* :func:`run_h2load` drives a URL with h2load (Debian's nghttp2-client) over HTTP/1.1
  (``--h1``) or h2c with prior knowledge, POSTing one body file, and returns the counts, the
  wall time and every request's total time (``--log-file``). h2load's HTTP/1.1 parser records
  no status when the reason phrase is empty, as hypercorn sends it ("HTTP/1.1 200 "), so its
  h1 rows count completed responses; the callers check outcomes elsewhere (the gateway's
  evidence, :func:`probe` on the direct emulator).
* :func:`cpu_seconds` is a process's user + system CPU with its live descendants
  (``callproof serve --workers`` runs each worker as a child of the supervisor).
* h2load's "time to 1st byte" is one figure per *connection* (its first response, min, max,
  mean and sd only), and the emulator sends its headers before the model's first event while
  the gateway sends them at its commit point, so a first *byte* is not a first *event*. The
  first-event latency is measured by :func:`probe` instead: ``python bench/gateway_load.py
  probe ...`` in a child process, N keep-alive HTTP/1.1 connections on one asyncio loop, the
  time to the first content delta (a ``"text":"`` with a non-empty value: reasoning or text)
  and to the end of each stream. It costs well under a millisecond of CPU per stream, so at
  the held-stream rates it is used at (about 200 streams/s) it is not the bottleneck.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

H2LOAD = shutil.which("h2load")

#: A content delta's payload: ``"text":"`` and a non-empty value (reasoning or answer text).
FIRST_CONTENT = re.compile(rb'"text":"[^"]')

# -- process CPU ----------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except OSError:
            continue
        out += [int(p) for p in text.split()]
    return out


def _own_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (from /proc)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += _own_cpu(current)
        todo += _children(current)
    return total


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- h2load ---------------------------------------------------------------------------------


@dataclass
class H2Result:
    """One h2load run: ``done`` responses (h2: ``ok`` of them 2xx), ``errors`` (errored,
    timed out, or h2 non-2xx), the wall time, and each request's total seconds."""

    done: int
    ok: int
    errors: int
    seconds: float
    times: list[float] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.ok / self.seconds if self.seconds else float("nan")


def h2load_args(proto: str, concurrency: int) -> list[str]:
    """Clients and streams for ``concurrency`` concurrent streams: over HTTP/1.1 one
    connection per stream; over h2c min(concurrency, 8) connections sharing the streams."""
    if proto == "h1":
        return ["--h1", "-c", str(concurrency), "-m", "1"]
    clients = min(concurrency, 8)
    return ["-c", str(clients), "-m", str(-(-concurrency // clients))]


def run_h2load(
    url: str,
    body: Path,
    *,
    proto: str,
    concurrency: int,
    requests: int,
    headers: tuple[str, ...] = ("content-type: application/json",),
    timeout_s: float = 600.0,
) -> H2Result | None:
    """``requests`` POSTs of ``body`` to ``url`` at ``concurrency`` (see :func:`h2load_args`);
    None when h2load is missing or said something unexpected."""
    if H2LOAD is None:
        return None
    clients_args = h2load_args(proto, concurrency)
    requests = max(requests, int(clients_args[clients_args.index("-c") + 1]))
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log:
        argv = [H2LOAD, *clients_args, "-n", str(requests), "-d", str(body)]
        for header in headers:
            argv += ["-H", header]
        argv += ["--log-file", log.name, url]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, check=False, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            print(f"  h2load {proto} c={concurrency}: timed out", file=sys.stderr)
            return None
        found = re.search(r"finished in ([\d.]+)(m?s)", done.stdout)
        counts = re.search(
            r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
            r"(\d+) errored, (\d+) timeout",
            done.stdout,
        )
        if found is None or counts is None:
            print(f"  h2load said {done.stdout[-300:]!r} {done.stderr[-300:]!r}", file=sys.stderr)
            return None
        seconds = float(found.group(1)) / (1000 if found.group(2) == "ms" else 1)
        n_done, ok, failed, errored, timed_out = (int(g) for g in counts.groups())
        times: list[float] = []
        for line in Path(log.name).read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and parts[1] != "-1":
                times.append(int(parts[2]) / 1e6)
    if proto == "h1":  # no status recorded (see the module docstring): completed responses
        ok, errors = n_done - errored - timed_out, errored + timed_out
    else:
        errors = failed + errored + timed_out
    return H2Result(n_done, ok, errors, seconds, times)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- the first-event probe ------------------------------------------------------------------


@dataclass
class ProbeResult:
    """First content delta and end of each complete stream (seconds); failures by reason."""

    firsts: list[float] = field(default_factory=list)
    totals: list[float] = field(default_factory=list)
    failed: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


async def _one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, marker: bytes
) -> tuple[float, float]:
    """Send one request, read its chunked or sized answer: (first content, total)."""
    t0 = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        raise RuntimeError(f"status {status}")
    first = None
    found = not marker
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        tail = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            tail = tail[-64:] + await reader.readexactly(size + 2)
            if first is None and FIRST_CONTENT.search(tail):
                first = time.perf_counter() - t0
            found = found or marker in tail
    else:
        sized = re.search(rb"content-length: *(\d+)", lower)
        data = await reader.readexactly(int(sized.group(1)) if sized else 0)
        first = time.perf_counter() - t0 if FIRST_CONTENT.search(data) else None
        found = found or marker in data
    total = time.perf_counter() - t0
    if first is None:
        raise RuntimeError("no content delta")
    if not found:
        raise RuntimeError("answer without the expected text")
    return first, total


async def _probe(
    url: str, body: bytes, concurrency: int, streams: int, marker: bytes
) -> ProbeResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    result = ProbeResult()
    left = iter(range(streams))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        try:
            for _ in left:
                try:
                    first, total = await _one(reader, writer, request, marker)
                except (RuntimeError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    why = str(exc) if isinstance(exc, RuntimeError) else type(exc).__name__
                    result.failed[why] = result.failed.get(why, 0) + 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
                    continue
                result.firsts.append(first)
                result.totals.append(total)
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - t0
    return result


def probe(url: str, body: Path, concurrency: int, streams: int, marker: str = "") -> ProbeResult:
    """Run the probe in a child process (see the module docstring); ``marker``, when given,
    must appear in each answer (else the stream counts as failed)."""
    done = subprocess.run(
        [sys.executable, __file__, "probe", url, str(body), str(concurrency), str(streams), marker],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(done.stdout)
    return ProbeResult(data["firsts"], data["totals"], data["failed"], data["seconds"])


def _main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[0] != "probe":
        print(__doc__)
        return 2
    url, body, concurrency, streams = argv[1], Path(argv[2]), int(argv[3]), int(argv[4])
    marker = (argv[5] if len(argv) > 5 else "").encode()
    result = asyncio.run(_probe(url, body.read_bytes(), concurrency, streams, marker))
    print(json.dumps(result.__dict__))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
