"""Reproducible runs: every run records its seed, and the same seed fails the same attempts at
any concurrency (fault draws keyed by seed, target, scenario and attempt)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callproof.cli import main
from callproof.probe.summary import read_records

__all__: list[str] = []

TOML = """\
[defaults]
n = 24
timeouts = {{ connect = 5.0, first_event = 1.5, idle = 1.5, deadline = 15.0 }}

[emulator]
preset = "fast"
faults = "faults.toml"

[providers.bedrock]
api = "bedrock-converse-stream"
endpoint = "emulator"
region = "us-east-1"

[providers.openrouter]
api = "openai-completions"
endpoint = "emulator"

[targets.kimi]
provider = "bedrock"
model = "moonshotai.kimi-k2.5"

[targets.or-kimi]
provider = "openrouter"
model = "moonshotai/kimi-k2.5"
"""
FAULTS = """\
[[rules]]
model = "*kimi*"
faults = [
  { fault = "http_error:429", probability = 0.2 },
  { fault = "stop_reason:content_filtered", probability = 0.15 },
  { fault = "hang_no_events", probability = 0.05 },
]
"""


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _failing(run_dir: Path) -> set[tuple[str, str, int, str]]:
    return {
        (r["target"], r["scenario"], r["attempt"], r["outcome"])
        for r in read_records(run_dir)
        if not r["passed"]
    }


def test_same_seed_same_failing_attempts_at_concurrency_1_and_16(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "faults.toml").write_text(FAULTS)
    config = tmp_path / "callproof.toml"
    config.write_text(TOML.format())
    failing = []
    for concurrency in ("1", "16", "16"):
        out = tmp_path / f"run-{concurrency}-{len(failing)}"
        code, _, err = run_cli(
            capsys,
            "run",
            "--config",
            str(config),
            "--no-history",
            "--seed",
            "424242",
            "--concurrency",
            concurrency,
            "--out",
            str(out),
        )
        assert code == 0, err
        failing.append(_failing(out))
        assert json.loads((out / "run.json").read_text())["plan"]["seed"] == 424242
    assert failing[0], "the plan should fail some attempts"
    assert failing[0] == failing[1] == failing[2]
    # another seed fails other attempts
    out = tmp_path / "run-other"
    code, _, err = run_cli(
        capsys, "run", "--config", str(config), "--no-history", "--seed", "7", "--out", str(out)
    )
    assert code == 0, err
    assert _failing(out) != failing[0]


def test_an_unseeded_run_records_the_seed_it_drew_and_rerun_repeats_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "faults.toml").write_text(FAULTS)
    config = tmp_path / "callproof.toml"
    config.write_text(TOML.format())
    first = tmp_path / "first"
    code, _, err = run_cli(
        capsys, "run", "--config", str(config), "--no-history", "--out", str(first)
    )
    assert code == 0, err
    meta = json.loads((first / "run.json").read_text())
    seed = meta["plan"]["seed"]
    assert isinstance(seed, int)
    assert meta["environment"]["emulator"]["seed"] == seed
    assert json.loads((first / "summary.json").read_text())["run"]["seed"] == seed
    again = tmp_path / "again"
    code, _, err = run_cli(
        capsys,
        "run",
        "--rerun",
        str(first),
        "--no-history",
        "--concurrency",
        "3",
        "--out",
        str(again),
    )
    assert code == 0, err
    assert json.loads((again / "run.json").read_text())["plan"]["seed"] == seed
    assert _failing(again) == _failing(first)
