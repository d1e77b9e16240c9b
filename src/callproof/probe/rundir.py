"""A probe run's directory: its files, resuming from them, and the meta ``run.json`` holds.

The runner (:mod:`callproof.probe.runner`) schedules attempts; this module owns what is on
disk: where a run directory is made, the plan and finished keys a resume starts from (a torn
last line cut off first), atomic JSON writes, and the description of targets, scenarios and
environment written to ``run.json`` (endpoint URLs with their credentials removed).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import platform
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from callproof import redact
from callproof.dialects import get_dialect
from callproof.errors import CallproofError, ConfigError, RunDirLocked
from callproof.probe.config import RouteConfig
from callproof.probe.scenarios import ProbeScenario
from callproof.probe.summary import read_records
from callproof.record import AttemptRecord
from callproof.redact import Redactor
from callproof.targets import Target

__all__ = [
    "LOCK_FILE",
    "RESULTS",
    "Unit",
    "capture_name",
    "environment",
    "load_plan",
    "lock_run_dir",
    "new_run_dir",
    "now_utc",
    "request_bodies",
    "scan_existing",
    "scenario_meta",
    "target_meta",
    "write_json",
    "write_text_atomic",
]

#: The results file's name inside a run directory.
RESULTS = "results.jsonl"
#: The lock file of a run directory: held (``flock``) by the one process writing the run.
LOCK_FILE = ".callproof.lock"


_HELD: dict[str, tuple[int, int]] = {}  # resolved run dir -> (fd, depth), this process's locks


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_owner(path: Path, tries: int = 20) -> int | None:
    """The live pid in a held lock file. The holder writes its pid just after taking the lock,
    so a file still naming a dead writer (or empty) is read again for a moment."""
    for _ in range(tries):
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        if text.isdigit() and _pid_alive(int(text)):
            return int(text)
        time.sleep(0.01)
    return None


@contextlib.contextmanager
def lock_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's write lock for the block: one writer per run.

    The lock is an exclusive ``flock`` on :data:`LOCK_FILE`, which holds the writer's pid.
    A second writer (another ``--resume`` of the same directory, or a resume while the run is
    still alive) fails at once with :class:`RunDirLocked` naming that pid. The kernel drops a
    ``flock`` when its process dies, so a lock file left by a killed run (its pid gone) is
    stale and simply taken over. Re-entrant within one process (the CLI holds it across the
    run, the reports and the history write).
    """
    key = str(run_dir.resolve())
    held = _HELD.get(key)
    if held is not None:
        _HELD[key] = (held[0], held[1] + 1)
        try:
            yield
        finally:
            fd, depth = _HELD[key]
            _HELD[key] = (fd, depth - 1)
        return
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        owner = _lock_owner(path)
        who = f"process {owner}" if owner else "another process"
        raise RunDirLocked(
            f"{run_dir} is being written by {who} (lock {path}); wait for it to finish, "
            "or resume it once it has stopped"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _HELD[key] = (fd, 1)
        yield
    finally:
        _HELD.pop(key, None)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Unit:
    """What one results record's ``target`` names: a plain target, or a route (``route:NAME``)."""

    name: str
    target: Target | None = None
    route: RouteConfig | None = None
    members: tuple[Target, ...] = ()

    @property
    def api(self) -> str | None:
        return self.target.api if self.target else None

    @property
    def model(self) -> str | None:
        return self.target.model if self.target else None

    @property
    def provider(self) -> str | None:
        return self.target.provider if self.target else None


def _safe(name: str, limit: int = 48) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:limit].strip("._") or "x"


def capture_name(target: str, scenario: str, attempt: int) -> str:
    """The capture file name of one attempt: readable, and unique per exact (target, scenario,
    attempt). Names that sanitise alike (``kimi@bedrock`` and ``kimi_bedrock``, or non-Latin
    names) differ in the short hash of the exact pair, so one target's file is never another's:
    ``kimi_bedrock__tool-result__00007-3f2a9c1b0e.jsonl``."""
    digest = hashlib.sha256(f"{target}\0{scenario}".encode()).hexdigest()[:10]
    return f"{_safe(target)}__{_safe(scenario)}__{attempt:05d}-{digest}.jsonl"


