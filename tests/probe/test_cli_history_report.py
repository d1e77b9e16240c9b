"""``callproof history`` and ``callproof report`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callproof.cli import main
from callproof.cli.history import sparkline
from callproof.probe.store import HistoryStore
from callproof.probe.summary import Aggregator
from tests.probe.synthetic import route_records, seed_meta, seed_records, write_run


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def record_runs(db: str | None, tmp_path: Path) -> Path:
    """Two runs in the database; the first also as a run directory."""
    run_dir = tmp_path / "first"
    with HistoryStore.open(db) as store:
        for run_id, day, healed in (("run-one", "10", False), ("run-two", "11", True)):
            records = list(seed_records(run_id=run_id))  # Kimi on Bedrock: 6/10
            for r in records:
                if healed:
                    r.update(outcome="ok", passed=True)
            records += route_records(run_id=run_id)
            meta = {**seed_meta(run_id), "started_at": f"2026-02-{day}T10:00:00+00:00"}
            summary = Aggregator().add_all(records).summary()
            store.record_run(meta, summary)
            store.record_attempts(run_id, records)
            if run_id == "run-one":
                write_run(run_dir, records, meta)
    return run_dir


def test_history_empty(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_cli(["history", "--db", f"sqlite:///{tmp_path / 'h.db'}"], capsys)
    assert code == 0
    assert "no real runs recorded" in out


def test_history_table_and_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path / 'h.db'}"
    record_runs(db, tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(["history", "--db", db], capsys)
    assert code == 0
    assert "Pass rate over time · tool-result" in out
    assert "run-one" in out
    assert "run-two" in out
    assert "60% (6/10)" in out
    assert "100% (10/10)" in out
    assert "▅█" in out  # Kimi's trend: 60% then 100%
    code, out, _ = run_cli(
        ["history", "--db", db, "--target", "bedrock-kimi-k2.5", "--json"], capsys
    )
    assert code == 0
    rows = json.loads(out)
    assert [(r["run_id"], r["passed"], r["n"]) for r in rows] == [
        ("run-one", 6, 10),
        ("run-two", 10, 10),
    ]
    # The database URL can come from the environment, as for `callproof run`.
    monkeypatch.setenv("CALLPROOF_DB", db)
    code, out, _ = run_cli(["history", "--json", "--limit", "1"], capsys)
    assert {r["run_id"] for r in json.loads(out)} == {"run-two"}


def test_history_on_a_narrow_terminal_never_wraps_a_cell(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path / 'h.db'}"
    record_runs(db, tmp_path)
    monkeypatch.setenv("COLUMNS", "50")
    code, out, _ = run_cli(["history", "--db", db], capsys)
    assert code == 0
    assert "run-two" in out  # the latest run is always shown
    assert "run-one" not in out
    assert "(1 older run not shown at this width" in out
    assert "60% (6/10)" not in out  # run-one's Kimi cell is not shown...
    assert "100% (10/10)" in out  # ...and run-two's cells are whole


def test_history_default_database_is_in_the_data_dir(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLPROOF_DATA_DIR", str(tmp_path / "data"))
    record_runs(None, tmp_path)
    code, out, _ = run_cli(["history", "--json"], capsys)
    assert code == 0
    assert len(json.loads(out)) == 8
    assert (tmp_path / "data" / "history.db").exists()


def test_history_bad_db_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["history", "--db", "mysql://x/y"], capsys)
    assert code == 2
    assert "unsupported database URL scheme" in err
    assert "Traceback" not in err + out


def test_report_from_a_run_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run_dir = record_runs(f"sqlite:///{tmp_path / 'h.db'}", tmp_path)
    (run_dir / "summary.json").write_text(json.dumps({"results": [], "gate": {"kept": True}}))
    code, out, _ = run_cli(["report", str(run_dir), "-q"], capsys)
    assert code == 0
    assert str(run_dir / "report.md") in out
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "Passed: 6/10 (60%)" in md
    assert (run_dir / "report.html").exists()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["gate"] == {"kept": True}  # the runner's keys survive
    assert summary["results"][0]["target"] == "bedrock-kimi-k2.5"
    code, out, _ = run_cli(["report", str(run_dir), "--json"], capsys)
    assert json.loads(out)["totals"]["attempts"] == 40


def test_report_from_the_database(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path / 'h.db'}"
    record_runs(db, tmp_path)
    out_dir = tmp_path / "rebuilt"
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(["report", "run-tw", "--db", db, "--out", str(out_dir)], capsys)
    assert code == 0, out
    assert "Pass rate per target" in out
    md = (out_dir / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# callproof evidence: no failures observed")
    assert "**Run:** `run-two`" in md
    assert len((out_dir / "results.jsonl").read_text().splitlines()) == 40
    assert json.loads((out_dir / "run.json").read_text())["run_id"] == "run-two"
    # Default output directory: callproof-runs/<run id>/ under the working directory.
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_cli(["report", "run-one", "--db", db, "-q"], capsys)
    assert code == 0
    rebuilt = (tmp_path / "callproof-runs" / "run-one" / "report.md").read_text(encoding="utf-8")
    assert "Failed: 4/10 (40% STALL_NO_EVENTS)" in rebuilt


def test_report_from_the_database_brings_captures_along(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'h.db'}"
    original = tmp_path / "original"
    (original / "captures").mkdir(parents=True)
    (original / "captures" / "k1.jsonl").write_text('{"type": "end", "eof": false}\n')
    records = list(seed_records(run_id="cap-run"))
    records[0]["capture"] = "captures/k1.jsonl"
    summary = Aggregator().add_all(records).summary()
    summary["run"] = {"run_id": "cap-run", "run_dir": str(original)}
    with HistoryStore.open(db) as store:
        store.record_run(seed_meta("cap-run"), summary)
        store.record_attempts("cap-run", records)
    out_dir = tmp_path / "rebuilt"
    code, _, _ = run_cli(["report", "cap-run", "--db", db, "--out", str(out_dir), "-q"], capsys)
    assert code == 0
    md = (out_dir / "report.md").read_text(encoding="utf-8")
    assert "capture `captures/k1.jsonl`" in md
    assert '{"type": "end", "eof": false}' in md


def test_report_of_nothing_is_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'h.db'}"
    code, out, err = run_cli(["report", "no-such-run", "--db", db], capsys)
    assert code == 2
    assert "neither a run directory nor a run id" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(["report", str(empty)], capsys)
    assert code == 2
    assert "holds no results.jsonl" in err
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    code, _, err = run_cli(["report", str(a_file)], capsys)
    assert code == 2
    assert "is a file" in err
    assert "Traceback" not in err + out


def test_sparkline() -> None:
    assert sparkline([0.0, 0.5, 1.0]) == "▁▅█"
    assert sparkline([]) == ""


def test_names_and_paths_with_brackets_print_literally(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # rich reads "[/x]" as a closing tag; printed unescaped it raises MarkupError
    db = f"sqlite:///{tmp_path / 'h.db'}"
    code, out, err = run_cli(["history", "--db", db, "--target", "odd[/x]"], capsys)
    assert (code, err) == (0, "")
    assert "no real runs recorded for odd[/x]" in out
    run_dir = record_runs(db, tmp_path / "runs [/x]")
    code, out, err = run_cli(["report", str(run_dir), "-q"], capsys)
    assert code == 0, err
    assert str(run_dir / "report.md") in out.replace("\n", "")


def test_history_keeps_emulator_runs_apart_from_real_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``make run`` (the emulator quickstart) never shows among real runs; --emulator shows it.
    Each run records its endpoints, redacted."""
    db = f"sqlite:///{tmp_path / 'h.db'}"
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(
        ["run", "-n", "1", "--target", "bedrock-nova-pro", "--seed", "1", "--db", db], capsys
    )
    assert code == 0, err
    with HistoryStore.open(db) as store:
        real = {**seed_meta("run-real"), "started_at": "2026-02-10T10:00:00+00:00"}
        real["targets"] = [
            {"name": "bedrock-kimi-k2.5", "endpoint": "https://u:pw@bedrock.example/?sig=abc"}
        ]
        records = list(seed_records(run_id="run-real"))
        store.record(real, Aggregator().add_all(records).summary(), iter(records))
        runs = {r["run_id"]: r for r in store.runs()}
        assert len(runs) == 2
        (emulated,) = store.runs(emulator=True)
        assert emulated["emulator"] is True
        assert emulated["endpoints"]
        assert all(e.startswith("http://127.0.0.1:") for e in emulated["endpoints"])
        (only_real,) = store.runs(emulator=False)
        assert only_real["run_id"] == "run-real"
        assert only_real["endpoints"] == ["https://REDACTED@bedrock.example/?sig=[REDACTED]"]
    code, out, _ = run_cli(["history", "--db", db, "--json"], capsys)
    assert code == 0
    assert {r["run_id"] for r in json.loads(out)} == {"run-real"}
    code, out, _ = run_cli(["history", "--db", db, "--json", "--emulator"], capsys)
    assert {r["run_id"] for r in json.loads(out)} == {emulated["run_id"]}
    code, out, _ = run_cli(["history", "--db", db, "--target", "bedrock-nova-pro"], capsys)
    assert "no real runs recorded for bedrock-nova-pro" in out
    assert "(1 emulator runs: with --emulator)" in out
