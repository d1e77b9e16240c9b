"""Run the gateway on a real socket: HTTP/1.1 and HTTP/2, cleartext (h2c with prior knowledge,
as the AWS SDK for JavaScript sends it) and TLS (ALPN ``h2``), plus the embedded emulator.

The serving is :class:`callproof.http_server.HTTPServer` (hypercorn, shared with the
emulator); this module adds the app's startup/shutdown and the drain.

``with GatewayServer(serve) as gw:`` starts the emulator (when a target of the config is
served by it) on its own loopback port, binds the gateway (``port=0``: a free port), serves on
a background thread and returns once ready; ``gw.url`` is the base URL (Bedrock
``endpoint_url``; OpenAI ``base_url`` is ``gw.url + "/v1"``). :meth:`GatewayServer.run` serves
until SIGTERM/SIGINT (``callproof serve``).

Shutdown (SIGTERM, or :meth:`stop`): ``/readyz`` turns 503 and new requests get 503
(Bedrock ``ServiceUnavailableException``, OpenAI ``server_error``); streams in flight may
finish until ``[serve] drain_s``; then the rest end with their front's in-band error, and the
server closes.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from callproof.gateway.config import ServeConfig, check_bind
from callproof.http_server import HTTPServer, ServerLimits

__all__ = ["GatewayServer"]


class _Hosting(HTTPServer):
    """HTTPServer running the app's lifespan around serving, with a longer grace period."""

    grace_s = 5.0

    def _config(self) -> Any:
        config = super()._config()
        config.graceful_timeout = self.grace_s
        return config

    async def _serve(self, sock: socket.socket, context: ssl.SSLContext | None) -> None:
        async with self.app.router.lifespan_context(self.app):
            await super()._serve(sock, context)


class GatewayServer:
    """The gateway on a real socket; see the module docstring."""

    def __init__(
        self,
        serve: ServeConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        app_options: dict[str, Any] | None = None,
        limits: ServerLimits | None = None,
        log_level: str = "warning",
        reuse_port: bool = False,
    ) -> None:
        check_bind(serve, host)
        #: Share the port with other processes (``callproof serve --workers``).
        self.reuse_port = reuse_port
        self.serve = serve
        self.host = host
        self.port = port
        self.tls = tls
        self.app_options = app_options or {}
        self.limits = limits
        self.log_level = log_level
        self.emulator: Any = None
        self.app: Any = None
        self._http: _Hosting | None = None

    @property
    def url(self) -> str:
        return self._http.url if self._http is not None else ""

    @property
    def ca_path(self) -> Path | None:
        """The throwaway CA bundle under ``tls=True`` (for ``verify=``)."""
        return self._http.ca_path if self._http is not None else None

    @property
    def gateway(self) -> Any:
        """The running :class:`~callproof.gateway.core.Gateway` (routers, breakers)."""
        return getattr(getattr(self.app, "state", None), "gateway", None)

    def start(self) -> GatewayServer:
        """Start the emulator if needed, then serve on a daemon thread; return once ready."""
        from callproof.gateway.app import create_gateway_app

        serve = self.serve
        if serve.config.needs_emulator:
            from callproof.emulator import EmulatorServer

            settings = serve.config.emulator
            self.emulator = EmulatorServer(
                preset=settings.preset, faults=settings.faults, seed=settings.seed
            ).start()
            serve = ServeConfig(
                config=serve.config.bind_emulator(self.emulator.url),
                serve=serve.serve,
                name=serve.name,
            )
        try:
            self.app = create_gateway_app(serve, **self.app_options)
            self._http = _Hosting(
                self.app,
                host=self.host,
                port=self.port,
                tls=self.tls,
                limits=self.limits,
                log_level=self.log_level,
                name="callproof-gateway",
            )
            self._http.grace_s = self.serve.serve.drain_s + 5.0
            self._http.reuse_port = self.reuse_port
            self._http.start()
        except BaseException:
            self._stop_emulator()
            raise
        self.port = self._http.port
        return self

    def run(self, on_ready: Callable[[GatewayServer], None] | None = None) -> None:
        """Serve until SIGTERM or SIGINT, then drain and stop."""
        stopping = threading.Event()

        def handler(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            if on_ready is not None:
                on_ready(self)
            while not stopping.wait(0.2):
                http = self._http
                if http is None or http._thread is None or not http._thread.is_alive():
                    break
        finally:
            self.stop()
            for sig, old in previous.items():
                signal.signal(sig, old)

    def stop(self) -> None:
        """Drain (see the module docstring), stop serving, stop the emulator."""
        http = self._http
        gateway = self.gateway
        loop = http._loop if http is not None else None
        if gateway is not None and loop is not None and not loop.is_closed():
            drain_s = self.serve.serve.drain_s

            async def drain() -> None:
                await gateway.drain(drain_s)
                while gateway.active:  # noqa: ASYNC110 - ended in-band just now; brief
                    await asyncio.sleep(0.02)

            try:
                future = asyncio.run_coroutine_threadsafe(drain(), loop)
                future.result(timeout=drain_s + 10)
            except (RuntimeError, TimeoutError, asyncio.CancelledError):
                pass
        if http is not None:
            http.stop()
            self._http = None
        self._stop_emulator()

    def _stop_emulator(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
