"""Suite-wide guards: no real network, isolated user data."""

from __future__ import annotations

import ipaddress
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.record_schema import checking_records


def pytest_configure(config: pytest.Config) -> None:
    """Child processes start with SIGINT's default action, however pytest was launched.

    A shell without job control starts ``make test &`` (nohup, CI wrappers) with SIGINT
    ignored, and an ignored signal stays ignored across ``exec``: every CLI the suite runs
    would then ignore the Ctrl-C its tests send (``emulate``, ``run``, ``run --every``), and
    those tests failed only because of how pytest was started."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address: Any) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if not _is_local(address):
        raise OSError(f"tests may only talk to loopback, not {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if not _is_local(address):
        raise OSError(f"tests may only talk to loopback, not {address!r}")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _block_real_network() -> Iterator[None]:
    """Any connection to a non-loopback address fails loudly."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True, scope="session")
def _records_follow_the_schema() -> Iterator[None]:
    """Every attempt record the suite writes validates against docs/attempt.schema.json."""
    with checking_records() as problems:
        yield
    assert not problems, f"records that do not follow docs/attempt.schema.json: {problems[:5]}"


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test gets its own data directory and no AWS/OpenAI credentials from the machine."""
    data_dir = tmp_path_factory.mktemp("callproof-data")
    monkeypatch.setenv("CALLPROOF_DATA_DIR", str(data_dir))
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_BEARER_TOKEN_BEDROCK",
        "OPENAI_API_KEY",
        "OPENROUTER_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(data_dir / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(data_dir / "aws-credentials"))
    return data_dir
