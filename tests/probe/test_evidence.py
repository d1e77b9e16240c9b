"""The evidence report on a real mixed-outcome run, and the evidence it must never lose.

A fault plan on the embedded emulator gives Bedrock Kimi hangs, throttles and an abnormal stop
(and OpenRouter Kimi a few 503s); the run is real (the client, the emulator, the wire). Every
statement of the executive summary is then checked against the records in results.jsonl, the
HTML is rendered in headless Chromium at 1280 px and printed to PDF, and the capture files are
checked one by one against the records that name them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from callproof.cli import main
from callproof.probe.summary import read_records
from callproof.report.common import executive_summary
from callproof.report.decode import decode_capture_events
from callproof.report.evidence import model_family

__all__: list[str] = []

MIXED_TOML = """\
[defaults]
n = {n}
concurrency = 8
timeouts = {{ connect = 5.0, first_event = 4.0, idle = 4.0, deadline = 30.0 }}

[emulator]
preset = "fast"
seed = {seed}
faults = "faults.toml"

[providers.bedrock]
api = "bedrock-converse-stream"
endpoint = "emulator"
region = "us-east-1"

[providers.openrouter]
api = "openai-completions"
endpoint = "emulator"

[targets."bedrock-kimi-k2.5"]
provider = "bedrock"
model = "moonshotai.kimi-k2.5"

[targets.bedrock-nova-pro]
provider = "bedrock"
model = "amazon.nova-pro-v1:0"

[targets."openrouter-kimi-k2.5"]
provider = "openrouter"
model = "moonshotai/kimi-k2.5"

[routes.kimi]
targets = ["bedrock-kimi-k2.5", "openrouter-kimi-k2.5"]
"""

MIXED_FAULTS = """\
[[rules]]
model = "moonshotai.kimi-k2.5"
api = "bedrock"
turn = "after_tool_result"
faults = [
  { fault = "hang_no_events", probability = 0.27 },
  { fault = "http_error:429", probability = 0.13 },
  { fault = "stop_reason:content_filtered", probability = 0.05 },
]

