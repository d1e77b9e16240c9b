"""Every call through the gateway is appended to its evidence run directory in the probe's
record schema, and ``callproof report DIR`` renders it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.gateway.clients import call
from tests.gateway.conftest import GatewayFactory


def test_evidence_log_in_the_probe_schema_rendered_by_report(
    make_gateway: GatewayFactory,
) -> None:
    gw = make_gateway()
    call(gw.url, "bedrock", model="moonshotai.kimi-k2.5")
    call(gw.url, "openai", model="moonshotai/kimi-k2.5", fault="http_error:500")
    call(gw.url, "openai", model="moonshotai/kimi-k2.5", fault="corrupt_crc", mode="buffered")
    run_dir = Path(gw.app.state.evidence_dir)
    gw.stop()
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in records] == [1, 2, 3]
    for record in records:
        for key in (
            "run_id",
            "target",
            "scenario",
            "outcome",
            "passed",
            "stop_reason",
            "raw_stop_reason",
            "usage",
            "timings",
            "error",
            "requests",
            "route_attempts",
        ):
            assert key in record, key
        assert record["target"] == "route:kimi"
    assert [r["scenario"] for r in records] == [
        "serve:converse-stream",
        "serve:chat-stream",
        "serve:chat-stream",
    ]
    assert records[1]["requests"] == 2
    assert records[1]["served_by"] == "openrouter-kimi-k2.5"
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["finished_at"] is not None
    done = subprocess.run(
        [sys.executable, "-m", "callproof", "report", str(run_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    cells = {(r["target"], r["scenario"]) for r in summary["results"]}
    assert ("route:kimi", "serve:chat-stream") in cells
    report = (run_dir / "report.md").read_text()
    assert "route:kimi" in report
    assert "serve:converse-stream" in report
