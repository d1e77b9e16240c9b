"""Fixtures for the interop suite: the real emulator on loopback (HTTP/1.1 + HTTP/2, cleartext
and TLS) and a runner for the Node scripts in ``tests/interop/node`` (their packages are locked
in ``tests/node``; ``make test`` and ``make interop`` run ``npm ci`` there)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from callproof.emulator import EmulatorServer
from callproof.emulator.faults import FaultPlan
from tests.noderun import run_node

NODE_DIR = Path(__file__).parent / "node"
NODE_MODULES = Path(__file__).parent.parent / "node" / "node_modules"

NodeRunner = Callable[..., dict[str, Any]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.interop)


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    """The seed's models, no latency; faults only where a request forces one."""
    with EmulatorServer(preset="fast", seed=3) as server:
        yield server


#: OpenAI-flavoured models the seed preset lacks: a reasoning model (o4-mini, which the Vercel
#: AI SDK treats as one: reasoning items, item_reference on step 2) and a plain one.
OPENAI_MODELS = FaultPlan.from_mapping(
    {
        "models": [
            {"id": "o4-mini", "flavour": "openai", "thinking": True, "first_event_s": 0,
             "tokens_per_s": 0},
            {"id": "gpt-4o", "flavour": "openai", "first_event_s": 0, "tokens_per_s": 0},
        ]
    }
)  # fmt: skip


@pytest.fixture(scope="session")
def openai_emulator() -> Iterator[EmulatorServer]:
    """The seed's models (incl. OpenRouter-flavoured Kimi) plus o4-mini and gpt-4o."""
    with EmulatorServer(preset="fast", faults=OPENAI_MODELS, seed=3) as server:
        yield server


@pytest.fixture(scope="session")
def tls_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(preset="fast", seed=3, tls=True) as server:
        yield server


@pytest.fixture(scope="session")
def node() -> NodeRunner:
    """``node(script, url, spec, ca=None) -> dict``: run one Node script, parse its JSON line."""
    binary = shutil.which("node")
    if binary is None or not NODE_MODULES.is_dir():
        pytest.fail(
            "the interop suite needs Node 20+ and the locked packages: "
            "npm ci --prefix tests/node (make interop does it)"
        )

    def run(script: str, url: str, spec: dict[str, Any], ca: Path | None = None) -> dict[str, Any]:
        return run_node(binary, NODE_DIR / script, url, spec, ca=ca, timeout=90)

    return run