[[rules]]
model = "moonshotai/kimi-k2.5"
api = "openai"
turn = "after_tool_result"
fault = "http_error:503"
probability = 0.05
"""


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _mixed_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *, seed: int, n: int = 30
) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    """A run whose seed gives Bedrock Kimi hangs, throttles and at least one abnormal stop."""
    (tmp_path / "faults.toml").write_text(MIXED_FAULTS)
    config = tmp_path / "callproof.toml"
    config.write_text(MIXED_TOML.format(n=n, seed=seed))
    out = tmp_path / f"run-{seed}"
    code, _, err = run_cli(
        capsys,
        "run",
        "--config",
        str(config),
        "--no-history",
        "--capture-failures",
        "--out",
        str(out),
    )
    assert code == 0, err
    records = list(read_records(out))
    summary = json.loads((out / "summary.json").read_text())
    return out, records, summary


def _find_mixed_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, ...]:
    # The draws are seeded: seed 11 gives all three failure modes; a few others are tried only
    # if a change to the emulator's draw order moves them.
    for seed in (11, 12, 13, 14, 15):
        run_dir, records, summary = _mixed_run(tmp_path, capsys, seed=seed)
        kimi = Counter(
            r["outcome"] for r in records if r["target"] == "bedrock-kimi-k2.5" and not r["passed"]
        )
        if kimi["stall_no_events"] and kimi["http_error"] and kimi["abnormal_stop"]:
            return run_dir, records, summary  # type: ignore[return-value]
    pytest.fail("no seed gave hangs, throttles and an abnormal stop")


@pytest.fixture(scope="module")
def mixed(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("mixed")
    capsys = _NullCapture()
    return _find_mixed_seed(tmp, capsys)  # type: ignore[arg-type,return-value]


class _NullCapture:
    """A stand-in for capsys in a module fixture (output is not inspected there)."""

    def readouterr(self) -> tuple[str, str]:
        return "", ""


def _pct(count: int, n: int) -> str:
    from callproof.probe.stats import format_pct

    return format_pct(count / n)


def test_every_summary_statement_matches_the_records(
    mixed: tuple[Path, list[dict[str, Any]], dict[str, Any]],
) -> None:
    run_dir, records, summary = mixed
    by_target: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_target.setdefault(r["target"], []).append(r)
    kimi = by_target["bedrock-kimi-k2.5"]
    n = len(kimi)
    failed = [r for r in kimi if not r["passed"]]
    hangs = sum(r["outcome"] == "stall_no_events" for r in failed)
    throttles = sum(r["outcome"] == "http_error" and r["error"]["status"] == 429 for r in failed)
    stops = sum(r["outcome"] == "abnormal_stop" for r in failed)
    assert hangs + throttles + stops == len(failed)

    sentences = executive_summary(summary)
    first = sentences[0]
    # the headline: the total, then each failure mode with its own rate (never 40% "stall")
    assert first.startswith(
        f"bedrock-kimi-k2.5 fails {len(failed)}/{n} ({_pct(len(failed), n)}) of tool-result"
    )
    assert f"stall_no_events {hangs}/{n} ({_pct(hangs, n)}: " in first
    assert f"http_error 429 {throttles}/{n} ({_pct(throttles, n)}: HTTP 429 throttled)" in first
    assert f"abnormal_stop {stops}/{n} ({_pct(stops, n)}: " in first
    # the comparison: the same model on another provider, never the route that contains it
    peer = by_target["openrouter-kimi-k2.5"]
    peer_ok = sum(r["passed"] for r in peer)
    compare = next(s for s in sentences if s.startswith("The same model on another provider"))
    assert f"openrouter-kimi-k2.5, passed {peer_ok}/{len(peer)} " in compare
    assert "route:kimi" not in compare
    # the route is the fix, with its cost in requests per call
    route = by_target["route:kimi"]
    route_ok = sum(r["passed"] for r in route)
    requests = sum(r["requests"] for r in route) / len(route)
    fix = next(s for s in sentences if s.startswith("The fix:"))
    assert f"route:kimi passed {route_ok}/{len(route)}" in fix
    assert f"at {requests:.2f} requests per call" in fix

    # the compound sentence: the per-call rate to the fifth power
    rate = (n - len(failed)) / n
    agent = next(s for s in sentences if s.startswith("At "))
    assert agent.startswith(f"At {_pct(n - len(failed), n)} per call, an agent that needs 5 ")
    assert f"succeeds {_pct(round(rate**5 * 10**6), 10**6)} of the time" in agent
    assert len(sentences) == 4  # headline, comparison, fix, compound: nothing unchecked

    md = (run_dir / "report.md").read_text(encoding="utf-8")
    for sentence in sentences:
        assert sentence in md
    for section in (
        "## Recommendations",
        "## Root Cause",
        "## Representative Failure",
        "## Failing Attempts",
        "## Files",
    ):
        assert section in md, section
    assert "Route through route:kimi" in md
    assert "**Supported**: Throttling" in md
    assert "**Ruled out**: The network" in md
    # the representative failure is the headline target's dominant mode, not the first failure
    rep = md.split("## Representative Failure", 1)[1].split("## Failing Attempts", 1)[0]
    top = max(hangs, throttles, stops)
    dominant = [
        name
        for name, count in (("stall_no_events", hangs), ("http_error", throttles))
        if count == top
    ]
    shown = re.search(r"attempt (\d+), started [^:]+:\d\d:[\d.]+ UTC: `(\w+)`", rep)
    assert shown is not None
    assert shown.group(2) in dominant
    assert rep.startswith("\n\nbedrock-kimi-k2.5 · tool-result")
    events = rep.split("```", 2)[1]
    if shown.group(2) == "stall_no_events":
        assert not re.search(r"s  event \w", events)  # a hang: headers, then nothing
        assert "HTTP 200 application/vnd.amazon.eventstream, request id " in events
    else:
        assert "HTTP 429 application/json, request id " in events
    # every failing attempt has a row: its request id (Bedrock's) and its capture file
    table = md.split("## Failing Attempts", 1)[1].split("## Proof", 1)[0]
    every_failure = [r for r in records if not r["passed"]]
    assert f"Every failing attempt ({len(every_failure)})" in table
    for r in every_failure:
        assert r["capture"]
        assert r["capture"] in table
        if r["target"] == "bedrock-kimi-k2.5":
            assert r["request_id"] in table
    # full failure details: never cut mid-word
    assert "…" not in md
    # no Python reprs
    # (request ids are UUIDs, whose hex may spell "e-0": they are not numbers)
    prose = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "", md)
    for leak in ("None", "{'", "': ", "e-0"):
        assert leak not in prose.replace("'content_filtered'", ""), leak


def test_capture_decodes_into_timed_events(
    mixed: tuple[Path, list[dict[str, Any]], dict[str, Any]],
) -> None:
    run_dir, records, _ = mixed
    stop = next(r for r in records if r["outcome"] == "abnormal_stop" and r["target"][0] == "b")
    events = decode_capture_events(run_dir / stop["capture"])
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["request", "headers"]
    assert kinds[-1] == "end"
    assert "event messageStart" in kinds
    assert "event messageStop" in kinds
    message_stop = next(e for e in events if e.kind == "event messageStop")
    assert '"stopReason": "content_filtered"' in message_stop.text
    times = [e.t for e in events]
    assert times == sorted(times)


def test_every_record_capture_exists_and_no_passing_capture_is_kept(
    mixed: tuple[Path, list[dict[str, Any]], dict[str, Any]],
) -> None:
    run_dir, records, _ = mixed
    named: list[str] = []
    for r in records:
        if r["passed"]:
            assert r["capture"] is None
            continue
        assert r["capture"], r
        assert (run_dir / r["capture"]).is_file(), r["capture"]
        named.append(r["capture"])
        # a routed call's capture is its last attempt's; its other attempts have their own
        named += [
            a["capture"]
            for a in r["route_attempts"]
            if a.get("capture") and a["capture"] != r["capture"]
        ]
    assert len(set(named)) == len(named)  # no two records share a file
    on_disk = {p.relative_to(run_dir).as_posix() for p in (run_dir / "captures").iterdir()}
    assert set(named) <= on_disk


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("headless Chromium is not installed (.ci/run installs it)")
    return path


@pytest.mark.chromium
@pytest.mark.slow
def test_html_renders_in_chromium_with_charts_and_the_failing_table(
    mixed: tuple[Path, list[dict[str, Any]], dict[str, Any]], tmp_path: Path
) -> None:
    run_dir, records, _ = mixed
    chromium = _chromium()
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    for chart in ("outcomes", "timeline", "latency", "compound"):
        assert f'data-chart="{chart}"' in html, chart
    assert '<table class="failures">' in html
    assert "@media print" in html
    assert "<details" not in html
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    url = (run_dir / "report.html").as_uri()
    shot = tmp_path / "report.png"
    subprocess.run(
        [*base, "--window-size=1280,5000", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pdf = tmp_path / "report.pdf"
    subprocess.run(
        [*base, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert pdf.read_bytes().startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf.read_bytes()))
    assert pages >= 2
    # the layout in the DOM Chromium built: the failing table and the charts are there
    dom = subprocess.run(
        [*base, "--window-size=1280,5000", "--dump-dom", url],
        capture_output=True,
        timeout=120,
        check=True,
        text=True,
    ).stdout
    assert dom.count('<rect class="fail"') == sum(not r["passed"] for r in records)
    assert "Failing attempts (" in dom
    _check_screenshot(shot)


def _check_screenshot(shot: Path) -> None:
    """The screenshot is 1280 px wide and holds the charts' colours: the failing bars' red and
    the passing green (an unrendered page is white)."""
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG")
    width = int.from_bytes(data[16:20], "big")
    assert width == 1280
    try:
        from PIL import Image
    except ImportError:  # pillow is optional; the DOM checks above still hold
        return
    with Image.open(shot) as image:
        colours = {c for _, c in (image.convert("RGB").getcolors(1 << 24) or [])}
    assert (0xD6, 0x28, 0x28) in colours  # stall_no_events
    assert (0x2E, 0x9D, 0x57) in colours  # ok


def test_names_that_sanitise_alike_never_share_a_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``kimi@bedrock`` fails and ``kimi_bedrock`` passes on the same attempt numbers; two
    non-Latin names likewise. Every failing capture survives, each under its own name."""
    (tmp_path / "faults.toml").write_text(
        '[[rules]]\nmodel = "moonshotai.kimi-k2.5"\napi = "bedrock"\n'
        'fault = "http_error:429"\nprobability = 1.0\n'
    )
    config = tmp_path / "callproof.toml"
    config.write_text(
        """\
[defaults]
n = 3
timeouts = { connect = 5.0, first_event = 5.0, idle = 5.0, deadline = 30.0 }
[emulator]
preset = "fast"
seed = 1
faults = "faults.toml"
[providers.bedrock]
api = "bedrock-converse-stream"
endpoint = "emulator"
region = "us-east-1"
[targets."kimi@bedrock"]
provider = "bedrock"
model = "moonshotai.kimi-k2.5"
[targets.kimi_bedrock]
provider = "bedrock"
model = "amazon.nova-pro-v1:0"
[targets."キミ"]
provider = "bedrock"
model = "moonshotai.kimi-k2.5"
[targets."カミ"]
provider = "bedrock"
model = "amazon.nova-pro-v1:0"
"""
    )
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys,
        "run",
        "--config",
        str(config),
        "--no-history",
        "--capture-failures",
        "--out",
        str(out),
    )
    assert code == 0, err
    records = list(read_records(out))
    failing = [r for r in records if not r["passed"]]
    assert {r["target"] for r in failing} == {"kimi@bedrock", "キミ"}
    assert len(failing) == 6
    captures = [r["capture"] for r in failing]
    assert len(set(captures)) == 6
    for path in captures:
        assert (out / path).is_file(), path
    assert len(list((out / "captures").iterdir())) == 6
    assert all(r["capture"] is None for r in records if r["passed"])


