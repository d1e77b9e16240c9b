"""``callproof run`` and ``callproof init`` as a user calls them: exit codes, files, stdout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from callproof.cli import main
from callproof.cli.run import parse_fraction
from tests.probe.conftest import MakeConfig

SEED_ENTRIES = [
    "bedrock-kimi-k2.5",
    "bedrock-mistral-large-3",
    "bedrock-nova-pro",
    "openrouter-kimi-k2.5",
    "route:kimi",
]
ROOT = Path(__file__).resolve().parents[2]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_default_run_probes_the_seeds_matrix_on_the_embedded_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    code, out, err = run_cli(capsys, "run", "--seed", "11")
    assert code == 0, err
    assert time.monotonic() - started < 30  # seconds, not minutes
    (run_dir,) = (tmp_path / "callproof-runs").iterdir()
    for name in ("results.jsonl", "summary.json", "run.json", "report.md", "report.html"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [e["target"] for e in summary["results"]] == SEED_ENTRIES
    assert {e["scenario"] for e in summary["results"]} == {"tool-result"}
    assert all(e["n"] == 10 for e in summary["results"])
    healthy = [e for e in summary["results"] if e["target"] not in ("bedrock-kimi-k2.5",)]
    assert all(e["passed"] == 10 for e in healthy), [(e["target"], e["outcomes"]) for e in healthy]
    kimi = summary["results"][0]
    assert set(kimi["outcomes"]) <= {"ok", "stall_no_events"}
    assert len((run_dir / "results.jsonl").read_text().splitlines()) == 50
    # the seeds' form on the terminal
    assert "Test  1: " in out
    assert "Passed: 10/10 (100%)" in out
    assert "route:kimi" in out
    # and the run is in the history database under CALLPROOF_DATA_DIR
    from callproof.probe.store import HistoryStore

    with HistoryStore.open(None) as store:
        assert [r["run_id"] for r in store.runs()] == [summary["run"]["run_id"]]


def test_history_location_failures_warn_but_an_explicit_db_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    monkeypatch.setenv("CALLPROOF_DATA_DIR", str(blocker / "data"))
    args = ("run", "-n", "1", "--target", "bedrock-nova-pro", "--seed", "1")
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "warning: no history database" in err
    assert len(list((tmp_path / "callproof-runs").iterdir())) == 1
    code, _, err = run_cli(capsys, *args, "--db", f"sqlite:///{blocker}/data/x.db")
    assert code == 2
    assert "--db" in err
    assert "Traceback" not in err


def test_json_prints_summary_only(
    make_config: MakeConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(n=3)
    code, out, _ = run_cli(
        capsys,
        "run",
        "--config",
        str(config),
        "--json",
        "--no-history",
        "--out",
        str(tmp_path / "r"),
    )
    assert code == 0
    data = json.loads(out)
    assert data == json.loads((tmp_path / "r" / "summary.json").read_text())
    assert len(data["results"]) == 4
    for entry in data["results"]:
        for key in (
            "target",
            "scenario",
            "n",
            "passed",
            "pass_rate",
            "ci95",
            "outcomes",
            "latency_s",
            "compound",
        ):
            assert key in entry, key
        assert len(entry["ci95"]) == 2
    assert isinstance(data["comparisons"], list)


def test_selection_flags_and_env_mirrors(
    make_config: MakeConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CALLPROOF_CONFIG", str(make_config(n=2)))
    monkeypatch.setenv("CALLPROOF_OUT", str(tmp_path / "envout"))
    monkeypatch.setenv("CALLPROOF_DB", f"sqlite:///{tmp_path / 'h.db'}")
    code, out, err = run_cli(
        capsys, "run", "--json", "--target", "nova", "--route", "pair",
        "--scenario", "tool-call", "--scenario", "tool-result", "-n", "2",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert sorted((e["target"], e["scenario"]) for e in data["results"]) == [
        ("nova", "tool-call"), ("nova", "tool-result"),
        ("route:pair", "tool-call"), ("route:pair", "tool-result"),
    ]  # fmt: skip
    assert (tmp_path / "envout" / "report.md").is_file()
    assert (tmp_path / "h.db").is_file()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--fail-under", "0.9"], 1),
        (["--fail-under", "90"], 1),
        (["--fail-under", "40%"], 0),
        (["--fail-under", "0"], 0),
        ([], 0),
    ],
)
def test_fail_under_exit_codes(
    make_config: MakeConfig,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    expected: int,
) -> None:
    config = make_config(
        n=4,
        faults=(
            '[[rules]]\nmodel = "amazon.nova-pro-v1:0"\nfault = "http_error:500"\n'
            "probability = 0.5\n"
        ),
    )
    code, out, err = run_cli(
        capsys, "run", "--config", str(config), "--no-history", "--json", "--seed", "1",
        "--out", str(tmp_path / "r"), "--target", "nova", *args,
    )  # fmt: skip
    data = json.loads(out)
    rate = data["results"][0]["pass_rate"]
    assert 0 < rate < 0.9, rate  # the seed gives a mix of failures and passes
    assert code == expected, (rate, err)
    if expected:
        assert "gate:" in err
        assert data["gate"]["passed"] is False


def test_gate_lower_compares_the_wilson_lower_bound(
    make_config: MakeConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(n=3)
    common = ["run", "--config", str(config), "--no-history", "--target", "nova", "--json"]
    code, _, _ = run_cli(capsys, *common, "--out", str(tmp_path / "a"), "--fail-under", "0.9")
    assert code == 0  # 3/3 passed
    code, _, err = run_cli(
        capsys, *common, "--out", str(tmp_path / "b"), "--fail-under", "0.9", "--gate", "lower"
    )
    assert code == 1  # but 3 attempts cannot prove 90%: Wilson's lower bound is ~44%
    assert "lower bound" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "missing.toml"], "not found"),
        (["--target", "nope"], "unknown target 'nope'"),
        (["--scenario", "nope"], "unknown scenario 'nope'"),
        (["--route", "nope"], "unknown route 'nope'"),
        (["--fail-under", "abc"], "not a number"),
        (["-n", "0"], "-n"),
        (["--resume", "nowhere"], "run.json"),
    ],
)
def test_usage_and_config_errors_exit_2_without_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "run", "--no-history", *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out
    assert not (tmp_path / "callproof-runs").exists()  # refused before anything was made


def test_bad_config_key_names_key_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "callproof.toml"
    path.write_text('[defaults]\nn = 5\n\n[providers.p]\napi = "openai-completions"\nretries = 3\n')
    code, _, err = run_cli(capsys, "run", "--config", str(path))
    assert code == 2
    assert f"{path}:6: providers.p.retries: unknown key" in err
    assert "Traceback" not in err


def test_init_writes_an_example_that_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "init")
    assert code == 0
    text = (tmp_path / "callproof.toml").read_text()
    assert text.startswith("# callproof.toml")
    code, _, err = run_cli(capsys, "init")
    assert code == 2
    assert "--force" in err
    assert (tmp_path / "callproof.toml").read_text() == text
    (tmp_path / "callproof.toml").write_text("junk")
    assert run_cli(capsys, "init", "--force")[0] == 0
    assert (tmp_path / "callproof.toml").read_text() == text
    code, out, err = run_cli(
        capsys, "run", "--json", "--no-history", "-n", "1", "--scenario", "weather-after-result",
        "--target", "bedrock-nova-pro", "--out", str(tmp_path / "r"),
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["results"][0]["scenario"] == "weather-after-result"


def test_parse_fraction() -> None:
    assert parse_fraction("0.9") == pytest.approx(0.9)
    assert parse_fraction("90") == pytest.approx(0.9)
    assert parse_fraction("90%") == pytest.approx(0.9)
    assert parse_fraction("1") == 1.0
    assert parse_fraction("0.5%") == pytest.approx(0.005)


def _spawn(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "callproof", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for_lines(path: Path, count: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_bytes().splitlines()) >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.stderr.read() if proc.stderr else ''!r}")
        time.sleep(0.05)
    raise AssertionError("no progress")


def _slow_config(make_config: MakeConfig) -> Path:
    return make_config(
        n=30,
        faults='[[rules]]\nmodel = "*"\nfault = "latency:0.15"\n',
        extra="",
    )


def _env(tmp_path: Path) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)  # for nothing but consistency with the test run
    env["CALLPROOF_DATA_DIR"] = str(tmp_path / "data")
    return env


@pytest.mark.slow
def test_resume_after_a_killed_run_loses_nothing(
    make_config: MakeConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _slow_config(make_config)
    out = tmp_path / "run"
    args = ["run", "--config", str(config), "--out", str(out), "--target", "nova",
            "--target", "mistral", "--concurrency", "4", "--no-history"]  # fmt: skip
    proc = _spawn(args, _env(tmp_path), tmp_path)
    _wait_for_lines(out / "results.jsonl", 8, proc)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait(10)
    before = (out / "results.jsonl").read_bytes().splitlines()
    assert 8 <= len(before) < 60
    code, _, err = run_cli(capsys, "run", "--resume", str(out), "--no-history", "--json")
    assert code == 0, err
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    keys = [(r["target"], r["scenario"], r["attempt"]) for r in records]
    assert len(keys) == len(set(keys)) == 60  # every key once: nothing lost, nothing redone
    assert {k[2] for k in keys} == set(range(1, 31))
    assert (out / "results.jsonl").read_bytes().splitlines()[: len(before) - 1] == before[:-1]
    summary = json.loads((out / "summary.json").read_text())
    assert sum(e["n"] for e in summary["results"]) == 60
    assert (out / "report.md").is_file()


@pytest.mark.slow
def test_ctrl_c_exits_130_and_still_writes_the_reports(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    config = _slow_config(make_config)
    out = tmp_path / "run"
    args = ["run", "--config", str(config), "--out", str(out), "--target", "nova",
            "--concurrency", "2", "--no-history"]  # fmt: skip
    proc = _spawn(args, _env(tmp_path), tmp_path)
    _wait_for_lines(out / "results.jsonl", 4, proc)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(20)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert code == 130, err
    assert "Traceback" not in err
    assert "--resume" in err
    summary = json.loads((out / "summary.json").read_text())
    lines = (out / "results.jsonl").read_text().splitlines()
    assert summary["results"][0]["n"] == len(lines) < 30
    assert summary["run"]["interrupted"] is True
    assert (out / "report.md").is_file()
    assert (out / "report.html").is_file()


def test_missing_credentials_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "callproof.toml"
    path.write_text(
        '[providers.p]\napi = "openai-completions"\nendpoint = "http://127.0.0.1:9/v1"\n'
        'auth = { kind = "bearer", env = "CALLPROOF_TEST_NO_SUCH_KEY" }\n'
        '[targets.t]\nprovider = "p"\nmodel = "m"\n'
    )
    code, _, err = run_cli(
        capsys,
        "run",
        "--config",
        str(path),
        "--no-history",
        "-n",
        "2",
        "--out",
        str(tmp_path / "r"),
    )
    assert code == 2
    assert "CALLPROOF_TEST_NO_SUCH_KEY" in err
    assert "Traceback" not in err


def test_bad_db_url_is_refused_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "run", "--db", "mongodb://x/y", "-n", "1")
    assert code == 2
    assert "mongodb" in err
    assert not (tmp_path / "callproof-runs").exists()


def test_progress_bar_counts_failures() -> None:
    from callproof.cli.run import _Progress

    progress = _Progress()
    progress.start_total(3)
    progress.advance({"passed": True})
    progress.advance({"passed": False})
    progress.stop()
    task = progress.progress.tasks[0]
    assert (task.total, task.completed, task.fields["failed"]) == (3, 2, 1)


def test_agent_config_json_runs_against_the_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from callproof.emulator import EmulatorServer

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("EMU_API_KEY", "test-key")
    with EmulatorServer(preset="fast") as server:
        agent = {
            "models": {
                "providers": {
                    "emu": {
                        "baseUrl": server.url + "/v1",
                        "api": "openai-completions",
                        "models": [{"id": "moonshotai/kimi-k2.5", "name": "Kimi K2.5"}],
                    },
                    "bedrock": {
                        "baseUrl": server.url,
                        "api": "bedrock-converse-stream",
                        "region": "us-east-1",
                        "models": [{"id": "amazon.nova-pro-v1:0", "name": "Nova Pro"}],
                    },
                }
            }
        }
        path = tmp_path / "agent.json"
        path.write_text(json.dumps(agent))
        code, out, err = run_cli(
            capsys, "run", "--config", str(path), "--json", "--no-history", "-n", "2",
            "--out", str(tmp_path / "r"),
        )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert {(e["target"], e["passed"]) for e in data["results"]} == {
        ("emu-kimi-k2.5", 2),
        ("bedrock-nova-pro", 2),
    }


def test_names_and_paths_are_printed_literally_not_as_markup(
    make_config: MakeConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # rich reads "[/x]" as a closing tag: printed unescaped it raises after the run finished
    config = make_config(n=1)
    out = tmp_path / "runs [/x]"
    code, stdout, err = run_cli(
        capsys, "run", "--config", str(config), "--no-history", "--out", str(out),
        "--target", "nova",
    )  # fmt: skip
    assert code == 0, err
    assert "Traceback" not in err
    assert f"Run directory: {out}" in stdout.replace("\n", "")
