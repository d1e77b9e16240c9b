"""``callproof call`` and ``callproof replay``: the JSON contract, exit codes, usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from callproof.cli import cli

KEYS = {
    "outcome",
    "stop_reason",
    "raw_stop_reason",
    "text",
    "thinking",
    "tool_calls",
    "usage",
    "timings",
    "error",
    "request_id",
    "first_content_s",
    "served_by",
    "attempts",
}
TIMING_KEYS = {"headers_s", "first_event_s", "first_content_s", "total_s", "max_gap_s"}


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def call_nova(emulator: Any, *args: str) -> Any:
    """``callproof call`` to the emulator's Nova Pro over ConverseStream, unsigned."""
    return invoke(
        "call",
        "--api",
        "bedrock-converse-stream",
        "--model",
        "amazon.nova-pro-v1:0",
        "--endpoint",
        emulator.url,
        "--auth",
        "none",
        *args,
    )


def as_json(result: Any) -> dict[str, Any]:
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout  # exactly one JSON object
    data: dict[str, Any] = json.loads(lines[0])
    assert set(data) == KEYS
    assert set(data["timings"]) == TIMING_KEYS
    return data


def test_call_json_ok_against_the_embedded_emulator() -> None:
    result = invoke(
        "call", "--api", "bedrock-converse-stream", "--model", "amazon.nova-pro-v1:0", "--json"
    )
    data = as_json(result)
    assert result.exit_code == 0, result.output
    assert data["outcome"] == "ok"
    assert data["stop_reason"] == "end_turn"
    assert "22" in data["text"]
    assert data["error"] is None
    assert data["timings"]["first_event_s"] > 0


def test_call_json_tool_call_scenario(emulator: Any) -> None:
    result = invoke(
        "call",
        "--api",
        "openai-completions",
        "--model",
        "moonshotai/kimi-k2.5",
        "--endpoint",
        emulator.url + "/v1",
        "--scenario",
        "tool-call",
        "--json",
    )
    data = as_json(result)
    assert result.exit_code == 0
    assert data["stop_reason"] == "tool_use"
    (tc,) = data["tool_calls"]
    assert tc["name"] == "get_weather"
    assert tc["arguments"] == {"city": "Tokyo"}
    assert tc["id"]


def test_call_json_failure_outcome_exits_1(emulator: Any) -> None:
    result = invoke(
        "call",
        "--api",
        "bedrock-converse-stream",
        "--model",
        "moonshotai.kimi-k2.5",
        "--first-event-timeout",
        "0.3",
        "--json",
        "--fault",
        "hang_no_events",
        env={"CALLPROOF_ENDPOINT": emulator.url},
    )
    data = as_json(result)
    assert result.exit_code == 1
    assert data["outcome"] == "stall_no_events"
    assert data["error"]["kind"] == "StallNoEvents"
    assert set(data["error"]) == {"kind", "type", "message", "status"}
    assert data["timings"]["headers_s"] is not None
    assert data["timings"]["first_event_s"] is None


def test_call_http_error_json(emulator: Any) -> None:
    result = invoke(
        "call",
        "--api",
        "bedrock-converse",
        "--model",
        "amazon.nova-pro-v1:0",
        "--endpoint",
        emulator.url,
        "--fault",
        "http_error:429",
        "--json",
    )
    data = as_json(result)
    assert result.exit_code == 1
    assert data["outcome"] == "http_error"
    assert data["error"]["status"] == 429
    assert data["error"]["type"] == "ThrottlingException"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "m"], "--api is required"),
        (["--api", "openai-completions"], "--model is required"),
        (
            [
                "--api",
                "bedrock-converse-stream",
                "--model",
                "m",
                "--endpoint",
                "http://127.0.0.1:9",
                "--api-key-env",
                "MY_KEY",
            ],
            "HTTPS",
        ),
        (
            [
                "--api",
                "bedrock-converse-stream",
                "--model",
                "m",
                "--endpoint",
                "https://bedrock-runtime.us-east-1.amazonaws.com",
            ],
            "no AWS credentials",
        ),
        (
            [
                "--api",
                "bedrock-converse-stream",
                "--model",
                "m",
                "--endpoint",
                "http://127.0.0.1:9",
                "--auth",
                "sigv4",
            ],
            "no AWS credentials",
        ),
        (
            [
                "--api",
                "openai-completions",
                "--model",
                "m",
                "--endpoint",
                "http://127.0.0.1:9/v1",
                "--api-key-env",
                "NOT_SET_ANYWHERE",
            ],
            "NOT_SET_ANYWHERE",
        ),
        (["--target", "no-such-target"], "no target"),
        (["--route", "kimi", "--capture", "x.jsonl"], "cannot follow a route"),
        (
            [
                "--api",
                "openai-completions",
                "--model",
                "m",
                "--endpoint",
                "http://127.0.0.1:9/v1",
                "--capture",
                "/proc/no/such/dir/c.jsonl",
            ],
            "cannot write capture",
        ),
        (["--target", "a", "--route", "b"], "not both"),
        (["--api", "openai-completions", "--model", "m", "--deadline", "-1"], "positive"),
    ],
)
def test_usage_and_config_errors_exit_2(args: list[str], message: str) -> None:
    result = invoke("call", *args, "--json", env={"MY_KEY": "ABSKtest"})
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.stdout.strip() == "" or not result.stdout.lstrip().startswith("{")


