"""Fixtures for the gateway tests: the real gateway (``GatewayServer``, hypercorn) on a free
loopback port with the emulator behind it, and unmodified SDK clients pointed at it.

Faults come from the emulator: ``x-callproof-fault`` on a client request is forwarded to the
gateway's first upstream attempts (one name per attempt), and ``[emulator] faults`` plans
apply to every request of a model.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from callproof.gateway.config import load_serve_config
from callproof.gateway.server import GatewayServer
from tests.noderun import run_node

NODE_DIR = Path(__file__).parent / "node"
NODE_MODULES = Path(__file__).parent.parent / "node" / "node_modules"

#: The conduct tests' configuration: the seed's models with no latency and no fault of their
#: own (preset fast), Kimi on Bedrock first and on OpenRouter second, short clocks.
FAST_TOML = """\
[defaults]
timeouts = {{ connect = 2.0, first_event = {first_event}, idle = {idle}, deadline = 20.0 }}

[emulator]
preset = "fast"
{emulator_extra}

[providers.bedrock]
api = "bedrock-converse-stream"
endpoint = "emulator"

[providers.openrouter]
api = "openai-completions"
endpoint = "emulator"

[targets."bedrock-kimi-k2.5"]
provider = "bedrock"
model = "moonshotai.kimi-k2.5"

[targets."openrouter-kimi-k2.5"]
provider = "openrouter"
model = "moonshotai/kimi-k2.5"

[routes.kimi]
targets = ["bedrock-kimi-k2.5", "openrouter-kimi-k2.5"]
hedge = "off"
watchdog = {{ mode = "fixed" }}
backoff = {{ initial_s = 0.05, max_s = 0.2 }}
{route_extra}

[serve]
evidence = "{evidence}"
{serve_extra}

[serve.models]
"moonshotai.kimi-k2.5" = "route:kimi"
"moonshotai/kimi-k2.5" = "route:kimi"

{extra}
"""


def fast_toml(
    evidence: Path | str,
    *,
    route_extra: str = "",
    serve_extra: str = "",
    emulator_extra: str = "",
    extra: str = "",
    first_event: float = 2.0,
    idle: float = 1.0,
) -> str:
    """:data:`FAST_TOML` filled in (the gateway, scale and shutdown tests share it)."""
    return FAST_TOML.format(
        route_extra=route_extra,
        emulator_extra=emulator_extra,
        serve_extra=serve_extra,
        evidence=Path(evidence).as_posix(),
        extra=extra,
        first_event=first_event,
        idle=idle,
    )


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
OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
RESPONSES_TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]

GatewayFactory = Callable[..., GatewayServer]


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[GatewayFactory]:
    """``make_gateway(route_extra=, emulator_extra=, serve_extra=, extra=, plan=, idle=,
    first_event=, toml=)``: a started gateway over FAST_TOML (or ``toml``; ``extra`` is
    appended, ``plan`` is a fault plan for the emulator); stopped at the end of the test."""
    started: list[GatewayServer] = []

    def make(
        *,
        toml: str | None = None,
        route_extra: str = "",
        emulator_extra: str = "",
        serve_extra: str = "",
        extra: str = "",
        plan: str | None = None,
        idle: float = 1.0,
        first_event: float = 2.0,
        **server: Any,
    ) -> GatewayServer:
        evidence = tmp_path / f"evidence-{len(started)}"
        if plan is not None:
            plan_path = tmp_path / f"plan-{len(started)}.toml"
            plan_path.write_text(plan, encoding="utf-8")
            emulator_extra += f'\nfaults = "{plan_path.as_posix()}"'
        text = toml or fast_toml(
            evidence,
            route_extra=route_extra,
            emulator_extra=emulator_extra,
            serve_extra=serve_extra,
            extra=extra,
            idle=idle,
            first_event=first_event,
        )
        path = tmp_path / f"callproof-{len(started)}.toml"
        path.write_text(text, encoding="utf-8")
        gw = GatewayServer(load_serve_config(path), **server).start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


@pytest.fixture
def gateway(make_gateway: GatewayFactory) -> GatewayServer:
    return make_gateway()


def bedrock_client(
    url: str, *, fault: str | None = None, mode: str | None = None, **kw: Any
) -> Any:
    """An unmodified boto3 bedrock-runtime client; ``fault``/``mode`` add the test headers
    through botocore's own event hooks (no SDK object is faked)."""
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=kw.pop("akid", "AKIDEXAMPLE"),
        aws_secret_access_key=kw.pop("secret", "test-secret"),
        config=BotoConfig(
            retries={"max_attempts": 1, "mode": "standard"},
            read_timeout=60,
            connect_timeout=5,
        ),
    )
    headers = {}
    if fault:
        headers["x-callproof-fault"] = fault
    if mode:
        headers["x-callproof-mode"] = mode
    if headers:

        def add(request: Any, **_: Any) -> None:
            for k, v in headers.items():
                request.headers[k] = v

        client.meta.events.register("before-sign.bedrock-runtime.*", add)
    return client


def read_evidence(gw: GatewayServer, at_least: int = 1) -> list[dict[str, Any]]:
    """The gateway's evidence records, once there are ``at_least`` (a streamed call is recorded
    just after its last bytes went out, so a client may finish first)."""
    directory = gw.app.state.evidence_dir
    path = Path(directory) / "results.jsonl"
    deadline = time.monotonic() + 30
    while True:
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        if len(lines) >= at_least or time.monotonic() > deadline:
            return [json.loads(line) for line in lines if line]
        time.sleep(0.02)


NodeRunner = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def node() -> NodeRunner:
    """``node(script, url, spec, ca=None) -> dict``: run a Node script, parse its JSON line."""
    binary = shutil.which("node")
    if binary is None:
        pytest.skip("node is not installed: the Node client tests need Node 20+")
    if not NODE_MODULES.is_dir():
        pytest.fail("the Node packages are not installed: npm ci --prefix tests/node")

    def run(script: str, url: str, spec: dict[str, Any], ca: Path | None = None) -> dict[str, Any]:
        return run_node(binary, NODE_DIR / script, url, spec, ca=ca, timeout=120)

    return run


@pytest.fixture
def fake_provider() -> Iterator[str]:
    """The fake OpenAI-compatible provider (tests/gateway/fake_provider.py): its base URL."""
    from callproof.http_server import HTTPServer
    from tests.gateway.fake_provider import fake_provider_app

    with HTTPServer(fake_provider_app()) as server:
        yield server.url
