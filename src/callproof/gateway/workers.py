"""``callproof serve --workers N``: N gateway processes on one port (``SO_REUSEPORT``).

The supervisor reserves the port with an ``SO_REUSEPORT`` socket that never listens, starts N
``callproof serve ... --reuse-port`` processes that bind the same port (the kernel spreads
new connections across them), waits until each printed its URL, then prints the URL once.
SIGTERM or SIGINT is passed on to every worker, each drains as a single gateway does, and the
supervisor exits 0 once all have. A worker that dies stops the others (exit 1).

Each worker is a whole gateway: its own routers, embedded emulator and evidence directory
(``<evidence>/worker-K``). Router state is shared between workers only through
``[serve] state = "redis://..."`` (in-process state is per worker). Metrics are summed across
workers with ``prometheus_client``'s multiprocess mode: the supervisor gives the workers one
``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary directory unless already set), so a scrape of
``/metrics`` on any worker counts every worker's calls.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import FrameType

from callproof.errors import ConfigError

__all__ = ["WORKER_ENV", "run_workers"]

#: Set in each worker's environment: its index (0 .. N-1).
WORKER_ENV = "CALLPROOF_SERVE_WORKER"
_READY_S = 120.0


def _reserve(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        holder.bind((host, port))
    except OSError as exc:
        holder.close()
        raise ConfigError(f"cannot listen: {exc.strerror or exc}", where=f"{host}:{port}") from None
    return holder


def run_workers(
    workers: int,
    *,
    host: str,
    port: int,
    args: Sequence[str],
    echo: object = print,
) -> int:
    """Run ``workers`` gateways on ``host:port`` (``args``: the other ``serve`` options) until
    SIGTERM/SIGINT; returns the exit code (0 stopped, 1 a worker died)."""
    holder = _reserve(host, port)
    port = holder.getsockname()[1]
    env = dict(os.environ)
    own_dir = None
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="callproof-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    argv = [sys.executable, "-m", "callproof", "serve", *args]
    argv += ["--host", host, "--port", str(port), "--reuse-port"]
    procs: list[subprocess.Popen[str]] = []
    stopping = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for k in range(workers):
            # one at a time: the signal handler must see every worker started so far
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and options
                argv, stdout=subprocess.PIPE, text=True, env={**env, WORKER_ENV: str(k)}
            )
            procs.append(proc)
        url = _wait_ready(procs)
        holder.close()
        assert callable(echo)
        echo(url)
        sys.stdout.flush()
        print(
            f"callproof serve: {workers} workers on one port (pids "
            + ", ".join(str(p.pid) for p in procs)
            + ")",
            file=sys.stderr,
        )
        while not stopping:
            if any(p.poll() is not None for p in procs):
                dead = [p for p in procs if p.poll() is not None]
                print(
                    f"callproof serve: worker pid {dead[0].pid} exited with code "
                    f"{dead[0].returncode}; stopping the others",
                    file=sys.stderr,
                )
                handler(signal.SIGTERM, None)
                _wait_all(procs)
                return 1
            time.sleep(0.2)
        _wait_all(procs)
        return 0
    finally:
        holder.close()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for sig, old in previous.items():
            signal.signal(sig, old)
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


def _wait_ready(procs: list[subprocess.Popen[str]]) -> str:
    """Each worker's first stdout line (its URL); ConfigError when one exits first."""
    selector = selectors.DefaultSelector()
    for proc in procs:
        assert proc.stdout is not None
        selector.register(proc.stdout, selectors.EVENT_READ, proc)
    urls: dict[int, str] = {}
    deadline = time.monotonic() + _READY_S
    try:
        while len(urls) < len(procs):
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConfigError(
                    f"the workers were not ready within {_READY_S:.0f} s", where="--workers"
                )
            for key, _ in selector.select(timeout=min(left, 0.5)):
                proc = key.data
                line = proc.stdout.readline()
                if line:
                    urls[proc.pid] = line.strip()
                    selector.unregister(key.fileobj)
            for proc in procs:
                if proc.pid not in urls and proc.poll() is not None:
                    raise ConfigError(
                        f"a worker exited with code {proc.returncode} before it was ready",
                        where="--workers",
                    )
    finally:
        selector.close()
    return next(iter(urls.values()))


def _wait_all(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=120)
