"""The history store: every run, per-target summaries and one row per attempt, in SQL.

SQLite by default, in ``history.db`` under the user data directory
(``platformdirs.user_data_dir("callproof")``, or ``$CALLPROOF_DATA_DIR`` when set); PostgreSQL
through the same interface with a ``postgresql://`` URL (psycopg 3, the ``postgres`` extra).
Accepted URLs::

    sqlite:////absolute/path/history.db     (SQLAlchemy's convention: four slashes = absolute)
    sqlite:///relative/history.db
    sqlite:///:memory:
    /some/path/history.db                   (a bare path is a SQLite file)
    postgresql://user:password@host:5432/dbname   (also postgres://, postgresql+psycopg://)

The schema is created and upgraded by :mod:`callproof.probe.migrations` on open. Because every
attempt is a row, reliability questions are one query away::

    SELECT target, outcome, count(*) FROM attempts GROUP BY target, outcome;
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from callproof import redact
from callproof.errors import ConfigError
from callproof.probe import migrations
from callproof.record import AttemptRecord
from callproof.redact import Redactor

__all__ = [
    "DB_FILENAME",
    "HistoryStore",
    "data_dir",
    "default_db_url",
    "is_emulator_run",
    "run_endpoints",
]

#: The SQLite file name inside the data directory.
DB_FILENAME = "history.db"
_BATCH = 500
_PG_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def data_dir() -> Path:
    """``$CALLPROOF_DATA_DIR`` when set, else the platform's user data directory."""
    override = os.environ.get("CALLPROOF_DATA_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("callproof"))


def default_db_url() -> str:
    """The SQLite URL of ``history.db`` in :func:`data_dir`."""
    return "sqlite:///" + str(data_dir() / DB_FILENAME)


def is_emulator_run(meta: dict[str, Any]) -> bool:
    """Whether the embedded emulator served the run (``run.json``'s environment says so)."""
    env = meta.get("environment")
    return bool(isinstance(env, dict) and env.get("emulator"))


def run_endpoints(meta: dict[str, Any]) -> list[str]:
    """The distinct endpoint URLs a run called (already redacted in ``run.json``; redacted
    again here), routes' members included, in first-seen order."""
    seen: dict[str, None] = {}

    def add(target: Any) -> None:
        if not isinstance(target, dict):
            return
        url = target.get("endpoint")
        if isinstance(url, str) and url:
            seen.setdefault(redact.redact_url(url))
        for member in target.get("members") or []:
            add(member)

    for target in meta.get("targets") or []:
        add(target)
    return list(seen)


def _emulator_clause(emulator: bool | None) -> tuple[str, tuple[Any, ...]]:
    if emulator is None:
        return "", ()
    return "WHERE COALESCE(r.emulator, 0) = ?", (1 if emulator else 0,)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _Connection:
    """A thin adapter: one placeholder style (``?``), rows as dicts, explicit transactions."""

    def __init__(self, raw: Any, dialect: str) -> None:
        self.raw = raw
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.raw.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self.dialect == "postgresql":
            with self.raw.cursor() as cur:
                cur.executemany(self._sql(sql), rows)
        else:
            self.raw.executemany(sql, rows)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        cursor = self.raw.execute(self._sql(sql), params)
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def begin(self) -> None:
        if self.dialect == "sqlite":
            self.raw.execute("BEGIN IMMEDIATE")
        # psycopg opens a transaction implicitly (autocommit off)

    def commit(self) -> None:
        self.raw.commit() if self.dialect == "postgresql" else self.raw.execute("COMMIT")

    def rollback(self) -> None:
        if self.dialect == "postgresql":
            self.raw.rollback()
        elif self.raw.in_transaction:
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()


def _open_sqlite(url: str) -> _Connection:
    if url.startswith("sqlite://"):
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
    else:
        path = url
    path = path or ":memory:"
    try:
        if path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            path = str(Path(path).expanduser())
        raw = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        if path != ":memory:":
            raw.execute("PRAGMA journal_mode=WAL")
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot open history database {url!r}: {exc}", where="--db") from exc
    return _Connection(raw, "sqlite")


def _open_postgres(url: str) -> _Connection:
    try:
        import psycopg
    except ImportError as exc:
        raise ConfigError(
            "a postgresql:// history database needs psycopg: pip install 'callproof[postgres]'",
            where="--db",
        ) from exc
    conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        raw = psycopg.connect(conninfo, autocommit=False, connect_timeout=10)
    except psycopg.Error as exc:
        raise ConfigError(
            f"cannot connect to history database: {exc}".strip(), where="--db"
        ) from exc
    return _Connection(raw, "postgresql")


class HistoryStore:
    """Runs, per-target summaries and attempts in SQLite or PostgreSQL.

    Open with :meth:`open`; use as a context manager or call :meth:`close`.
    """

    def __init__(self, conn: _Connection, url: str) -> None:
        self._db = conn
        #: The database URL for messages, its password removed.
        self.url = Redactor().url(url)

    @classmethod
    def open(cls, url: str | None = None) -> HistoryStore:
        """Open (creating and migrating when needed) the database at ``url``, or the default."""
        url = url or default_db_url()
        if url.startswith(_PG_SCHEMES):
            conn = _open_postgres(url)
        elif "://" in url and not url.startswith("sqlite://"):
            scheme = url.split("://", 1)[0]
            raise ConfigError(
                f"unsupported database URL scheme {scheme!r}: use sqlite:///PATH or "
                "postgresql://USER@HOST/DB",
                where="--db",
            )
        else:
            conn = _open_sqlite(url)
        store = cls(conn, url)
        store._migrate()
        return store

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._db.dialect

    def _migrate(self) -> None:
        self._db.begin()
        try:
            if self.dialect == "postgresql":
                # Two processes opening a fresh database must not both create the tables.
                self._db.execute("SELECT pg_advisory_xact_lock(7406104811)")
            migrations.migrate(self._db)
            self._db.commit()
        except BaseException:
            self._db.rollback()
            raise

    def migrations_applied(self) -> list[str]:
        """Names recorded in ``_migrations``."""
        rows = self._db.query("SELECT name FROM _migrations ORDER BY name")
        self._end_read()
        return [r["name"] for r in rows]

    def _end_read(self) -> None:
        if self.dialect == "postgresql":
            self._db.commit()

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------

    def record_run(self, meta: dict[str, Any], summary: dict[str, Any]) -> str:
        """Insert or replace one run and its per-target summaries; returns the run id."""
        return self.record(meta, summary, None)[0]

    def record(
        self,
        meta: dict[str, Any],
        summary: dict[str, Any],
        records: Iterable[dict[str, Any]] | None,
    ) -> tuple[str, int]:
        """Record a run, its summaries and (when given) its attempts in ONE transaction: a kill
        or a full disk leaves the run either wholly recorded or not at all, never a run that
        claims attempts with no attempt rows. Returns (run id, attempts read)."""
        self._db.begin()
        try:
            run_id = self._write_run(meta, summary)
            count = self._write_attempts(run_id, records) if records is not None else 0
            self._db.commit()
        except BaseException:
            self._db.rollback()
            raise
        return run_id, count

    def _write_run(self, meta: dict[str, Any], summary: dict[str, Any]) -> str:
        run_id = str(meta.get("run_id") or "")
        if not run_id:
            raise ValueError("meta has no run_id")
        # The history is shared: no password from --db, no secret a server reflected.
        meta, summary = redact.scrub_obj(meta), redact.scrub_obj(summary)
        argv = meta.get("argv")
        if isinstance(argv, list):
            argv = meta["argv"] = redact.redact_argv(argv)
        n = meta.get("n")
        self._db.execute(
            """
            INSERT INTO runs (run_id, started_at, finished_at, n, argv, config_path,
                              meta_json, summary_json, recorded_at, endpoints_json, emulator)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (run_id) DO UPDATE SET
                started_at = excluded.started_at, finished_at = excluded.finished_at,
                n = excluded.n, argv = excluded.argv, config_path = excluded.config_path,
                meta_json = excluded.meta_json, summary_json = excluded.summary_json,
                recorded_at = excluded.recorded_at, endpoints_json = excluded.endpoints_json,
                emulator = excluded.emulator
            """,
            (
                run_id,
                meta.get("started_at"),
                meta.get("finished_at"),
                int(n) if isinstance(n, int) else None,
                _json(argv) if argv is not None else None,
                str(meta["config"]) if meta.get("config") else meta.get("config_path"),
                _json(meta),
                _json(summary),
                datetime.now(UTC).isoformat(timespec="seconds"),
                _json(run_endpoints(meta)),
                1 if is_emulator_run(meta) else 0,
            ),
        )
        self._db.execute("DELETE FROM target_summaries WHERE run_id = ?", (run_id,))
        self._db.executemany(
            """
            INSERT INTO target_summaries (run_id, target, scenario, api, model, provider, n,
                passed, pass_rate, ci_low, ci_high, worst_failure, outcomes_json,
                p50_first_event_s, p50_total_s, requests_per_call)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [self._summary_row(run_id, e) for e in summary.get("results", [])],
        )
        return run_id

    @staticmethod
    def _summary_row(run_id: str, e: dict[str, Any]) -> tuple[Any, ...]:
        latency = e.get("latency_s") or {}
        ci = e.get("ci95") or [None, None]
        return (
            run_id,
            e["target"],
            e["scenario"],
            e.get("api"),
            e.get("model"),
            e.get("provider"),
            int(e["n"]),
            int(e["passed"]),
            float(e["pass_rate"]),
            _float(ci[0]),
            _float(ci[1]),
            e.get("worst_failure"),
            _json(e.get("outcomes") or {}),
            _float((latency.get("first_event") or {}).get("p50")),
            _float((latency.get("total") or {}).get("p50")),
            _float(e.get("requests_per_call")),
        )

    @staticmethod
    def _attempt_row(run_id: str, index: int, r: dict[str, Any]) -> tuple[Any, ...]:
        # the columns from the typed record; record_json is the JSON form as written
        rec = AttemptRecord.from_json(r)
        return (
            run_id,
            rec.seq if type(r.get("seq")) is int else index,
            rec.target,
            rec.scenario,
            rec.attempt if type(r.get("attempt")) is int else None,
            rec.api,
            rec.model,
            rec.provider,
            str(rec.outcome),
            1 if rec.passed else 0,
            rec.detail if r.get("detail") is not None else None,
            rec.stop_reason,
            rec.request_id,
            _float(rec.timings.headers_s),
            _float(rec.timings.first_event_s),
            _float(rec.timings.total_s),
            rec.requests,
            rec.started_at,
            _json(r),
        )

    def record_attempts(self, run_id: str, records: Iterable[dict[str, Any]]) -> int:
        """Insert one row per attempt (streamed in batches; re-recording is a no-op), in one
        transaction. Returns the number of records read."""
        self._db.begin()
        try:
            count = self._write_attempts(run_id, records)
            self._db.commit()
        except BaseException:
            self._db.rollback()
            raise
        return count

    def _write_attempts(self, run_id: str, records: Iterable[dict[str, Any]]) -> int:
        sql = """
            INSERT INTO attempts (run_id, seq, target, scenario, attempt, api, model, provider,
                outcome, passed, detail, stop_reason, request_id, headers_s, first_event_s,
                total_s, requests, started_at, record_json)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (run_id, seq) DO NOTHING
        """
        count = 0
        batch: list[tuple[Any, ...]] = []
        for record in records:
            count += 1
            batch.append(self._attempt_row(run_id, count, redact.scrub_obj(record)))
            if len(batch) >= _BATCH:
                self._db.executemany(sql, batch)
                batch = []
        self._db.executemany(sql, batch)
        return count

    # -- reading -----------------------------------------------------------------------------

    def runs(self, limit: int | None = None, emulator: bool | None = None) -> list[dict[str, Any]]:
        """Recorded runs, oldest first: run_id, started_at, finished_at, n, argv, attempts,
        endpoints (redacted) and emulator. ``emulator`` True/False keeps only the runs the
        embedded emulator served / only real ones; None keeps all."""
        clause, params = _emulator_clause(emulator)
        sql = f"""
            SELECT r.run_id, r.started_at, r.finished_at, r.n, r.argv, r.config_path,
                   r.endpoints_json, r.emulator,
                   (SELECT count(*) FROM attempts a WHERE a.run_id = r.run_id) AS attempts
            FROM runs r {clause} ORDER BY r.started_at, r.run_id
        """  # noqa: S608 - the clause is a fixed string; values are parameters
        rows = self._db.query(sql, params)
        self._end_read()
        for row in rows:
            row["argv"] = json.loads(row["argv"]) if row["argv"] else None
            row["endpoints"] = json.loads(row.pop("endpoints_json") or "[]")
            row["emulator"] = bool(row["emulator"])
        return rows[-limit:] if limit else rows

    def resolve_run_id(self, run_id: str) -> str | None:
        """The full id of ``run_id``, or of the one run whose id starts with it."""
        rows = self._db.query("SELECT run_id FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            pattern = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self._db.query(
                "SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\'", (pattern,)
            )
        self._end_read()
        return str(rows[0]["run_id"]) if len(rows) == 1 else None

    def run(self, run_id: str) -> dict[str, Any] | None:
        """``{"run_id", "meta", "summary", "started_at", "attempts"}`` of one run, or None.

        ``run_id`` may be a unique prefix.
        """
        full = self.resolve_run_id(run_id)
        if full is None:
            return None
        rows = self._db.query(
            """
            SELECT run_id, started_at, meta_json, summary_json,
                   (SELECT count(*) FROM attempts a WHERE a.run_id = runs.run_id) AS attempts
            FROM runs WHERE run_id = ?
            """,
            (full,),
        )
        self._end_read()
        row = rows[0]
        return {
            "run_id": row["run_id"],
            "started_at": row["started_at"],
            "meta": json.loads(row["meta_json"]),
            "summary": json.loads(row["summary_json"]) if row["summary_json"] else None,
            "attempts": int(row["attempts"]),
        }

    def attempts(self, run_id: str) -> Iterator[dict[str, Any]]:
        """The results records of one run in ``seq`` order, rebuilt from their rows."""
        last = -(2**62)
        while True:
            rows = self._db.query(
                "SELECT seq, record_json FROM attempts WHERE run_id = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (run_id, last, _BATCH),
            )
            self._end_read()
            for row in rows:
                yield json.loads(row["record_json"])
            if len(rows) < _BATCH:
                return
            last = int(rows[-1]["seq"])

    def pass_rates_over_time(
        self, target: str | None = None, scenario: str | None = None, emulator: bool | None = None
    ) -> list[dict[str, Any]]:
        """Per run and (target, scenario): n, passed, pass_rate, ci95, oldest run first
        (``emulator`` as for :meth:`runs`)."""
        where: list[str] = []
        params: list[Any] = []
        if emulator is not None:
            where.append("COALESCE(r.emulator, 0) = ?")
            params.append(1 if emulator else 0)
        if target is not None:
            where.append("s.target = ?")
            params.append(target)
        if scenario is not None:
            where.append("s.scenario = ?")
            params.append(scenario)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = self._db.query(
            f"""
            SELECT s.run_id, r.started_at, s.target, s.scenario, s.api, s.model, s.provider,
                   s.n, s.passed, s.pass_rate, s.ci_low, s.ci_high, s.worst_failure,
                   s.outcomes_json, s.p50_total_s, s.requests_per_call
            FROM target_summaries s JOIN runs r ON r.run_id = s.run_id
            {clause}
            ORDER BY r.started_at, s.run_id, s.target, s.scenario
            """,  # noqa: S608 - the clause is built from fixed strings; values are parameters
            tuple(params),
        )
        self._end_read()
        out = []
        for row in rows:
            outcomes = json.loads(row.pop("outcomes_json") or "{}")
            low, high = row.pop("ci_low"), row.pop("ci_high")
            row["ci95"] = [low, high]
            row["outcomes"] = outcomes
            row["n"] = int(row["n"])
            row["passed"] = int(row["passed"])
            out.append(row)
        return out

    def outcome_counts(self, target: str | None = None) -> dict[str, dict[str, int]]:
        """Across every recorded attempt: target -> outcome -> count."""
        sql = "SELECT target, outcome, count(*) AS c FROM attempts"
        params: tuple[Any, ...] = ()
        if target is not None:
            sql += " WHERE target = ?"
            params = (target,)
        rows = self._db.query(sql + " GROUP BY target, outcome ORDER BY target, outcome", params)
        self._end_read()
        out: dict[str, dict[str, int]] = {}
        for row in rows:
            out.setdefault(row["target"], {})[row["outcome"]] = int(row["c"])
        return out
