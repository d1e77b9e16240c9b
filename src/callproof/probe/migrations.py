"""Schema migrations of the history database, recorded in a ``_migrations`` table.

Each migration is a function registered with :func:`migration`, applied once, in order, and
recorded by name (the habit of simonw/llm's ``migrations.py``): adding a column later means
appending a function, never editing an old one. The SQL is the subset SQLite and PostgreSQL share
(TEXT, INTEGER, DOUBLE PRECISION, composite primary keys), so one list serves both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

__all__ = [
    "MIGRATIONS",
    "Executor",
    "applied",
    "m001_initial",
    "m002_run_endpoints",
    "migrate",
    "migration",
]


class Executor(Protocol):
    """What a migration needs from a database connection."""

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None: ...

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]: ...


Migration = Callable[[Executor], None]

#: Every migration, in the order it is applied.
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration; its ``__name__`` is what gets recorded."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: Executor) -> None:
    db.execute(
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            started_at TEXT,
            finished_at TEXT,
            n INTEGER,
            argv TEXT,
            config_path TEXT,
            meta_json TEXT NOT NULL,
            summary_json TEXT,
            recorded_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE target_summaries (
            run_id TEXT NOT NULL,
            target TEXT NOT NULL,
            scenario TEXT NOT NULL,
            api TEXT,
            model TEXT,
            provider TEXT,
            n INTEGER NOT NULL,
            passed INTEGER NOT NULL,
            pass_rate DOUBLE PRECISION NOT NULL,
            ci_low DOUBLE PRECISION,
            ci_high DOUBLE PRECISION,
            worst_failure TEXT,
            outcomes_json TEXT,
            p50_first_event_s DOUBLE PRECISION,
            p50_total_s DOUBLE PRECISION,
            requests_per_call DOUBLE PRECISION,
            PRIMARY KEY (run_id, target, scenario)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE attempts (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            target TEXT NOT NULL,
            scenario TEXT NOT NULL,
            attempt INTEGER,
            api TEXT,
            model TEXT,
            provider TEXT,
            outcome TEXT NOT NULL,
            passed INTEGER NOT NULL,
            detail TEXT,
            stop_reason TEXT,
            request_id TEXT,
            headers_s DOUBLE PRECISION,
            first_event_s DOUBLE PRECISION,
            total_s DOUBLE PRECISION,
            requests INTEGER,
            started_at TEXT,
            record_json TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        )
        """
    )
    db.execute("CREATE INDEX attempts_by_target ON attempts (target, scenario, outcome)")
    db.execute("CREATE INDEX summaries_by_target ON target_summaries (target, scenario)")


@migration
def m002_run_endpoints(db: Executor) -> None:
    """Each run's endpoints (redacted, JSON) and whether the embedded emulator served it, so
    ``history`` can keep emulator runs apart from real ones. Rows recorded before this
    migration are classified from their meta (``environment.emulator``)."""
    db.execute("ALTER TABLE runs ADD COLUMN endpoints_json TEXT")
    db.execute("ALTER TABLE runs ADD COLUMN emulator INTEGER")
    for row in db.query("SELECT run_id, meta_json FROM runs"):
        try:
            meta = json.loads(row["meta_json"])
        except ValueError:
            continue
        env = meta.get("environment") if isinstance(meta, dict) else None
        emulated = bool(isinstance(env, dict) and env.get("emulator"))
        db.execute("UPDATE runs SET emulator = ? WHERE run_id = ?", (int(emulated), row["run_id"]))


def applied(db: Executor) -> list[str]:
    """Names of the migrations already applied (creates ``_migrations`` when missing)."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    return [row["name"] for row in db.query("SELECT name FROM _migrations ORDER BY name")]


def migrate(db: Executor) -> list[str]:
    """Apply every migration not yet recorded; returns the names applied now."""
    done = set(applied(db))
    now_applied = []
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        fn(db)
        db.execute(
            "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
            (fn.__name__, datetime.now(UTC).isoformat(timespec="seconds")),
        )
        now_applied.append(fn.__name__)
    return now_applied
