"""Data integrity of a run: one writer per run directory, history in one transaction, atomic
reports, a full disk, every unwritable path a one-line error, unreachable targets exit 3.

Real processes where it matters: the concurrent-resume test runs ``python -m callproof run`` in
subprocesses and kills one with SIGKILL; the kill-between-transactions test ends a process with
``os._exit`` in the middle of the history write. The full-disk and read-only tests mount a
small tmpfs, so they need root (they say so and skip otherwise).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callproof.cli import main
from callproof.probe.store import HistoryStore
from callproof.probe.summary import read_records

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]

SLOW_TOML = """\
[defaults]
n = {n}
concurrency = 1
timeouts = {{ connect = 2.0, first_event = 3.0, idle = 2.0, deadline = 10.0 }}

[emulator]
preset = "fast"
seed = 3
faults = "faults.toml"

[providers.bedrock]
api = "bedrock-converse-stream"
endpoint = "emulator"
region = "us-east-1"

[targets.nova]
provider = "bedrock"
model = "amazon.nova-pro-v1:0"
"""
SLOW_FAULTS = '[[rules]]\nmodel = "*"\nfault = "latency:0.4"\nprobability = 1.0\n'


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["CALLPROOF_DATA_DIR"] = str(tmp_path / "data")
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


def _spawn(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "callproof", "run", "--no-history", *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _keys(run_dir: Path) -> list[tuple[str, str, int]]:
    return [(r["target"], r["scenario"], r["attempt"]) for r in read_records(run_dir)]


def _wait_for_records(path: Path, proc: subprocess.Popen[str], count: int = 1) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended early: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.1)
    pytest.fail("the run wrote no record in 90 s")


@pytest.mark.slow
def test_a_second_writer_fails_at_once_and_resumes_never_duplicate(tmp_path: Path) -> None:
    (tmp_path / "faults.toml").write_text(SLOW_FAULTS)
    (tmp_path / "callproof.toml").write_text(SLOW_TOML.format(n=30))
    run_dir = tmp_path / "run"
    first = _spawn(tmp_path, "--config", "callproof.toml", "--out", str(run_dir))
    try:
        _wait_for_records(run_dir / "results.jsonl", first)
        # a resume while the run is alive: refused at once, naming the writer's pid
        second = subprocess.run(
            [sys.executable, "-m", "callproof", "run", "--no-history", "--resume", str(run_dir)],
            cwd=tmp_path,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2, second.stderr
        assert f"is being written by process {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert first.poll() is None  # refused without waiting for the writer
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    # the killed writer left its lock file behind (stale: its pid is gone)
    assert (run_dir / ".callproof.lock").read_text().strip() == str(first.pid)
    before = _keys(run_dir)
    assert len(before) < 30

    # two resumes at once: one writes, the other fails at once; no key is ever doubled
    resumes = [
        _spawn(tmp_path, "--resume", str(run_dir)),
        _spawn(tmp_path, "--resume", str(run_dir)),
    ]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in resumes]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0, results
    for code, err in results:
        if code:
            assert code == 2, err
            assert re.search(r"is being written by (process \d+|another process)", err), err
    keys = _keys(run_dir)
    assert len(keys) == len(set(keys))
    if codes == [0, 0]:  # the second started after the first had finished: nothing to add
        assert len(keys) == 30
    assert sorted(keys) == sorted(("nova", "tool-result", i) for i in range(1, 31))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["totals"]["attempts"] == 30


def _seed_records(run_id: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "run_id": run_id,
            "seq": i,
            "target": "t",
            "scenario": "tool-result",
            "attempt": i,
            "outcome": "ok",
            "passed": True,
            "timings": {"total_s": 0.1},
        }
        for i in range(1, count + 1)
    ]


def test_a_kill_in_the_middle_of_the_history_write_leaves_no_half_run(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(ROOT / "src")!r})
        sys.path.insert(0, {str(ROOT)!r})
        from callproof.probe.store import HistoryStore
        from callproof.probe.summary import Aggregator
        from tests.probe.test_integrity import _seed_records

        records = _seed_records("run-killed", 1200)
        summary = Aggregator().add_all(records).summary()
        meta = {{"run_id": "run-killed", "started_at": "2026-12-01T10:00:00Z", "n": 1200}}

        def stream():
            for i, record in enumerate(records):
                if i == 700:
                    os._exit(9)  # killed between the run row and the last attempt rows
                yield record

        store = HistoryStore.open("sqlite:///{db}")
        store.record(meta, summary, stream())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 9, done.stderr
    with HistoryStore.open(f"sqlite:///{db}") as store:
        assert store.run("run-killed") is None
        assert list(store.attempts("run-killed")) == []
        assert [r["run_id"] for r in store.runs()] == []
        # written whole, it is there whole
        records = _seed_records("run-whole", 1200)
        from callproof.probe.summary import Aggregator

        summary = Aggregator().add_all(records).summary()
        store.record({"run_id": "run-whole", "n": 1200}, summary, iter(records))
        (row,) = store.runs()
        assert row["attempts"] == 1200


def test_reports_are_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from callproof.probe import rundir
    from callproof.probe.summary import Aggregator
    from callproof.report import write_reports

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    records = _seed_records("r", 3)
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = Aggregator().add_all(records).summary()
    (run_dir / "report.md").write_text("OLD")

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write_reports(run_dir, summary, {"run_id": "r"})
    assert (run_dir / "report.md").read_text() == "OLD"  # the old report, whole
    assert sorted(p.name for p in run_dir.iterdir()) == ["report.md", "results.jsonl"]
    monkeypatch.undo()
    write_reports(run_dir, summary, {"run_id": "r"})
    assert (run_dir / "report.md").read_text().startswith("# callproof evidence")
    assert not list(run_dir.glob("*.tmp"))
    assert not list(run_dir.glob(".*.tmp"))


def test_a_report_failure_never_skips_the_history_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    (out / "report.html").mkdir(parents=True)  # report.html cannot be written
    db = f"sqlite:///{tmp_path / 'h.db'}"
    code, _, err = run_cli(
        capsys,
        "run",
        "-n",
        "2",
        "--target",
        "bedrock-nova-pro",
        "--seed",
        "1",
        "--out",
        str(out),
        "--db",
        db,
    )
    assert code == 2
    assert err.strip().startswith("error: cannot write ")
    assert "report.html" in err
    assert "Traceback" not in err
    with HistoryStore.open(db) as store:
        (row,) = store.runs()
        assert row["attempts"] == 2


def test_unwritable_run_directory_capture_and_init_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    base = ("run", "-n", "1", "--target", "bedrock-kimi-k2.5", "--seed", "3", "--no-history")
    # --out under a file
    code, _, err = run_cli(capsys, *base, "--out", str(blocker / "run"))
    assert code == 2
    assert err.startswith(f"error: cannot write {blocker / 'run'}")
    assert len(err.strip().splitlines()) == 1
    # the default run directory's parent is a file
    monkeypatch.setenv("CALLPROOF_OUT", str(blocker / "runs"))
    code, _, err = run_cli(capsys, *base)
    assert code == 2
    assert "cannot write" in err
    assert "Traceback" not in err
    monkeypatch.delenv("CALLPROOF_OUT")
    # captures/ is a file: the first failing attempt cannot be captured
    out = tmp_path / "run-captures"
    out.mkdir()
    (out / "captures").write_text("not a directory")
    code, _, err = run_cli(capsys, *base, "-n", "3", "--capture-failures", "--out", str(out))
    assert code == 2, err
    assert "cannot write" in err
    assert "captures" in err
    assert "Traceback" not in err
    # init into a path under a file
    code, _, err = run_cli(capsys, "init", "--path", str(blocker / "callproof.toml"))
    assert code == 2
    assert err.startswith("error: init: cannot write ")
    assert "Traceback" not in err


@contextlib.contextmanager
def _tmpfs(path: Path, options: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_one_line_naming_the_path_and_how_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with _tmpfs(tmp_path / "disk", "size=64k") as disk:
        out = disk / "run"
        code, _, err = run_cli(
            capsys,
            "run",
            "-n",
            "20",
            "--seed",
            "5",
            "--no-history",
            "--capture-failures",
            "--out",
            str(out),
        )
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"error: cannot write {out}")
        assert "No space left on device" in lines[0]
        assert f"resume with: callproof run --resume {out}" in lines[0]
        assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
        # more room, then the resume finishes the run: every key once
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        code, _, err = run_cli(capsys, "run", "--no-history", "--resume", str(out))
        assert code == 0, err
        keys = _keys(out)
        assert len(keys) == len(set(keys)) == 100
        assert (out / "report.html").stat().st_size > 0


def test_a_read_only_filesystem_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _tmpfs(tmp_path / "ro", "size=64k,ro") as ro:
        code, _, err = run_cli(
            capsys,
            "run",
            "-n",
            "1",
            "--target",
            "bedrock-nova-pro",
            "--no-history",
            "--out",
            str(ro / "run"),
        )
        assert code == 2
        assert err.strip() == f"error: cannot write {ro / 'run'}: Read-only file system"
        code, _, err = run_cli(capsys, "init", "--path", str(ro / "callproof.toml"))
        assert code == 2
        assert "Read-only file system" in err
        assert "Traceback" not in err


def test_an_unreachable_target_is_called_out_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "callproof.toml"
    config.write_text(
        """\