def test_a_corrupted_line_is_reported_and_fails_under_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    good = {
        "target": "t",
        "scenario": "tool-result",
        "attempt": 1,
        "outcome": "ok",
        "passed": True,
        "timings": {"total_s": 0.1},
    }
    lines = [json.dumps({**good, "attempt": i}) for i in range(1, 7)]
    lines[2] = lines[2][: len(lines[2]) // 2]  # a torn write in the middle of the file
    (run_dir / "results.jsonl").write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(capsys, "report", str(run_dir))
    assert code == 0, err
    assert "warning: results.jsonl line 3 is not a record" in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["totals"]["attempts"] == 5
    assert summary["corrupt_lines"][0]["line"] == 3
    md = (run_dir / "report.md").read_text()
    assert "## Warning: Unreadable Records" in md
    assert "- line 3: " in md
    code, _, err = run_cli(capsys, "report", "--strict", str(run_dir))
    assert code == 1
    assert "line 3" in err
    assert "Traceback" not in err


def test_model_families_match_across_providers() -> None:
    assert model_family("moonshotai.kimi-k2.5") == model_family("moonshotai/kimi-k2.5")
    assert model_family("us.moonshotai.kimi-k2.5") == model_family("moonshotai/kimi-k2.5")
    assert model_family("amazon.nova-pro-v1:0") != model_family("moonshotai/kimi-k2.5")
    assert model_family("mistral.mistral-large-3-675b-instruct") == model_family(
        "mistralai/mistral-large-3-675b-instruct"
    )


def test_terminal_output_fits_80_columns_without_breaking_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = tmp_path / "run"
    (tmp_path / "faults.toml").write_text(MIXED_FAULTS)
    config = tmp_path / "callproof.toml"
    config.write_text(MIXED_TOML.format(n=20, seed=11))
    code, stdout, err = run_cli(
        capsys, "run", "--config", str(config), "--no-history", "--out", str(out)
    )
    assert code == 0, err
    lines = stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    tokens = set(stdout.split())
    summary = json.loads((out / "summary.json").read_text())
    for sentence in executive_summary(summary):
        for word in sentence.split():
            assert word in tokens, word  # wrapped at word boundaries, never inside one
    for record in read_records(out):
        if record["attempt"] <= 20 and record.get("detail"):
            for word in str(record["detail"]).split():
                assert word in tokens, word
    for leak in ("None", "{'"):
        assert leak not in stdout, leak


def test_compare_with_names_the_comparison_and_is_validated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "faults.toml").write_text(MIXED_FAULTS)
    config = tmp_path / "callproof.toml"
    text = MIXED_TOML.format(n=10, seed=11).replace(
        'model = "moonshotai.kimi-k2.5"\n',
        'model = "moonshotai.kimi-k2.5"\ncompare_with = "bedrock-nova-pro"\n',
        1,
    )
    config.write_text(text)
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "run", "--config", str(config), "--no-history", "--out", str(out)
    )
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["compare_with"] == {"bedrock-kimi-k2.5": "bedrock-nova-pro"}
    sentences = executive_summary(summary)
    assert any(
        s.startswith("Its comparison target (compare_with), bedrock-nova-pro, passed")
        for s in sentences
    ), sentences
    # report DIR keeps the choice
    code, _, err = run_cli(capsys, "report", str(out), "-q")
    assert code == 0, err
    assert (
        "Its comparison target (compare_with), bedrock-nova-pro" in (out / "report.md").read_text()
    )
    config.write_text(text.replace('compare_with = "bedrock-nova-pro"', 'compare_with = "nope"'))
    code, _, err = run_cli(capsys, "run", "--config", str(config), "--no-history")
    assert code == 2
    assert "compare_with names no other target: 'nope'" in err


