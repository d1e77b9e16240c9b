"""The history store on SQLite and on a real PostgreSQL server (started per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from callproof.errors import ConfigError
from callproof.probe import migrations
from callproof.probe.store import DB_FILENAME, HistoryStore, data_dir, default_db_url
from callproof.probe.summary import Aggregator
from tests.probe.conftest_pg import pg_server, pg_url  # noqa: F401 - fixtures
from tests.probe.synthetic import record, route_records, seed_meta, seed_records


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def _record_seed_run(store: HistoryStore, run_id: str, started_at: str, fails: int = 4) -> None:
    records = []
    for i, r in enumerate(seed_records(run_id=run_id)):
        if r["target"] == "bedrock-kimi-k2.5":
            ok = r["attempt"] > fails
            r.update(outcome="ok" if ok else "stall_no_events", passed=ok)
        records.append(r)
        assert r["seq"] == i + 1
    records += route_records(run_id=run_id)
    meta = {**seed_meta(run_id), "started_at": started_at}
    summary = Aggregator().add_all(records).summary()
    store.record_run(meta, summary)
    assert store.record_attempts(run_id, iter(records)) == len(records)


def test_migrations_applied_once_and_recorded(db_url: str) -> None:
    with HistoryStore.open(db_url) as store:
        assert store.migrations_applied() == [fn.__name__ for fn in migrations.MIGRATIONS]
    with HistoryStore.open(db_url) as store:
        # Opening again applies nothing new and records nothing twice.
        assert migrations.migrate(store._db) == []
        store._db.commit() if store.dialect == "postgresql" else None
        assert store.migrations_applied() == ["m001_initial", "m002_run_endpoints"]
        rows = store._db.query("SELECT count(*) AS c FROM _migrations")
        assert int(rows[0]["c"]) == 2


def test_record_and_query_runs(db_url: str) -> None:
    with HistoryStore.open(db_url) as store:
        _record_seed_run(store, "run-aaa111", "2026-02-10T10:00:00+00:00", fails=4)
        _record_seed_run(store, "run-bbb222", "2026-02-11T10:00:00+00:00", fails=1)
        _record_seed_run(store, "run-ccc333", "2026-02-12T10:00:00+00:00", fails=0)
        runs = store.runs()
        assert [r["run_id"] for r in runs] == ["run-aaa111", "run-bbb222", "run-ccc333"]
        assert runs[0]["attempts"] == 40
        assert runs[0]["argv"] == ["callproof", "run", "-n", "10"]
        assert [r["run_id"] for r in store.runs(limit=1)] == ["run-ccc333"]

        kimi = store.pass_rates_over_time("bedrock-kimi-k2.5")
        assert [(r["run_id"], r["passed"], r["n"]) for r in kimi] == [
            ("run-aaa111", 6, 10),
            ("run-bbb222", 9, 10),
            ("run-ccc333", 10, 10),
        ]
        assert kimi[0]["pass_rate"] == pytest.approx(0.6)
        assert [round(v, 4) for v in kimi[0]["ci95"]] == [0.3127, 0.8318]
        assert kimi[0]["outcomes"] == {"ok": 6, "stall_no_events": 4}
        assert kimi[0]["worst_failure"] == "stall_no_events"
        assert len(store.pass_rates_over_time()) == 12  # 3 runs x 4 entries
        assert store.pass_rates_over_time("nobody") == []
        route = store.pass_rates_over_time("route:kimi", scenario="tool-result")
        assert route[0]["requests_per_call"] == pytest.approx(1.3)

        counts = store.outcome_counts("bedrock-kimi-k2.5")
        assert counts == {"bedrock-kimi-k2.5": {"ok": 25, "stall_no_events": 5}}


def test_attempts_rebuild_the_records(db_url: str) -> None:
    records = [record("t", i, seq=i, run_id="big-run") for i in range(1, 1201)]
    with HistoryStore.open(db_url) as store:
        store.record_run({"run_id": "big-run", "started_at": "2026-02-10T10:00:00Z"}, {})
        store.record_attempts("big-run", records)
        # Recording the same attempts again changes nothing.
        store.record_attempts("big-run", records[:10])
        back = list(store.attempts("big-run"))  # crosses several pages of 500
        assert back == records
        found = store.run("big")  # a unique prefix
        assert found is not None
        assert found["run_id"] == "big-run"
        assert found["attempts"] == 1200
        assert found["summary"] == {}
        assert store.run("missing") is None


def test_record_run_is_an_upsert(db_url: str) -> None:
    with HistoryStore.open(db_url) as store:
        meta = seed_meta("again")
        first = Aggregator().add_all(seed_records("again")).summary()
        store.record_run(meta, first)
        store.record_run({**meta, "finished_at": "later"}, first)
        assert len(store.runs()) == 1
        assert len(store.pass_rates_over_time()) == 3
        found = store.run("again")
        assert found is not None
        assert found["meta"]["finished_at"] == "later"
        assert found["summary"]["results"][0]["target"] == "bedrock-kimi-k2.5"
        with pytest.raises(ValueError, match="run_id"):
            store.record_run({}, first)


def test_prefix_must_be_unique(tmp_path: Path) -> None:
    with HistoryStore.open(str(tmp_path / "h.db")) as store:  # a bare path is SQLite
        for run_id in ("abc1", "abc2"):
            store.record_run({"run_id": run_id}, {"results": []})
        assert store.resolve_run_id("abc") is None
        assert store.resolve_run_id("abc2") == "abc2"
        assert store.run("a_c1") is None  # LIKE wildcards are escaped
    assert (tmp_path / "h.db").exists()


def test_default_url_follows_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLPROOF_DATA_DIR", str(tmp_path / "data"))
    assert data_dir() == tmp_path / "data"
    assert default_db_url() == f"sqlite:///{tmp_path / 'data' / DB_FILENAME}"
    with HistoryStore.open(None) as store:
        assert store.dialect == "sqlite"
        store.record_run({"run_id": "r"}, {"results": []})
    assert (tmp_path / "data" / DB_FILENAME).exists()
    monkeypatch.delenv("CALLPROOF_DATA_DIR")
    assert "callproof" in str(data_dir())


def test_memory_database() -> None:
    with HistoryStore.open("sqlite:///:memory:") as store:
        store.record_run({"run_id": "m"}, {"results": []})
        assert [r["run_id"] for r in store.runs()] == ["m"]


def test_bad_urls_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unsupported database URL scheme 'mysql'"):
        HistoryStore.open("mysql://localhost/db")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot open history database"):
        HistoryStore.open(f"sqlite:///{blocker}/sub/h.db")


@pytest.mark.postgres
def test_unreachable_postgres_is_a_config_error(pg_server: object) -> None:  # noqa: F811
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match="cannot connect to history database"):
        HistoryStore.open(f"postgresql://postgres@127.0.0.1:{port}/nope?connect_timeout=2")


def test_the_url_a_store_shows_in_messages_has_no_password(tmp_path: Path) -> None:
    # `callproof history` and `callproof report RUN_ID` print store.url
    with HistoryStore.open(f"sqlite:///{tmp_path / 'h.db'}") as opened:
        store = HistoryStore(opened._db, "postgresql://probe:hunter2-secret@db.example:5432/h")
        assert "hunter2-secret" not in store.url
        assert store.url.endswith("@db.example:5432/h")