def new_run_dir(base: Path) -> Path:
    """``base/<UTC timestamp>/``, made unique with a suffix when two runs share a second."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = base / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            continue
        return path
    raise ConfigError(f"cannot create a run directory under {base}")


def load_plan(run_dir: Path) -> dict[str, Any]:
    """The plan an interrupted run was started with (``run.json``'s ``plan``)."""
    meta_path = run_dir / "run.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"not a run directory (no run.json): {run_dir}", where="--resume"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {meta_path}: {exc}", where="--resume") from None
    plan = meta.get("plan")
    if not isinstance(plan, dict):
        raise ConfigError(f"{meta_path} holds no plan to resume", where="--resume")
    plan["run_id"] = meta.get("run_id")
    plan["started_at"] = meta.get("started_at")
    return plan


def scan_existing(
    path: Path, add: Callable[[AttemptRecord], None] | None = None
) -> tuple[set[tuple[str, str, int]], int]:
    """Keys already recorded and the highest seq, in one pass that also hands each record to
    ``add`` (the run's aggregator); a torn last line (a crash mid-write) is cut off first."""
    done: set[tuple[str, str, int]] = set()
    seq = 0
    if not path.exists():
        return done, seq
    with path.open("rb+") as fh:
        end = fh.seek(0, os.SEEK_END)
        if end:
            fh.seek(end - 1)
            if fh.read(1) != b"\n":
                fh.truncate(_last_line_end(fh, end))
    for line in read_records(path):
        record = AttemptRecord.from_json(line)
        done.add(record.key)
        seq = max(seq, record.seq)
        if add is not None:
            add(record)
    return done, seq


def _last_line_end(fh: BinaryIO, end: int, chunk: int = 1 << 16) -> int:
    """The offset just past the last newline before ``end`` (0 when none), read backwards in
    chunks so a large results file is never loaded whole."""
    pos = end
    while pos > 0:
        start = max(0, pos - chunk)
        fh.seek(start)
        found = fh.read(pos - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        pos = start
    return 0


def request_bodies(client: Any, units: Sequence[Unit], scenario: ProbeScenario) -> dict[str, Any]:
    """The exact first request body each target of the run is sent for ``scenario``."""
    bodies: dict[str, Any] = {}
    for unit in units:
        for target in (unit.target,) if unit.target else unit.members:
            if target.name in bodies:
                continue
            try:
                body = client.build(target, scenario.conversation).content
            except CallproofError:
                body = (
                    get_dialect(target.api)
                    .encode_request(target.model, scenario.conversation, extra=target.extra or None)
                    .body
                )
            try:
                bodies[target.name] = json.loads(body)
            except ValueError:
                bodies[target.name] = body.decode("utf-8", "replace")
    return bodies


def scenario_meta(client: Any, units: Sequence[Unit], s: ProbeScenario) -> dict[str, Any]:
    """``run.json``'s description of one scenario, with the exact body each target is sent."""
    return {
        "name": s.name,
        "description": s.description,
        "builtin": s.builtin,
        "min_tool_calls": s.min_tool_calls,
        "agent_loop": s.loop is not None,
        "expectation": {
            "text_regex": s.expectation.text_regex,
            "tool_name": s.expectation.tool_name,
            "arguments_schema": s.expectation.arguments_schema,
            "stop_reasons": list(s.expectation.stop_reasons or ()) or None,
        },
        "requests": request_bodies(client, units, s),
    }


def target_meta(unit: Unit) -> dict[str, Any]:
    def one(t: Target) -> dict[str, Any]:
        return {
            "name": t.name,
            "api": t.api,
            "model": t.model,
            "provider": t.provider,
            # run.json and the reports are shared: never a key from the URL's query or user info
            "endpoint": Redactor().url(t.endpoint.base_url),
            "region": t.endpoint.region,
            "auth": t.endpoint.auth.kind,
            "header_names": sorted(t.endpoint.headers),
            "extra": t.extra,
            "timeouts": {
                "connect": t.timeouts.connect,
                "first_event": t.timeouts.first_event,
                "idle": t.timeouts.idle,
                "deadline": t.timeouts.deadline,
            },
        }

    if unit.target is not None:
        return one(unit.target)
    assert unit.route is not None
    return {
        "name": unit.name,
        "route": unit.route.name,
        "api": None,
        "model": None,
        "provider": None,
        "endpoint": None,
        "members": [one(t) for t in unit.members],
        "policy": unit.route.policy,
    }


def environment(emulator: dict[str, Any] | None) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "callproof": v("callproof"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "httpx": v("httpx"),
        "botocore": v("botocore"),
        "emulator": emulator,
    }


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it and a rename, so a reader
    (or a crash, or a full disk) sees the old file or the new one, never half of one. The
    temporary file is removed when the write fails; the ``OSError`` propagates."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = redact.scrub(text)  # run.json, summary.json, the reports: no secret the process knows
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
