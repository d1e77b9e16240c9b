"""report.md in the seed's form, report.html self-contained and rendered by headless Chromium,
and the terminal lines."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from callproof.outcomes import Outcome
from callproof.probe.summary import Aggregator, read_records
from callproof.report import write_reports
from callproof.report.common import (
    OUTCOME_MEANINGS,
    attempt_line,
    collect_attempt_lines,
    executive_summary,
    failed_line,
)
from callproof.report.meta import grouped_requests
from callproof.report.terminal import print_attempt, print_summary
from tests.probe.synthetic import record, route_records, seed_meta, seed_records, write_run

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)


def make_run(
    tmp_path: Path, *, capture: bool = False
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    records = [*seed_records(), *route_records()]
    if capture:
        records[0]["capture"] = "captures/bedrock-kimi-k2.5-1.jsonl"
    meta = seed_meta()
    run_dir = write_run(tmp_path / "run", records, meta)
    if capture:
        (run_dir / "captures").mkdir()
        (run_dir / "captures" / "bedrock-kimi-k2.5-1.jsonl").write_text(
            '{"t": 0.0, "kind": "request", "url": "/model/moonshotai.kimi-k2.5/converse-stream"}\n'
            '{"t": 0.05, "kind": "headers", "status": 200}\n'
            '{"t": 2.0, "kind": "abandoned", "reason": "stall_no_events"}\n',
            encoding="utf-8",
        )
    summary = (
        Aggregator(targets=[t["name"] for t in meta["targets"]])
        .add_all(read_records(run_dir))
        .summary()
    )
    return run_dir, summary, meta


def test_attempt_lines_have_the_seed_form() -> None:
    ok = record("k", 4)
    assert attempt_line(ok) == "Test  4: ✅ OK       It's 22°C in Tokyo right now."
    bad = record("k", 2, outcome="stall_no_events")
    assert attempt_line(bad).startswith("Test  2: ❌ STALL_NO_EVENTS")
    assert attempt_line(bad, detail_width=0) == "Test  2: ❌ STALL_NO_EVENTS"
    tool = record("k", 10)
    tool["text"] = ""
    tool["tool_calls"] = [{"id": "t1", "name": "get_weather", "arguments": {"city": "Tokyo"}}]
    assert attempt_line(tool) == 'Test 10: ✅ OK       → get_weather({"city": "Tokyo"})'


def test_failed_line_names_every_failure_mode() -> None:
    entry = {"n": 10, "passed": 6, "outcomes": {"ok": 6, "stall_no_events": 3, "http_error": 1}}
    assert failed_line(entry) == "Failed: 4/10 (30% STALL_NO_EVENTS, 10% HTTP_ERROR)"
    assert failed_line({"n": 10, "passed": 10, "outcomes": {"ok": 10}}) == "Failed: 0/10"


def test_every_outcome_has_a_meaning() -> None:
    assert set(OUTCOME_MEANINGS) == {o.value for o in Outcome}


def test_markdown_report_in_the_seed_form(tmp_path: Path) -> None:
    run_dir, summary, meta = make_run(tmp_path)
    write_reports(run_dir, summary, meta)
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# callproof evidence: bedrock-kimi-k2.5 fails 40% of tool-result")
    assert "**Date:** 2026-02-10" in md
    assert "## Executive Summary" in md
    assert (
        "bedrock-kimi-k2.5 fails 4/10 (40%) of tool-result requests: stall_no_events "
        "4/10 (40%: headers, then no stream events)." in md
    )
    # The fair comparison: the same model elsewhere.
    assert (
        "The same model on another provider, openrouter-kimi-k2.5, passed 10/10 (100%) of the "
        "same requests" in md
    )
    assert "### bedrock-kimi-k2.5 (FAILS)" in md
    assert "### bedrock-mistral-large-3 (PASSES)" in md
    assert "Running 10 identical tool-result requests..." in md
    assert "Test  1: ❌ STALL_NO_EVENTS" in md
    assert "Test  4: ✅ OK       It's 22°C in Tokyo right now." in md
    assert "Passed: 6/10 (60%)\nFailed: 4/10 (40% STALL_NO_EVENTS)" in md
    assert "Passed: 10/10 (100%)\nFailed: 0/10" in md
    # The compound table, as in the seed plus the interval.
    assert "| Tool Uses | Success Probability | 95% CI |" in md
    for steps, pct in zip(range(1, 6), (60, 36, 22, 13, 8), strict=True):
        assert re.search(rf"^\| {steps} \| {pct}% \| ", md, re.MULTILINE), steps
    assert "## Comparisons" in md
    assert "no significant difference between bedrock-kimi-k2.5 and" in md
    assert "## Routes" in md
    assert re.search(r"\| route:kimi \| tool-result \| 10/10 \(100%\) .*\| 1\.30 \| 3 \|", md)
    assert "## Test Methodology" in md
    assert '"Weather for Tokyo?"' in md  # the exact request body
    assert "first_event 2.0s" in md
    assert "route over bedrock-kimi-k2.5 → openrouter-kimi-k2.5" in md
    assert "| `stall_no_events` | headers, then no stream events |" in md
    assert "## Representative Failure" in md
    assert '"request_id": "req-bedrock-kimi-k2.5-1"' in md  # from the record (no capture)


def test_markdown_shows_a_capture_when_there_is_one(tmp_path: Path) -> None:
    run_dir, summary, meta = make_run(tmp_path, capture=True)
    write_reports(run_dir, summary, meta)
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    raw = md.split("## Representative Failure", 1)[1]
    assert "capture `captures/bedrock-kimi-k2.5-1.jsonl`" in raw
    assert '"kind": "abandoned", "reason": "stall_no_events"' in raw


def test_attempt_lines_are_capped(tmp_path: Path) -> None:
    records = [record("big", i, outcome="ok" if i % 5 else "http_error") for i in range(250, 0, -1)]
    run_dir = write_run(tmp_path / "run", records, {"run_id": "big"})
    summary = Aggregator().add_all(records).summary()
    write_reports(run_dir, summary, {"run_id": "big"})
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "Test  1: ✅ OK" in md
    assert "Test 200: ❌ HTTP_ERROR" in md
    assert "Test 201:" not in md
    assert "... 50 more" in md
    assert "Passed: 200/250 (80%)" in md
    kept = collect_attempt_lines(records, cap=3)[("big", "tool-result")]
    assert [r["attempt"] for r in kept.records] == [1, 2, 3]
    assert kept.more == 247


def test_no_failures_reads_plainly(tmp_path: Path) -> None:
    records = [record("fine", i) for i in range(1, 4)]
    run_dir = write_run(tmp_path / "run", records, {"run_id": "x"})
    summary = Aggregator().add_all(records).summary()
    write_reports(run_dir, summary, {})
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# callproof evidence: no failures observed")
    assert "Raw Events" not in md
    assert executive_summary({"results": []}) == ["No attempts were recorded."]


_EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def test_html_is_self_contained(tmp_path: Path) -> None:
    run_dir, summary, meta = make_run(tmp_path)
    write_reports(run_dir, summary, meta)
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert not _EXTERNAL.search(html)
    assert "<script" not in html.lower()
    assert "@import" not in html
    assert "url(" not in html
    assert "<link" not in html.lower()
    for chart in ("outcomes", "latency", "compound"):
        assert f'<svg data-chart="{chart}"' in html
    assert html.count('class="seg"') == 5  # 4 targets: ok + stall on kimi, ok elsewhere
    assert html.count('class="curve"') == 4
    assert html.count('class="band"') == 2  # the three 10/10 entries share one band
    assert "Test  1: ❌ STALL_NO_EVENTS" in html
    assert "Passed: 6/10 (60%)" in html
    assert "bedrock-kimi-k2.5 fails 4/10 (40%) of tool-result requests" in html
    assert "Exact request body sent to bedrock-kimi-k2.5" in html
    assert "<details" not in html  # nothing collapsed: the page prints as it reads
    assert "Weather for Tokyo?" in html


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.mark.chromium
@pytest.mark.timeout(180)
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    run_dir, summary, meta = make_run(tmp_path, capture=True)
    write_reports(run_dir, summary, meta)
    url = (run_dir / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    result = _chromium([f"--screenshot={shot}", "--window-size=1200,2000", url], tmp_path)
    assert shot.exists(), result.stderr[-2000:]
    assert _png_size(shot) == (1200, 2000)
    assert shot.stat().st_size > 30_000  # charts and text, not a blank page
    dom = _chromium(["--dump-dom", url], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for chart in ("outcomes", "latency", "compound"):
        assert f'<svg data-chart="{chart}"' in dom.stdout
    assert dom.stdout.count("<rect") > 10
    assert "<polyline" in dom.stdout
    assert "Passed: 6/10 (60%)" in dom.stdout


def test_terminal_summary_keeps_the_outcomes_whole_on_a_narrow_terminal() -> None:
    summary = Aggregator().add_all([*seed_records(), *route_records()]).summary()
    narrow = Console(record=True, width=80, color_system=None)
    print_summary(narrow, summary)
    out = narrow.export_text()
    table = out[out.index("Pass rate per target") : out.index("Why it compounds")]
    assert "stall_no_events 4" in table
    assert "…" not in table
    assert "p50 first event" not in table  # dropped before anything else is cut
    assert max(len(line) for line in table.splitlines()) <= 80
    wide = Console(record=True, width=140, color_system=None)
    print_summary(wide, summary)
    assert "p50 first event" in wide.export_text()


def test_terminal_lines_and_summary() -> None:
    console = Console(record=True, width=200, color_system=None)
    print_attempt(console, record("bedrock-kimi-k2.5", 4), show_target=False)
    print_attempt(console, record("bedrock-kimi-k2.5", 2, outcome="stall_no_events"))
    text = console.export_text()
    assert "Test  4: ✅ OK       It's 22°C in Tokyo right now." in text
    assert "bedrock-kimi-k2.5 · tool-result  Test  2: ❌ STALL_NO_EVENTS" in text
    summary = Aggregator().add_all([*seed_records(), *route_records()]).summary()
    console = Console(record=True, width=220, color_system=None)
    print_summary(console, summary)
    out = console.export_text()
    assert "Pass rate per target" in out
    assert "Pass rate per target · tool-result" in out
    assert re.search(r"bedrock-kimi-k2\.5\s+│\s+6/10 │\s+60% │\s+31%–83%", out)
    assert "Why it compounds · bedrock-kimi-k2.5 (60% per call)" in out
    assert "stall_no_events 4" in out
    assert "Tool Uses" in out
    assert re.search(r"│\s+5 │\s+8% │\s+0\.3%–40% │", out)  # the seed's table
    assert re.search(r"bedrock-kimi-k2\.5\s+│\s+60% │\s+36% │\s+22% │\s+13% │\s+8% │", out)
    assert "pairs with equal pass rates not shown" in out
    assert "Routes" in out
    assert "1.30" in out
    assert "no significant difference between bedrock-kimi-k2.5 and" in out
    assert "bedrock-kimi-k2.5 fails 4/10 (40%) of tool-result requests" in out
    empty = Console(record=True, width=80, color_system=None)
    print_summary(empty, {"results": [], "comparisons": []})
    assert "no attempts recorded" in empty.export_text()


def test_summary_json_round_trip_renders_the_same(tmp_path: Path) -> None:
    run_dir, summary, meta = make_run(tmp_path)
    reloaded = json.loads(json.dumps(summary))
    write_reports(run_dir, reloaded, meta)
    first = (run_dir / "report.md").read_text(encoding="utf-8")
    write_reports(run_dir, summary, meta)
    assert (run_dir / "report.md").read_text(encoding="utf-8") == first


def test_identical_request_bodies_are_grouped() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    scenario = {"name": "s", "requests": {"a": body, "b": dict(body), "c": {"input": "x"}}}
    assert grouped_requests(scenario) == [(["a", "b"], body), (["c"], {"input": "x"})]
    listed = {"name": "s", "requests": [{"target": "a", "body": body}]}
    assert grouped_requests(listed) == [(["a"], body)]
    assert grouped_requests({"name": "s"}) == []


def test_reports_of_an_empty_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "empty"
    write_reports(run_dir, {"results": [], "comparisons": []}, {})
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# callproof evidence: no attempts recorded")
    assert "No attempts were recorded." in md
    assert "None" not in md
    assert "<svg" not in (run_dir / "report.html").read_text(encoding="utf-8")


def test_reports_never_show_a_credential_from_an_endpoint_url(tmp_path: Path) -> None:
    # an older run.json (or a hand-made one) may hold the URL as configured
    run_dir, summary, meta = make_run(tmp_path)
    secret = "sk-live-0123456789abcdef"
    meta["targets"][0]["endpoint"] = f"https://me:{secret}@gw.example/v1?key={secret}"
    write_reports(run_dir, summary, meta)
    for name in ("report.md", "report.html"):
        text = (run_dir / name).read_text(encoding="utf-8")
        assert "gw.example/v1" in text, name
        assert secret not in text, name


def test_a_capture_path_outside_the_run_directory_is_never_read(tmp_path: Path) -> None:
    # results.jsonl is data: a record naming ../secret or /abs/secret must not pull that file
    # into a report someone shares
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY\n")
    for capture in (str(secret), "../credentials"):
        run_dir, summary, meta = make_run(tmp_path / capture.replace("/", "_"))
        lines = (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines]
        for r in records:
            if not r["passed"]:
                r["capture"] = capture
        (run_dir / "results.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in records), encoding="utf-8"
        )
        (run_dir.parent / "credentials").write_text(secret.read_text())
        write_reports(run_dir, summary, meta)
        for name in ("report.md", "report.html"):
            text = (run_dir / name).read_text(encoding="utf-8")
            assert "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY" not in text, (capture, name)
            assert "Representative Failure" in text or "Representative failure" in text, name


def test_terminal_summary_prints_names_literally() -> None:
    # "[/x]" in a target or scenario name is text, not a rich closing tag
    records = [
        {**r, "target": "odd[/x]", "scenario": "sc[/y]"} for r in list(seed_records())[:10]
    ]  # fmt: skip
    summary = Aggregator().add_all(records).summary()
    console = Console(record=True, width=220, color_system=None)
    print_summary(console, summary)
    out = console.export_text()
    assert "Pass rate per target · sc[/y]" in out
    assert "Why it compounds · odd[/x]" in out
