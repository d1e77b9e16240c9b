"""``callproof serve``: the gateway. Bedrock Runtime and OpenAI-compatible fronts over routes.

Once ready it prints exactly one line on stdout, the base URL (``http://127.0.0.1:4020``), and
flushes, so scripts can read it; the CA bundle (``--tls``), the evidence directory and the
models served go to stderr. SIGTERM or Ctrl-C drains (see docs/gateway.md) and exits 0.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from callproof.errors import ConfigError

__all__ = ["serve"]


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="CALLPROOF_CONFIG",
    help="callproof.toml with a [serve] table. Default: ./callproof.toml, else the embedded "
    "default (the seed-preset emulator behind route kimi). Env: CALLPROOF_CONFIG.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="CALLPROOF_SERVE_HOST",
    help='Address to bind (auth = "none" only on loopback).',
)
@click.option(
    "--port",
    default=4020,
    show_default=True,
    type=click.IntRange(0, 65535),
    envvar="CALLPROOF_SERVE_PORT",
    help="Port to bind; 0 picks a free one.",
)
@click.option("--tls", is_flag=True, help="Serve HTTPS (ALPN h2 and http/1.1) with a throwaway CA.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    envvar="CALLPROOF_SERVE_WORKERS",
    help="Gateway processes on the one port (SO_REUSEPORT). They share router state only "
    'through [serve] state = "redis://..."; /metrics sums them. Env: CALLPROOF_SERVE_WORKERS.',
)
@click.option("--reuse-port", is_flag=True, hidden=True, help="Internal: a --workers worker.")
def serve(
    config_path: Path | None, host: str, port: int, tls: bool, workers: int, reuse_port: bool
) -> None:
    """Run the gateway: point unmodified SDKs at it and every call goes through a route.

    \b
    Bedrock clients use the printed URL as endpoint_url; OpenAI clients use URL + "/v1".
    HTTP/1.1 and HTTP/2 (h2c prior knowledge; ALPN h2 with --tls).
    Exit codes: 0 stopped (SIGTERM, Ctrl-C); 2 configuration error or the port is taken.
    """
    # lazy (see callproof.cli): the gateway brings starlette, the client and the router
    from callproof.gateway.config import check_bind, load_serve_config
    from callproof.gateway.server import GatewayServer
    from callproof.looplag import tuned_gc

    loaded = load_serve_config(config_path)
    if workers > 1:
        if tls:
            raise ConfigError(
                "--workers cannot use --tls (each worker would have its own throwaway CA); "
                "terminate TLS in front of the workers",
                where="--workers",
            )
        from callproof.gateway.workers import run_workers

        check_bind(loaded, host)
        args = ["--config", str(config_path)] if config_path is not None else []
        sys.exit(run_workers(workers, host=host, port=port, args=args, echo=click.echo))
    server = GatewayServer(loaded, host=host, port=port, tls=tls, reuse_port=reuse_port)

    def ready(gw: GatewayServer) -> None:
        click.echo(gw.url)
        sys.stdout.flush()
        details: list[str] = []
        gateway: Any = gw.gateway
        if gw.ca_path is not None:
            details.append(f"CA bundle {gw.ca_path}")
        if gw.emulator is not None:
            details.append(f"emulator {gw.emulator.url}")
        evidence = getattr(gw.app.state, "evidence_dir", None)
        if evidence is not None:
            details.append(f"evidence {evidence}")
        if gateway is not None:
            details.append("models " + ", ".join(gateway.model_ids()))
        click.echo("callproof serve: " + "; ".join(details), err=True)

    try:
        with tuned_gc():  # thousands of concurrent calls: shorter, rarer collector pauses
            server.run(on_ready=ready)
    except OSError as exc:
        raise ConfigError(f"cannot listen: {exc.strerror or exc}", where=f"{host}:{port}") from None
    click.echo("callproof serve: stopped", err=True)