def test_root_cause_tells_whether_hangs_follow_throttling() -> None:
    from callproof.probe.summary import Aggregator
    from callproof.report.evidence import root_cause

    def rec(i: int, outcome: str) -> dict[str, Any]:
        error = {"status": 429} if outcome == "http_error" else None
        return {
            "target": "k",
            "scenario": "s",
            "attempt": i,
            "outcome": outcome,
            "passed": outcome == "ok",
            "error": error,
            "started_at": f"2026-12-01T10:00:{i:02d}.000Z",
            "timings": {"headers_s": 0.01, "total_s": 1.0},
        }

    def verdict(pattern: list[str]) -> bool:
        records = [rec(i, o) for i, o in enumerate(pattern)]
        summary = Aggregator().add_all(records).summary()
        timeline = [
            (r["started_at"], r["target"], r["scenario"], r["outcome"], r["passed"])
            for r in records
        ]
        failures = [r for r in records if not r["passed"]]
        (burst,) = [
            h for h in root_cause(summary, {}, failures, None, timeline) if "throttling" in h.cause
        ]
        return burst.supported

    bursts = ["ok", "http_error", "stall_no_events"] * 4 + ["ok"] * 8
    assert verdict(bursts) is True  # every hang right after a throttle
    apart = ["http_error", "ok", "ok", "stall_no_events", "ok", "ok"] * 4
    assert verdict(apart) is False