def test_bad_api_name_exits_2() -> None:
    result = invoke("call", "--api", "bogus", "--model", "m")
    assert result.exit_code == 2
    assert "bogus" in result.output


def test_readable_output_and_verbose_events(emulator: Any) -> None:
    result = invoke(
        "call",
        "--api",
        "openai-responses",
        "--model",
        "moonshotai/kimi-k2.5",
        "--endpoint",
        emulator.url + "/v1",
        "-v",
    )
    assert result.exit_code == 0, result.output
    assert "outcome: ok" in result.output
    assert "timings:" in result.output
    assert "text_delta {" in result.output
    assert "TextDelta(" not in result.output  # never a Python repr
    assert "stop {" in result.output
    assert "raw wire units" in result.output
    assert "response.completed" in result.output


def test_capture_then_replay(emulator: Any, tmp_path: Path) -> None:
    cap = tmp_path / "c.jsonl"
    first = call_nova(
        emulator,
        "--fault",
        "stop_reason:malformed_model_output",
        "--capture",
        str(cap),
        "--json",
    )
    live = as_json(first)
    assert live["outcome"] == "abnormal_stop"
    assert first.exit_code == 1
    replay = invoke("replay", str(cap), "--json")
    offline = as_json(replay)
    assert replay.exit_code == 1
    assert offline["outcome"] == "abnormal_stop"
    assert offline["raw_stop_reason"] == "malformed_model_output"
    assert offline["text"] == live["text"]
    text = invoke("replay", str(cap))
    assert "abnormal_stop" in text.output


def test_replay_applies_a_scenario_check_when_asked(emulator: Any, tmp_path: Path) -> None:
    # an answer to the wrong question: a clean stream, but no 22 in the text
    cap = tmp_path / "c.jsonl"
    live = call_nova(
        emulator,
        "--scenario",
        "tool-call",
        "--capture",
        str(cap),
        "--json",
    )
    assert as_json(live)["outcome"] == "ok"
    plain = invoke("replay", str(cap), "--json")
    assert as_json(plain)["outcome"] == "ok"
    judged = invoke("replay", str(cap), "--scenario", "tool-result", "--json")
    assert as_json(judged)["outcome"] == "expectation_failed"
    assert judged.exit_code == 1
    again = invoke("replay", str(cap), "--scenario", "tool-call", "--json")
    assert again.exit_code == 0


def test_replay_bad_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "x.jsonl"
    bad.write_text("hello\n")
    result = invoke("replay", str(bad), "--json")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_target_from_embedded_default_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no callproof.toml here: the embedded default
    result = invoke("call", "--target", "bedrock-nova-pro", "--json")
    data = as_json(result)
    assert result.exit_code == 0, result.output
    assert data["outcome"] == "ok"


