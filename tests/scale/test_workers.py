"""``callproof serve --workers N``: N processes on one port, one URL, metrics summed across
workers, SIGTERM stops them all; and the example Kubernetes manifest in docs/k8s."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.conftest import bedrock_client

from .conftest import gateway_toml

ROOT = Path(__file__).resolve().parents[2]
QUESTION = [{"role": "user", "content": [{"text": "What is the weather in Tokyo?"}]}]


def _calls_total(text: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "callproof_calls":
            return sum(s.value for s in family.samples if s.name == "callproof_calls_total")
    return 0.0


@pytest.mark.slow
def test_two_workers_on_one_port(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    config = tmp_path / "callproof.toml"
    config.write_text(
        gateway_toml(evidence),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "callproof", "serve", "--config", str(config), "--port", "0",
         "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
        calls = 16
        for _ in range(calls):  # a new client (and connection) each: the kernel spreads them
            out = bedrock_client(url).converse(modelId="moonshotai.kimi-k2.5", messages=QUESTION)
            assert out["output"]["message"]["content"]
        # whichever worker answers the scrape, it counts every worker's calls
        for _ in range(4):
            with httpx.Client() as http:
                scraped = http.get(url + "/metrics", timeout=10)
            assert scraped.status_code == 200
            assert _calls_total(scraped.text) == calls
        per_worker = {}
        for k in (0, 1):
            results = evidence / f"worker-{k}" / "results.jsonl"
            lines = results.read_text(encoding="utf-8").splitlines() if results.exists() else []
            per_worker[k] = len([json.loads(line) for line in lines if line])
        assert sum(per_worker.values()) == calls
        assert all(n > 0 for n in per_worker.values()), per_worker  # both processes served
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == 0
    err = proc.stderr.read() if proc.stderr else ""
    assert "2 workers on one port" in err


def test_workers_with_tls_is_a_clear_error() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "callproof", "serve", "--workers", "2", "--tls", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--workers cannot use --tls" in out.stderr
    assert "Traceback" not in out.stderr


def test_kubernetes_example_manifest_parses() -> None:
    path = ROOT / "docs" / "k8s" / "callproof-gateway.yaml"
    docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) >= {"Deployment", "Service", "ConfigMap"}
    deployment, service = kinds["Deployment"], kinds["Service"]
    assert deployment["apiVersion"] == "apps/v1"
    assert service["apiVersion"] == "v1"
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    container = spec["template"]["spec"]["containers"][0]
    command = container["command"] + container.get("args", [])
    assert command[:2] == ["callproof", "serve"]
    assert "--host" in command
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = container["ports"][0]["containerPort"]
    assert command[command.index("--port") + 1] == str(port)
    assert service["spec"]["ports"][0]["targetPort"] in (port, container["ports"][0]["name"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    annotations = spec["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/path") == "/metrics"
    # the config the pods mount names a shared Redis and client keys (auth is not "none")
    toml_text = kinds["ConfigMap"]["data"]["callproof.toml"]
    import tomllib

    serve = tomllib.loads(toml_text)["serve"]
    assert serve["state"].startswith("redis://")
    assert serve["auth"]["kind"] == "keys"
    env_names = {e["name"] for e in container.get("env", [])}
    assert serve["auth"]["env"] in env_names
    # secrets come from a Secret, never inline
    key_env = next(e for e in container["env"] if e["name"] == serve["auth"]["env"])
    assert "secretKeyRef" in key_env["valueFrom"]
    termination = spec["template"]["spec"]["terminationGracePeriodSeconds"]
    assert termination > serve.get("drain_s", 10)
    # the config itself is a valid gateway config
    from callproof.gateway.config import parse_serve_config

    parsed = parse_serve_config(toml_text, name="callproof.toml")
    assert parsed.serve.state == serve["state"]