[defaults]
n = 3
timeouts = { connect = 1.0, first_event = 2.0, idle = 1.0, deadline = 5.0 }
[emulator]
preset = "fast"
[providers.bedrock]
api = "bedrock-converse-stream"
endpoint = "emulator"
region = "us-east-1"
[providers.nowhere]
api = "openai-completions"
endpoint = "http://127.0.0.1:9/v1"
auth = { kind = "none" }
[targets.nova]
provider = "bedrock"
model = "amazon.nova-pro-v1:0"
[targets.gone]
provider = "nowhere"
model = "some/model"
"""
    )
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        capsys, "run", "--config", str(config), "--no-history", "--out", str(out)
    )
    assert code == 3, err
    assert "unreachable: gone · tool-result: no attempt got an answer (transport_error 3)" in err
    summary = json.loads((out / "summary.json").read_text())
    gone = next(e for e in summary["results"] if e["target"] == "gone")
    assert gone["unreachable"] is True
    nova = next(e for e in summary["results"] if e["target"] == "nova")
    assert nova["unreachable"] is False
    md = (out / "report.md").read_text()
    assert "gone was never reached: all 3 tool-result attempts" in md
    assert "gone was never reached" in stdout


def test_an_endpoint_with_user_info_runs_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 10, item 12: user info in an endpoint URL never crashes the reports."""
    config = tmp_path / "callproof.toml"
    config.write_text(
        """\
[defaults]
n = 2
timeouts = { connect = 1.0, first_event = 2.0, idle = 1.0, deadline = 5.0 }
[providers.secret]
api = "openai-completions"
endpoint = "http://alice:s3cr3t-pw@127.0.0.1:9/v1?api-key=k3y-in-query"
auth = { kind = "none" }
[targets.t]
provider = "secret"
model = "m"
"""
    )
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        capsys, "run", "--config", str(config), "--no-history", "--out", str(out)
    )
    assert code == 3, err  # nothing listens there: unreachable, but the reports are written
    assert "Traceback" not in err
    for name in ("report.md", "report.html", "run.json", "summary.json"):
        text = (out / name).read_text()
        assert "s3cr3t-pw" not in text, name
        assert "k3y-in-query" not in text, name
    code, _, err = run_cli(capsys, "report", str(out))
    assert code == 0, err
    assert "s3cr3t-pw" not in stdout


def test_report_into_an_unwritable_out_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'h.db'}"
    code, _, err = run_cli(
        capsys, "run", "-n", "1", "--target", "bedrock-nova-pro", "--seed", "1", "--db", db
    )
    assert code == 0, err
    with HistoryStore.open(db) as store:
        (row,) = store.runs(emulator=True)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "report", row["run_id"], "--db", db, "--out", str(blocker / "r"))
    assert code == 2
    assert err.startswith(f"error: cannot write {blocker / 'r'}")
    assert len(err.strip().splitlines()) == 1