def test_console_script_exit_code_2_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "callproof", "call", "--api", "openai-completions", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "--model is required" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sigv4_with_fake_credentials_against_the_emulator(emulator: Any) -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "fake-secret-for-tests"}
    result = invoke(
        "call",
        "--api",
        "bedrock-converse-stream",
        "--model",
        "amazon.nova-pro-v1:0",
        "--endpoint",
        emulator.url,
        "--json",
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert as_json(result)["outcome"] == "ok"


def test_route_from_embedded_default_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("call", "--route", "kimi", "--json")
    data = as_json(result)
    assert result.exit_code == 0, result.output
    assert data["outcome"] == "ok"
    assert "22" in data["text"]


def test_route_unknown_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("call", "--route", "nope", "--json")
    assert result.exit_code == 2
    assert "no route" in result.output


def test_bedrock_api_key_over_tls_with_ca_bundle() -> None:
    from callproof.emulator import EmulatorServer

    with EmulatorServer(tls=True) as server:
        assert server.ca_path is not None
        args = [
            "call",
            "--api",
            "bedrock-converse-stream",
            "--model",
            "amazon.nova-pro-v1:0",
            "--endpoint",
            server.url,
            "--api-key-env",
            "MY_BEDROCK_KEY",
            "--json",
        ]
        env = {"MY_BEDROCK_KEY": "ABSKtest-key"}
        unverified = invoke(*args, env=env)
        assert unverified.exit_code == 1
        assert as_json(unverified)["outcome"] == "transport_error"
        result = invoke(*args, "--ca-bundle", str(server.ca_path), env=env)
        assert result.exit_code == 0, result.output
        assert as_json(result)["outcome"] == "ok"
        assert invoke(*args, "--insecure", env=env).exit_code == 0


def test_the_readable_account_does_not_print_a_key_in_the_endpoint_url() -> None:
    secret = "PLANTEDclikey0123456789"
    result = invoke(
        "call",
        "--api",
        "openai-completions",
        "--model",
        "m",
        "--endpoint",
        f"http://127.0.0.1:9/v1?api_key={secret}",
        "--first-event-timeout",
        "0.5",
    )
    assert result.exit_code == 1, result.output
    assert "transport_error" in result.output
    assert "127.0.0.1:9/v1" in result.output
    assert secret not in result.output


@pytest.mark.parametrize(
    "line",
    [
        '{"type":"chunk","t":0.1}',
        '{"type":"chunk","t":0.1,"b64":"not base64!"}',
        '{"type":"response","t":0.1,"status":200}',
        '{"type":"response","t":"soon","status":200,"headers":[]}',
    ],
)
def test_replay_of_a_malformed_capture_line_exits_2(tmp_path: Path, line: str) -> None:
    path = tmp_path / "bad.jsonl"
    meta = '{"type":"meta","format":"callproof-capture","version":1,"api":"openai-completions"}'
    path.write_text(f"{meta}\n{line}\n")
    result = invoke("replay", str(path), "--json")
    assert result.exit_code == 2, result.output
    assert "bad.jsonl:2: a malformed" in result.output
    assert "Traceback" not in result.output


ROUTE_TOML = """\
[defaults]
timeouts = { connect = 2.0, first_event = 2.0, idle = 1.0, deadline = 10.0 }
[emulator]
preset = "fast"
seed = 1
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
[routes.kimi]
targets = ["kimi", "or-kimi"]
"""


def _route_config(tmp_path: Path) -> Path:
    (tmp_path / "faults.toml").write_text(
        '[[rules]]\nmodel = "moonshotai.kimi-k2.5"\napi = "bedrock"\n'
        'fault = "http_error:503"\nprobability = 1.0\n'
    )
    config = tmp_path / "callproof.toml"
    config.write_text(ROUTE_TOML)
    return config


def test_call_route_says_which_target_served_with_every_attempt(tmp_path: Path) -> None:
    config = _route_config(tmp_path)
    data = as_json(invoke("call", "--config", str(config), "--route", "kimi", "--json"))
    assert data["outcome"] == "ok"
    assert data["served_by"] == "or-kimi"
    assert [(a["target"], a["outcome"], a["served"]) for a in data["attempts"]] == [
        ("kimi", "http_error", False),
        ("or-kimi", "ok", True),
    ]
    assert data["attempts"][0]["request_id"]  # Bedrock's x-amzn-RequestId of the 503
    assert isinstance(data["first_content_s"], float)
    text = invoke("call", "--config", str(config), "--route", "kimi", "-v")
    assert text.exit_code == 0, text.output
    assert "served by: or-kimi" in text.output
    assert "attempt 1: kimi http_error" in text.output
    assert "attempt 2: or-kimi served" in text.output
    # -v shows the events of the serving attempt (the table was empty on a route)
    assert "text_delta {" in text.output
    assert "None" not in text.output


def test_call_json_names_the_target_request_id_and_first_content(tmp_path: Path) -> None:
    config = _route_config(tmp_path)
    data = as_json(invoke("call", "--config", str(config), "--target", "or-kimi", "--json"))
    assert data["outcome"] == "ok"
    assert data["served_by"] == "or-kimi"
    assert data["request_id"]
    assert data["first_content_s"] is not None
    assert data["first_content_s"] >= data["timings"]["first_event_s"]
    assert len(data["attempts"]) == 1
    plain = invoke("call", "--config", str(config), "--target", "or-kimi")
    assert "served by: or-kimi" in plain.output
    assert "usage: " in plain.output
    assert "{'" not in plain.output  # no dict repr


def test_emulate_replay_refuses_a_capture_of_another_api(emulator: Any, tmp_path: Path) -> None:
    """A Bedrock capture served to the openai SDK: a clear 400, not an incomplete stream."""
    import asyncio

    import httpx
    import openai

    from callproof.cli.emulate import _replay_app

    cap = tmp_path / "bedrock.jsonl"
    result = call_nova(emulator, "--capture", str(cap), "--json")
    assert as_json(result)["outcome"] == "ok"
    app = _replay_app(cap)

    async def check() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://replay") as http:
            client = openai.AsyncOpenAI(
                base_url="http://replay/v1", api_key="x", http_client=http, max_retries=0
            )
            with pytest.raises(openai.BadRequestError) as info:
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}], stream=True
                )
            assert "is a capture of bedrock-converse-stream" in str(info.value)
            assert "cannot answer an openai-completions request" in str(info.value)
            # the capture's own API is still replayed
            same = await http.post("/model/amazon.nova-pro-v1:0/converse-stream", json={})
            assert same.status_code == 200
            assert same.headers["content-type"] == "application/vnd.amazon.eventstream"

    asyncio.run(check())
