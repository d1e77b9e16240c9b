"""A throwaway PostgreSQL server for the history-store tests.

``pg_server`` (session) runs ``initdb`` + ``pg_ctl start`` in a temporary directory on a free
loopback port, with trust authentication and fsync off; ``pg_url`` (per test) creates a fresh
database on it. PostgreSQL refuses to run as root, so as root the server runs as the ``postgres``
system user (Debian's package creates it) through ``runuser``/``setpriv``. The tests skip, saying
why, only when no server binary exists (CI installs Debian's package, so they always run there).

Import the fixtures into a test module: ``from tests.probe.conftest_pg import pg_server, pg_url``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        real = Path(found).resolve().parent
        if (real / "pg_ctl").exists():
            return real
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user(argv: list[str], user: str | None) -> list[str]:
    if user is None:
        return argv
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *argv]
    if shutil.which("setpriv"):
        entry = pwd.getpwnam(user)
        return [
            "setpriv",
            f"--reuid={entry.pw_uid}",
            f"--regid={entry.pw_gid}",
            "--init-groups",
            *argv,
        ]
    return ["su", user, "-s", "/bin/sh", "-c", " ".join(argv)]


@dataclass
class PgServer:
    """A running throwaway server."""

    port: int
    admin_url: str

    def new_database(self) -> str:
        """Create an empty database and return its URL."""
        import psycopg

        name = "cp_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server on loopback for this test session (skips if no binary exists)."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binary (initdb/pg_ctl) on this machine")
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    user: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' system user to run the server as")
        user = "postgres"
    # Under /tmp (not pytest's 0700 tmp dir) so the server's user can reach it.
    base = Path(tempfile.mkdtemp(prefix="callproof-pg-"))
    data, sockets = base / "data", base / "sock"
    data.mkdir()
    sockets.mkdir()
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (base, data, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    pg_ctl = str(bin_dir / "pg_ctl")
    try:
        subprocess.run(
            _as_user(
                [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                 "-E", "UTF8", "--locale=C", "--no-sync"],
                user,
            ),
            check=True, capture_output=True, env=env, timeout=120, cwd=base,
        )  # fmt: skip
        options = (
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        subprocess.run(
            _as_user(
                [pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "server.log"),
                 "-w", "-t", "60", "start"],
                user,
            ),
            check=True, capture_output=True, env=env, timeout=90, cwd=base,
        )  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log = base / "server.log"
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        stderr = getattr(exc, "stderr", b"") or b""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(
            f"could not start PostgreSQL: {exc}\n{stderr.decode(errors='replace')}\n{detail}"
        )
    try:
        yield PgServer(port=port, admin_url=f"postgresql://postgres@127.0.0.1:{port}/postgres")
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(
                _as_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], user),
                capture_output=True, env=env, timeout=60, cwd=base,
            )  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, empty database on the session's server."""
    return pg_server.new_database()
