"""``callproof emulate``: serve the emulator on a local port until Ctrl-C.

Once listening it prints exactly one line on stdout, the base URL (``http://127.0.0.1:4010``),
and flushes, so scripts can read it; everything else goes to stderr.
"""

from __future__ import annotations

import ipaddress
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import click

from callproof.dialects import api_family, api_of_path
from callproof.errors import ConfigError

__all__ = ["emulate"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _replay_app(path: Path) -> Any:
    """The capture's replay, refusing requests of another wire API with a clear error in the
    requester's own format (a Bedrock capture served to an OpenAI client would otherwise
    surface as a confusing ``incomplete_stream``)."""
    import json

    from callproof.capture import read_capture
    from callproof.emulator.replay import replay_app

    captured = str(read_capture(path).meta.get("api") or "")
    inner = replay_app(path)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        wanted = api_of_path(str(scope.get("path") or "")) if scope["type"] == "http" else None
        if wanted is None or not captured or wanted == captured:
            await inner(scope, receive, send)
            return
        openai = api_family(wanted) == "openai"
        article = "an" if openai else "a"
        message = (
            f"callproof emulate --replay: {path.name} is a capture of {captured}; it cannot "
            f"answer {article} {wanted} request (replay it with a {captured} client, or "
            f"capture a {wanted} call)"
        )
        body: dict[str, Any]
        if openai:
            body = {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "code": "capture_api_mismatch",
                }
            }
            headers = [(b"content-type", b"application/json")]
        else:
            body = {"message": message}
            headers = [
                (b"content-type", b"application/json"),
                (b"x-amzn-errortype", b"ValidationException"),
            ]
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    return app


def _write_env_file(path: Path, url: str, ca_path: Path | None) -> None:
    """The test kit's variables, written atomically (a reader never sees half a file)."""
    from callproof.probe.rundir import write_text_atomic
    from callproof.testkit.env import emulator_env, env_file_text

    try:
        write_text_atomic(path, env_file_text(emulator_env(url, ca_path=ca_path)))
    except OSError as exc:
        problem = f"cannot write: {exc.strerror or exc}"
        raise ConfigError(problem, where=f"--env-file {path}") from None


@click.command()
@click.option(
    "--preset",
    default="seed",
    show_default=True,
    envvar="CALLPROOF_EMULATOR_PRESET",
    help="Models and default faults: seed, healthy or fast.",
)
@click.option(
    "--faults",
    "faults_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="CALLPROOF_EMULATOR_FAULTS",
    help="A TOML fault plan (docs/faults.md); replaces the preset's fault rules.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=4010,
    show_default=True,
    type=click.IntRange(0, 65535),
    envvar="CALLPROOF_EMULATOR_PORT",
    help="Port to bind; 0 picks a free one.",
)
@click.option(
    "--seed", type=int, envvar="CALLPROOF_EMULATOR_SEED", help="Seed for reproducible faults."
)
@click.option("--tls", is_flag=True, help="Serve HTTPS with a throwaway self-signed CA.")
@click.option(
    "--max-streams",
    default=2048,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    envvar="CALLPROOF_EMULATOR_MAX_STREAMS",
    help="Streams served at once; past it a request gets 429 (raise it for load tests).",
)
@click.option(
    "--replay",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Serve a capture back with its original timing instead of the scripted models.",
)
@click.option(
    "--env-file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Once listening, write KEY=value lines (AWS_ENDPOINT_URL_BEDROCK_RUNTIME, placeholder "
    "AWS credentials, AWS_REGION, OPENAI_BASE_URL, OPENAI_API_KEY) that point SDKs here.",
)
def emulate(
    preset: str,
    faults_file: Path | None,
    host: str,
    port: int,
    seed: int | None,
    tls: bool,
    max_streams: int,
    replay: Path | None,
    env_file: Path | None,
) -> None:
    """Run the local Bedrock Runtime + OpenAI-compatible emulator.

    Bedrock clients use the printed URL as endpoint_url; OpenAI clients use URL + "/v1".
    Force a fault on one request with the header "x-callproof-fault: NAME".
    """
    from callproof.emulator.server import EmulatorServer

    if replay is not None:
        app = _replay_app(replay)
    else:
        from callproof.emulator.app import create_app

        if faults_file is not None and not faults_file.is_file():
            raise ConfigError("no such file", where=f"--faults {faults_file}")
        from callproof.emulator.state import Limits
        from callproof.transport import raise_fd_limit

        raise_fd_limit(max_streams + 1024)  # a socket per stream, and some to spare
        app = create_app(
            preset=preset, faults=faults_file, seed=seed, limits=Limits(max_streams=max_streams)
        )
    server = EmulatorServer(app=app, host=host, port=port, tls=tls)
    try:
        server.start()
    except OSError as exc:
        raise ConfigError(f"cannot listen: {exc.strerror or exc}", where=f"{host}:{port}") from None

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if env_file is not None:
            _write_env_file(env_file, server.url, server.ca_path)
        click.echo(server.url)
        sys.stdout.flush()
        state = server.state
        details = [] if state is None else [f"preset {state.preset}", f"seed {state.seed}"]
        if replay is not None:
            details.append(f"replaying {replay}")
        if server.ca_path is not None:
            details.append(f"CA bundle {server.ca_path}")
        click.echo(f"callproof emulator: {', '.join(details)}; Ctrl-C stops it", err=True)
        if not _is_loopback(host):
            click.echo(f"warning: listening on {host}, reachable from other machines", err=True)
        server.wait()
    except KeyboardInterrupt:
        click.echo("callproof emulator: stopped", err=True)
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
