"""Run the emulator on a real socket: hypercorn on a background thread, HTTP/1.1 and HTTP/2.

``with EmulatorServer() as server:`` binds a free loopback port (``port=0``), starts serving and
returns once it listens; ``server.url`` is the base URL (Bedrock ``endpoint_url``; OpenAI
``base_url`` is ``server.url + "/v1"``). Every port speaks HTTP/1.1 and HTTP/2: h2c with prior
knowledge on cleartext (the AWS SDK for JavaScript v3 >= 3.798 sends the HTTP/2 preface on
``http://`` URLs) and ALPN ``h2`` under ``tls=True``, which serves HTTPS with a certificate from
a throwaway CA (trustme); ``server.ca_path`` is that CA's PEM bundle for ``verify=``.
Stopping ends hung streams at once, so a test never waits on a fault it asked for.

Cleartext connections start on the fast front (:mod:`callproof.emulator.fastfront`,
``fast=True``, the default): HTTP/1.1 requests to the model routes are answered there from
response plans, h2c connections go to its HTTP/2 path (:mod:`callproof.emulator.h2front`, the
same plans as h2 frames, other streams through the app), and everything else goes to hypercorn
with the bytes already read; ``fast=False`` serves every request with hypercorn (the tests
compare both, byte for byte).

The serving itself is :class:`callproof.http_server.HTTPServer` (shared with other servers of
the project); its :class:`~callproof.http_server.ServerLimits` bound header size, header and
idle time and open connections. Over HTTP/2 a hang holds the stream open and a cut or reset
fault resets the stream (RST_STREAM); over HTTP/1.1 a cut closes the connection and a reset
is a real TCP RST.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from callproof.emulator.faults import FaultPlan
from callproof.http_server import HTTPServer, ServerLimits

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
        limits: ServerLimits | None = None,
        fast: bool = True,
    ) -> None:
        if app is None:
            from callproof.emulator.app import create_app

            app = create_app(preset=preset, faults=faults, seed=seed)
        self.app = app
        routes = getattr(getattr(app, "state", None), "fast_routes", None)
        front = None
        if fast and routes is not None:
            from callproof.emulator.fastfront import FastFront

            front = FastFront(routes)
        self._http = HTTPServer(
            app,
            host=host,
            port=port,
            tls=tls,
            limits=limits,
            log_level=log_level,
            on_stop=self._end_hangs,
            name="callproof-emulator",
            front=front,
        )

    @property
    def state(self) -> Any:
        """The app's :class:`~callproof.emulator.state.EmulatorState`, when it has one."""
        return getattr(getattr(self.app, "state", None), "emulator", None)

    @property
    def host(self) -> str:
        return self._http.host

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def tls(self) -> bool:
        return self._http.tls

    @property
    def ca_path(self) -> Path | None:
        return self._http.ca_path

    @property
    def url(self) -> str:
        """``http(s)://host:port`` (IPv6 hosts in brackets)."""
        return self._http.url

    def _end_hangs(self) -> None:
        state = self.state
        if state is not None:
            state.closing.set()

    def start(self) -> EmulatorServer:
        """Bind, start serving on a daemon thread, and return once listening."""
        try:
            self._http.start()
        except RuntimeError as exc:
            raise RuntimeError(f"emulator failed to start: {exc}") from exc
        return self

    def stop(self) -> None:
        """Stop serving: hung streams end, then the server shuts down."""
        self._http.stop()

    def wait(self) -> None:
        """Block until the server stops (used by ``callproof emulate``)."""
        self._http.wait()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
