"""``callproof emulate --env-file``: the variables, and a Node test (node:test, the AWS SDK for
JavaScript v3 locked in tests/node) that uses them unmodified."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from callproof.testkit.env import ENV_VARS

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "tests" / "node" / "node_modules"
EXAMPLE = Path(__file__).with_name("examples") / "node" / "bedrock.test.mjs"


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines())
    return dict(pairs)


def test_env_file_is_written_once_listening(tmp_path: Path) -> None:
    env_file = tmp_path / "sub" / ".callproof.env"
    env_file.parent.mkdir()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "callproof",
            "emulate",
            "--port",
            "0",
            "--preset",
            "fast",
            "--env-file",
            str(env_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        env = _read_env(env_file)  # already there when the URL is printed
        assert list(env) == list(ENV_VARS)
        assert env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == url
        assert env["OPENAI_BASE_URL"] == url + "/v1"
        assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
        # an unmodified boto3 client with only these variables reaches it
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        script = (
            "import boto3; c = boto3.client('bedrock-runtime'); "
            "print(c.converse(modelId='amazon.nova-pro-v1:0', messages=[{'role': 'user', "
            "'content': [{'text': 'hi'}]}])['stopReason'])"
        )
        out = subprocess.run(
            [sys.executable, "-c", script],
            env={**clean, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert out.stdout.strip() == "end_turn"
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_unwritable_env_file_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "callproof",
            "emulate",
            "--port",
            "0",
            "--env-file",
            str(blocker / "env"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--env-file" in out.stderr
    assert "Traceback" not in out.stderr


def test_node_example_with_the_aws_sdk_for_javascript(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None or not NODE_MODULES.is_dir():
        pytest.fail("needs node and tests/node/node_modules (npm ci --prefix tests/node)")
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(EXAMPLE, work / EXAMPLE.name)
    (work / "node_modules").symlink_to(NODE_MODULES)
    callproof = Path(sys.executable).with_name("callproof")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OPENAI_"))}
    out = subprocess.run(
        [node, "--test", EXAMPLE.name],
        cwd=work,
        env={**clean, "CALLPROOF": str(callproof), "NODE_NO_WARNINGS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "# pass 2" in out.stdout
    assert "# fail 0" in out.stdout
