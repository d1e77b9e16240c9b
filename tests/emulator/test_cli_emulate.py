"""``callproof emulate`` as a user runs it: a subprocess on port 0."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import FIRST_TURN


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "callproof", "emulate", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_url(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith(("http://127.0.0.1:", "https://127.0.0.1:")), line
    return line


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_emulate_prints_its_url_serves_and_stops_cleanly(sig: signal.Signals) -> None:
    process = start("--preset", "fast", "--seed", "5")
    try:
        url = read_url(process)
        response = httpx.post(
            f"{url}/model/amazon.nova-pro-v1%3A0/converse",
            json={"messages": FIRST_TURN},
            timeout=5,
        )
        assert response.status_code == 200
        assert response.json()["stopReason"] == "end_turn"
        process.send_signal(sig)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode in (0, 130)
    assert out == ""  # exactly one stdout line, already read
    assert "Traceback" not in err
    assert "seed 5" in err


def test_emulate_tls_serves_https() -> None:
    process = start("--preset", "fast", "--tls")
    try:
        url = read_url(process)
        assert url.startswith("https://")
        assert process.stderr is not None
        info = process.stderr.readline()
        ca = info.split("CA bundle ")[1].split(";")[0]
        response = httpx.post(
            f"{url}/model/amazon.nova-pro-v1%3A0/converse",
            json={"messages": FIRST_TURN},
            timeout=5,
            verify=ssl.create_default_context(cafile=ca),
        )
        assert response.status_code == 200
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert "Traceback" not in err


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callproof", "emulate", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_bad_faults_file_is_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text('[[rules]]\nfault = "hang_forever"\n')
    result = run("--port", "0", "--faults", str(plan))
    assert result.returncode == 2
    assert "unknown fault 'hang_forever'" in result.stderr
    assert str(plan) in result.stderr
    assert "Traceback" not in result.stderr
    missing = run("--port", "0", "--faults", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr


def test_unknown_preset_and_busy_port_are_exit_2(tmp_path: Path) -> None:
    result = run("--port", "0", "--preset", "nope")
    assert result.returncode == 2
    assert "unknown preset 'nope'" in result.stderr
    process = start("--preset", "fast")
    try:
        port = read_url(process).rsplit(":", 1)[1]
        busy = run("--port", port, "--preset", "fast")
        assert busy.returncode == 2
        assert "cannot listen" in busy.stderr
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)


def test_faults_file_is_used(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text('seed = 1\n[[rules]]\nmodel = "amazon.*"\nfault = "http_error:503"\n')
    process = start("--preset", "fast", "--faults", str(plan))
    try:
        url = read_url(process)
        response = httpx.post(
            f"{url}/model/amazon.nova-pro-v1%3A0/converse", json={"messages": FIRST_TURN}, timeout=5
        )
        assert response.status_code == 503
        assert response.headers["x-amzn-errortype"].startswith("ServiceUnavailableException")
        assert json.loads(response.text) == {
            "message": "Bedrock is unable to process your request."
        }
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)


def test_replay_serves_a_capture_back(tmp_path: Path) -> None:
    import base64

    body = b"recorded bytes"
    capture = tmp_path / "capture.jsonl"
    lines = [
        {"type": "meta", "format": "callproof-capture", "version": 1, "api": "bedrock-converse"},
        {
            "type": "request",
            "t": 0.0,
            "method": "POST",
            "url": "http://x/",
            "headers": [],
            "body": "",
        },
        {
            "type": "response",
            "t": 0.01,
            "status": 200,
            "headers": [["content-type", "application/json"]],
        },
        {"type": "chunk", "t": 0.02, "b64": base64.b64encode(body).decode()},
        {"type": "end", "t": 0.03, "eof": True, "error": None},
    ]
    capture.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    process = start("--replay", str(capture))
    try:
        url = read_url(process)
        response = httpx.post(f"{url}/anything", json={}, timeout=5)
        assert response.status_code == 200
        assert response.content == body
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    assert "Traceback" not in err
    bad = run("--port", "0", "--replay", str(tmp_path / "missing.jsonl"))
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
