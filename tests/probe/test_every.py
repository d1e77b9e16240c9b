"""``callproof run --every``: one run per period, each its own directory and history row, until
interrupted (issue 13: keeping the history behind ``order = "measured"`` fresh)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.probe.conftest import MakeConfig


def _run_dirs(out: Path) -> list[Path]:
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if (p / "summary.json").is_file())


def test_every_repeats_into_new_directories_until_interrupted(
    tmp_path: Path, make_config: MakeConfig
) -> None:
    config = make_config(n=1)
    out = tmp_path / "runs"
    env = dict(os.environ, CALLPROOF_DATA_DIR=str(tmp_path / "data"))
    db = tmp_path / "history.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "callproof",
            "run",
            "--config",
            str(config),
            "--every",
            "1s",
            "--out",
            str(out),
            "--db",
            f"sqlite:///{db}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90  # generous: two short runs on a loaded machine
        # three directories: the first two runs have then finished their history writes too
        # (a run writes summary.json before its history row; SIGINT may land in between)
        while len(_run_dirs(out)) < 3 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        assert len(_run_dirs(out)) >= 3
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"run ended with exit code 0" in err
    first, second = _run_dirs(out)[:2]
    assert first != second
    for run_dir in (first, second):
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["results"], run_dir
    from callproof.probe.store import HistoryStore

    store = HistoryStore.open(f"sqlite:///{db}")
    try:
        runs = store.runs()
    finally:
        store.close()
    assert len(runs) >= 2  # each run is its own history row
    assert len({r["run_id"] for r in runs}) == len(runs)


def test_every_refuses_a_bad_duration_and_resume(tmp_path: Path, make_config: MakeConfig) -> None:
    config = make_config(n=1)
    for args, needle in (
        (["--every", "soon"], "--every"),
        (["--every", "0"], "--every"),
        (["--every", "1m", "--resume", str(tmp_path)], "--resume"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "callproof", "run", "--config", str(config), *args],
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
            env=dict(os.environ, CALLPROOF_DATA_DIR=str(tmp_path / "data")),
            check=False,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert needle.encode() in done.stderr
        assert b"Traceback" not in done.stderr


@pytest.mark.parametrize("text", ["15m", "900", "2h"])
def test_every_durations(text: str) -> None:
    from callproof.resilience.measured import parse_duration

    assert parse_duration(text, where="--every") in (900.0, 7200.0)
