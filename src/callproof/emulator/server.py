"""Run the emulator with the real uvicorn server on a background thread.

``with EmulatorServer() as server:`` binds a free loopback port (``port=0``), starts uvicorn and
returns once it listens; ``server.url`` is the base URL (Bedrock ``endpoint_url``; OpenAI
``base_url`` is ``server.url + "/v1"``). ``tls=True`` serves HTTPS with a certificate from a
throwaway CA (trustme); ``server.ca_path`` is that CA's PEM bundle for ``verify=``.
Stopping ends hung streams at once, so a test never waits on a fault it asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from callproof.emulator.faults import FaultPlan

__all__ = ["EmulatorServer"]


class EmulatorServer:
    """The emulator on a real socket; see the module docstring."""

    def __init__(
        self,
        *,
        preset: str = "seed",
        faults: str | Path | FaultPlan | None = None,
        seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        app: Any = None,
        log_level: str = "warning",
    ) -> None:
        if app is None:
            from callproof.emulator.app import create_app

            app = create_app(preset=preset, faults=faults, seed=seed)
        self.app = app
        self.host = host
        self.port = port
        self.tls = tls
        self.log_level = log_level
        self.ca_path: Path | None = None
        self._tmp: Path | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def state(self) -> Any:
        """The app's :class:`~callproof.emulator.state.EmulatorState`, when it has one."""
        return getattr(getattr(self.app, "state", None), "emulator", None)

    @property
    def url(self) -> str:
        """``http(s)://host:port`` (IPv6 hosts in brackets)."""
        scheme = "https" if self.tls else "http"
        host = self.host
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    def _certificates(self) -> tuple[str, str]:
        import trustme

        self._tmp = Path(tempfile.mkdtemp(prefix="callproof-tls-"))
        ca = trustme.CA()
        names = list(dict.fromkeys([self.host, "127.0.0.1", "localhost", "::1"]))
        cert = ca.issue_cert(*names)
        self.ca_path = self._tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        cert_path = self._tmp / "cert.pem"
        key_path = self._tmp / "key.pem"
        cert.cert_chain_pems[0].write_to_path(str(cert_path))
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(str(cert_path), append=True)
        cert.private_key_pem.write_to_path(str(key_path))
        return str(cert_path), str(key_path)

    def start(self) -> EmulatorServer:
        """Bind, start serving on a daemon thread, and return once listening."""
        import uvicorn

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto must be TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP, and without it every keep-alive request waits ~40 ms (delayed ACK)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.listen(2048)
        sock.setblocking(False)  # noqa: FBT003
        self.port = sock.getsockname()[1]
        certfile, keyfile = self._certificates() if self.tls else (None, None)
        config = uvicorn.Config(
            self.app,
            log_level=self.log_level,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            backlog=2048,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
        self._server = uvicorn.Server(config)

        def run() -> None:
            try:
                asyncio.run(self._server.serve(sockets=[sock]))
            except BaseException as exc:  # noqa: BLE001 - surfaced by start()
                self._error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name="callproof-emulator", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"emulator failed to start: {self._error!r}")
            self._thread.join(0.01)
        return self

    def stop(self) -> None:
        """Stop serving: hung streams end, then uvicorn shuts down."""
        state = self.state
        if state is not None:
            state.closing.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def wait(self) -> None:
        """Block until the server stops (used by ``callproof emulate``)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.2)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
