"""The runner against the real emulator on loopback (and in-process for the cheap checks)."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from callproof.emulator import create_app
from callproof.probe.config import load_config
from callproof.probe.runner import RunOptions, gate_failures, run_probe
from callproof.probe.stats import wilson
from callproof.record import AttemptRecord
from tests.probe.conftest import MakeConfig

RECORD_KEYS = {
    "run_id", "seq", "target", "scenario", "attempt", "api", "model", "provider", "outcome",
    "passed", "detail", "stop_reason", "raw_stop_reason", "text", "thinking", "tool_calls",
    "usage", "timings", "error", "request_id", "requests", "route_attempts", "started_at",
    "capture",
}  # fmt: skip


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def _options(config: Any, out: Path, **kw: Any) -> RunOptions:
    kw.setdefault("targets", list(config.targets))
    kw.setdefault("routes", [])
    kw.setdefault("n", config.defaults.n)
    kw.setdefault("concurrency", config.defaults.concurrency)
    return RunOptions(out=out, **kw)


async def test_measured_fault_rate_falls_inside_its_wilson_interval(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    path = make_config(
        n=60,
        first_event=1.0,
        faults=(
            '[[rules]]\nmodel = "amazon.nova-pro-v1:0"\nturn = "after_tool_result"\n'
            'fault = "hang_no_events"\nprobability = 0.3\n'
        ),
    )
    config = load_config(path)
    result = await run_probe(
        config, _options(config, tmp_path / "run", targets=["nova", "mistral"], concurrency=12)
    )
    entries = {e["target"]: e for e in result.summary["results"]}
    nova, mistral = entries["nova"], entries["mistral"]
    assert nova["n"] == 60
    stalls = nova["outcomes"].get("stall_no_events", 0)
    # the hang is named; anything else would be the loaded test machine, and is rare
    assert nova["n"] - nova["passed"] - stalls <= 1, nova["outcomes"]
    low, high = wilson(stalls, 60)
    assert low <= 0.3 <= high, (stalls, low, high)
    assert 0.1 < stalls / 60 < 0.5
    assert mistral["passed"] >= 59, mistral["outcomes"]
    # the hang was measured by the first-event clock, never retried
    hung = [r for r in _records(result.run_dir) if r["outcome"] == "stall_no_events"]
    assert all(r["requests"] == 1 for r in hung)
    assert all(1.0 <= r["timings"]["total_s"] < 2.5 for r in hung)
    assert all(r["timings"]["headers_s"] is not None for r in hung)


async def test_records_follow_the_schema_and_are_flushed_per_attempt(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    config = load_config(make_config(n=4))
    out = tmp_path / "run"
    lines_seen: list[int] = []

    def on_record(record: dict[str, Any]) -> None:
        # the line is on disk the moment the attempt ends
        lines_seen.append(len((out / "results.jsonl").read_text().splitlines()))
        assert lines_seen[-1] == record["seq"]

    result = await run_probe(
        config, _options(config, out, routes=["pair"], on_record=on_record, seed=3)
    )
    records = _records(out)
    assert len(records) == 4 * 4 == len(lines_seen)
    for r in records:
        assert set(r) == RECORD_KEYS
        assert r["run_id"] == result.run_id
        datetime.fromisoformat(r["started_at"].replace("Z", "+00:00"))
    assert sorted(r["seq"] for r in records) == list(range(1, 17))
    keys = {(r["target"], r["scenario"], r["attempt"]) for r in records}
    assert len(keys) == 16
    route = [r for r in records if r["target"] == "route:pair"]
    assert {r["api"] for r in route} == {None}
    assert all(r["route_attempts"] and r["requests"] >= 1 for r in route)
    plain = [r for r in records if r["target"] == "nova"]
    assert all(r["api"] == "bedrock-converse-stream" and r["requests"] == 1 for r in plain)
    meta = json.loads((out / "run.json").read_text())
    assert meta["finished_at"]
    assert meta["interrupted"] is False
    assert meta["n"] == 4
    assert {t["name"] for t in meta["targets"]} == {"nova", "mistral", "or-kimi", "route:pair"}
    bodies = meta["scenarios"][0]["requests"]
    assert bodies["nova"]["messages"][2]["content"][0]["toolResult"]["toolUseId"] == "abc123xyz"
    assert bodies["or-kimi"]["model"] == "moonshotai/kimi-k2.5"
    assert bodies["or-kimi"]["messages"][-1]["role"] == "tool"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["run_id"] == result.run_id
    assert len(summary["results"]) == 4


async def test_resume_skips_finished_attempts_and_cuts_a_torn_line(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    config = load_config(make_config(n=3))
    out = tmp_path / "run"
    first = await run_probe(config, _options(config, out, targets=["nova"], n=3))
    with (out / "results.jsonl").open("a") as fh:
        fh.write('{"run_id": "torn", "seq": 99, "tar')  # a crash mid-write
    second = await run_probe(config, _options(config, out, targets=["nova"], n=5, resume=True))
    records = _records(out)
    assert second.run_id == first.run_id
    assert second.written == 2
    assert sorted(r["attempt"] for r in records) == [1, 2, 3, 4, 5]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert {r["run_id"] for r in records} == {first.run_id}
    assert second.summary["results"][0]["n"] == 5


async def test_a_run_dir_with_results_needs_resume(make_config: MakeConfig, tmp_path: Path) -> None:
    from callproof.errors import ConfigError

    config = load_config(make_config(n=1))
    out = tmp_path / "run"
    await run_probe(config, _options(config, out, targets=["nova"], n=1))
    with pytest.raises(ConfigError, match="--resume"):
        await run_probe(config, _options(config, out, targets=["nova"], n=1))


async def test_cancel_stops_cleanly_and_keeps_what_finished(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    config = load_config(
        make_config(
            n=40,
            first_event=3.0,
            faults='[[rules]]\nmodel = "*"\nfault = "hang_no_events"\nprobability = 0.5\n',
        )
    )
    out = tmp_path / "run"
    finished = asyncio.Event()
    seen: list[int] = []

    def on_record(record: dict[str, Any]) -> None:
        seen.append(record["seq"])
        if len(seen) >= 5:
            finished.set()

    task = asyncio.create_task(
        run_probe(
            config, _options(config, out, targets=["nova"], concurrency=8, on_record=on_record)
        )
    )
    await asyncio.wait_for(finished.wait(), 10)
    task.cancel()
    result = await asyncio.wait_for(task, 10)
    assert result.interrupted
    records = _records(out)
    assert len(records) == result.written == len(seen) < 40
    assert all(r["outcome"] == "ok" for r in records)  # in-flight hangs were not recorded
    assert result.summary["results"][0]["n"] == len(records)
    assert json.loads((out / "run.json").read_text())["interrupted"] is True


async def test_capture_failures_keeps_only_failing_captures(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    config = load_config(
        make_config(
            n=6,
            faults='[[rules]]\nmodel = "amazon.nova-pro-v1:0"\nfault = "close_without_stop"\n'
            "probability = 0.5\n",
        )
    )
    out = tmp_path / "run"
    await run_probe(config, _options(config, out, targets=["nova"], capture_failures=True))
    records = _records(out)
    failing = [r for r in records if not r["passed"]]
    assert failing, "the plan should have failed some attempts"
    for r in records:
        if r["passed"]:
            assert r["capture"] is None
        else:
            assert r["outcome"] == "incomplete_stream"
            assert (out / r["capture"]).is_file()
    assert len(list((out / "captures").iterdir())) == len(failing)


async def test_rate_limit_spaces_attempt_starts(make_config: MakeConfig, tmp_path: Path) -> None:
    config = load_config(make_config(n=6))
    result = await run_probe(
        config, _options(config, tmp_path / "run", targets=["nova"], rate_limit=20.0)
    )
    starts = sorted(
        datetime.fromisoformat(r["started_at"].replace("Z", "+00:00")).timestamp()
        for r in _records(result.run_dir)
    )
    assert starts[-1] - starts[0] >= 5 * 0.05 * 0.8


async def test_scenarios_in_process_with_a_route_and_the_agent_loop(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    # a functional test, not a clock test: a first-event budget that holds with two CPU hogs
    # (1 s gave one stall_before_headers in a hogged suite run)
    config = load_config(make_config(n=2, first_event=10.0))
    result = await run_probe(
        config,
        _options(
            config,
            tmp_path / "run",
            targets=["nova", "or-kimi"],
            routes=["pair"],
            scenarios=["multi-step", "parallel-tools", "thinking-replay", "tool-call"],
            transport=httpx.ASGITransport(create_app(preset="fast", seed=1)),
        ),
    )
    assert all(e["passed"] == e["n"] == 2 for e in result.summary["results"]), [
        (e["target"], e["scenario"], e["outcomes"]) for e in result.summary["results"]
    ]
    loops = [r for r in _records(result.run_dir) if r["scenario"] == "multi-step"]
    # three tool calls, then the answer; a route may also hedge a turn on a loaded machine
    # (a first event later than its hedge delay), which adds a request but not a turn
    assert all(r["requests"] == 4 for r in loops if not r["target"].startswith("route:"))
    assert all(r["requests"] >= 4 for r in loops)
    assert all("13960000" in r["text"] for r in loops)
    parallel = [r for r in _records(result.run_dir) if r["scenario"] == "parallel-tools"]
    assert all(len(r["tool_calls"]) == 2 for r in parallel)


async def test_workers_share_the_loop_when_nothing_waits(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    # In process and with no latency, an attempt's awaits all complete at once: without a
    # turn of the loop per attempt, the first worker ran every job (the others never got one)
    # and the cancelled timeouts of every attempt piled up in the loop's heap.
    config = load_config(make_config(n=100))
    workers: set[str] = set()
    heap: list[int] = []

    def on_record(record: dict[str, Any]) -> None:
        task = asyncio.current_task()
        assert task is not None
        workers.add(task.get_name())
        heap.append(len(asyncio.get_running_loop()._scheduled))  # type: ignore[attr-defined]

    result = await run_probe(
        config,
        _options(
            config,
            tmp_path / "run",
            targets=["nova"],
            scenarios=["tool-result"],
            concurrency=4,
            on_record=on_record,
            transport=httpx.ASGITransport(create_app(preset="fast", seed=1)),
        ),
    )
    assert result.summary["results"][0]["n"] == 100
    assert len(workers) == 4
    # the loop prunes cancelled timers between turns once they are over half of more than
    # 100, so the heap stays near 200; with no turn it held four cancelled timeouts per
    # attempt so far (400 at the end)
    assert max(heap) < 250, heap


async def test_the_loop_fails_when_a_turn_hangs(make_config: MakeConfig, tmp_path: Path) -> None:
    config = load_config(
        make_config(
            n=4,
            faults='[[rules]]\nmodel = "amazon.nova-pro-v1:0"\nturn = "after_tool_result"\n'
            'fault = "stop_reason:max_tokens"\n',
        )
    )
    result = await run_probe(
        config,
        _options(config, tmp_path / "run", targets=["nova"], scenarios=["multi-step"]),
    )
    records = _records(result.run_dir)
    assert {r["outcome"] for r in records} == {"abnormal_stop"}
    assert all(r["requests"] == 2 for r in records)  # the first follow-up broke the loop


def test_gate_failures_point_and_lower() -> None:
    summary = {
        "results": [
            {"target": "a", "scenario": "s", "pass_rate": 1.0, "ci95": [0.72, 1.0]},
            {"target": "b", "scenario": "s", "pass_rate": 0.6, "ci95": [0.31, 0.83]},
        ]
    }
    assert [e["target"] for e in gate_failures(summary, 0.9)] == ["b"]
    assert [e["target"] for e in gate_failures(summary, 90)] == ["b"]
    assert [e["target"] for e in gate_failures(summary, 0.9, "lower")] == ["a", "b"]
    assert gate_failures(summary, 0.5) == []


async def test_per_target_concurrency_serialises_one_target(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    config = load_config(make_config(n=4, faults='[[rules]]\nmodel = "*"\nfault = "latency:0.1"\n'))
    result = await run_probe(
        config,
        _options(config, tmp_path / "run", targets=["nova"], per_target_concurrency=1),
    )
    records = sorted(_records(result.run_dir), key=lambda r: r["started_at"])
    starts = [datetime.fromisoformat(r["started_at"].replace("Z", "+00:00")) for r in records]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.09 for gap in gaps), gaps  # each waited for the one before


async def test_capture_failures_keeps_every_attempt_of_a_failed_route_call(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    # both members of route "pair" answer with HTTP 500: the routed call fails, and each of
    # its attempts keeps its own capture; a passing target keeps none
    plan = '[[rules]]\nmodel = "*"\napi = "bedrock"\nfault = "http_error:500"\nprobability = 1.0\n'
    path = make_config(
        n=2,
        faults=plan,
        # nothing here hangs: a roomy budget costs no time, and 1 s was missed under two CPU
        # hogs (a 500 recorded as stall_before_headers)
        first_event=5.0,
        extra='retry = { max_attempts = 2 }\nhedge = "off"\n',
    )
    config = load_config(path)
    result = await run_probe(
        config,
        _options(
            config,
            tmp_path / "run",
            targets=["or-kimi"],
            routes=["pair"],
            capture_failures=True,
        ),
    )
    records = _records(result.run_dir)
    routed = [r for r in records if r["target"] == "route:pair"]
    assert len(routed) == 2
    for record in routed:
        assert not record["passed"]
        sent = [a for a in record["route_attempts"] if a["sent"]]
        assert len(sent) == 2
        for attempt in sent:
            capture = result.run_dir / attempt["capture"]
            assert capture.is_file()
            assert '"status": 500' in capture.read_text() or '"status":500' in capture.read_text()
        assert record["capture"] == sent[-1]["capture"]
    healthy = [r for r in records if r["target"] == "or-kimi"]
    assert all(r["passed"] and r["capture"] is None for r in healthy)
    left = {p.name for p in (result.run_dir / "captures").iterdir()}
    assert left == {
        Path(a["capture"]).name for r in routed for a in r["route_attempts"] if a["sent"]
    }


def test_run_meta_never_carries_a_credential_from_the_endpoint_url() -> None:
    from callproof.probe.config import RouteConfig
    from callproof.probe.rundir import Unit, target_meta
    from callproof.targets import Endpoint, Target

    secret = "sk-or-v1-deadbeefcafe"
    target = Target(
        name="gateway",
        api="openai-completions",
        model="m",
        endpoint=Endpoint(
            base_url=f"https://user:{secret}@gw.example/v1?api_key={secret}&region=eu",
            headers={"Authorization": f"Bearer {secret}"},
        ),
    )
    meta = target_meta(Unit(name="gateway", target=target))
    route = target_meta(
        Unit(name="route:r", route=RouteConfig("r", ["gateway"], {}), members=(target,))
    )
    text = json.dumps([meta, route], default=str)
    assert secret not in text
    assert meta["endpoint"].startswith("https://")
    assert "gw.example/v1" in meta["endpoint"]
    assert "region=eu" in meta["endpoint"]
    assert route["members"][0]["endpoint"] == meta["endpoint"]


@pytest.mark.parametrize("chunk", [1, 7, 1 << 16])
def test_resume_scan_cuts_a_torn_line_and_feeds_the_aggregator(tmp_path: Path, chunk: int) -> None:
    from callproof.probe import rundir

    path = tmp_path / "results.jsonl"
    lines = [
        json.dumps({"target": "t", "scenario": "s", "attempt": i, "seq": i, "outcome": "ok"})
        for i in (1, 2)
    ]
    path.write_text("\n".join(lines) + '\n{"target": "t", "scen', encoding="utf-8")
    with path.open("rb") as fh:
        assert rundir._last_line_end(fh, path.stat().st_size, chunk) == len("\n".join(lines) + "\n")
    seen: list[AttemptRecord] = []  # the aggregator is fed typed records
    done, seq = rundir.scan_existing(path, seen.append)
    assert done == {("t", "s", 1), ("t", "s", 2)}
    assert seq == 2
    assert [r.attempt for r in seen] == [1, 2]
    assert path.read_text(encoding="utf-8") == "\n".join(lines) + "\n"
    only_torn = tmp_path / "torn.jsonl"
    only_torn.write_bytes(b'{"target": "t"')
    assert rundir.scan_existing(only_torn) == (set(), 0)
    assert only_torn.read_bytes() == b""
