"""Pieces every report shares: the seed's per-attempt line, outcome meanings, the worst target."""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callproof.probe.stats import format_pct
from callproof.probe.summary import CorruptLine, read_records
from callproof.record import AttemptRecord
from callproof.report.evidence import headline, headline_entry, mode_of, mode_rates

__all__ = [
    "ATTEMPT_LINE_CAP",
    "FAILURE_COLUMNS",
    "FAILURE_ROWS_CAP",
    "OUTCOME_MEANINGS",
    "TIMELINE_CAP",
    "AttemptLines",
    "Evidence",
    "attempt_line",
    "collect_attempt_lines",
    "executive_summary",
    "failed_line",
    "failure_row",
    "file_lines",
    "find_failing_record",
    "gather_evidence",
    "passed_line",
    "snippet",
    "worst_entry",
]

#: Attempt lines shown per (target, scenario) in reports; the rest are counted ("... N more").
ATTEMPT_LINE_CAP = 200

#: Failing attempts listed in the reports' table (the rest are counted).
FAILURE_ROWS_CAP = 1000
#: Attempts drawn on the timeline chart (past it, every k-th attempt is kept).
TIMELINE_CAP = 5000

#: One line per outcome: what a reader of the report needs to know it means.
OUTCOME_MEANINGS: dict[str, str] = {
    "ok": "finished cleanly and met the scenario's expectations",
    "stall_before_headers": "no response headers within the first-event timeout",
    "stall_no_events": "headers, then no stream events",
    "stall_mid_stream": "events, then a gap longer than the idle timeout",
    "deadline_exceeded": "the total deadline passed",
    "incomplete_stream": "the stream ended without its terminal event",
    "empty_response": "a normal stop with no text and no tool call",
    "abnormal_stop": "a stop reason other than end_turn, tool_use and stop_sequence",
    "tool_call_malformed": "tool-call arguments not JSON, not matching the schema, or unknown tool",
    "tool_call_in_text": "tool-call markup in the text in place of a structured call",
    "http_error": "a non-2xx answer",
    "stream_exception": "an exception frame or a mid-stream error chunk",
    "protocol_error": "an undecodable frame, a CRC mismatch, invalid JSON in an event",
    "transport_error": "connection refused, reset, or TLS failure",
    "expectation_failed": "finished cleanly but failed the scenario's check",
}

_SPACES = re.compile(r"\s+")


def snippet(record: AttemptRecord | Mapping[str, Any], width: int = 60) -> str:
    """The answer in one short line: the text, else the tool calls made."""
    rec = AttemptRecord.of(record)
    text = _SPACES.sub(" ", rec.text).strip()
    if not text:
        text = ", ".join(
            f"→ {c.name}({json.dumps(c.arguments, ensure_ascii=False)})" for c in rec.tool_calls
        )
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text


def attempt_line(
    record: AttemptRecord | Mapping[str, Any], *, detail_width: int | None = None
) -> str:
    """``Test  1: ✅ OK       Tokyo's temperature is: 22°C`` / ``Test  2: ❌ STALL_NO_EVENTS``."""
    rec = AttemptRecord.of(record)
    number = rec.attempt or rec.seq
    if rec.passed:
        return f"Test {number:>2}: ✅ {'OK':<9}{snippet(rec)}".rstrip()
    line = f"Test {number:>2}: ❌ {str(rec.outcome).upper()}"
    detail = _SPACES.sub(" ", rec.detail).strip()
    if detail and detail_width != 0:
        if detail_width is not None and len(detail) > detail_width:
            detail = detail[: detail_width - 1] + "…"
        line += f"  ({detail})"
    return line


def passed_line(entry: dict[str, Any]) -> str:
    """``Passed: 6/10 (60%)``."""
    return f"Passed: {entry['passed']}/{entry['n']} ({format_pct(entry['pass_rate'])})"


def failed_line(entry: dict[str, Any]) -> str:
    """``Failed: 4/10 (40% STALL_NO_EVENTS)``, or ``Failed: 0/10``."""
    n = entry["n"]
    failed = n - entry["passed"]
    if failed == 0 or n == 0:
        return f"Failed: {failed}/{n}"
    parts = [
        f"{format_pct(count / n)} {name.upper()}"
        for name, count in entry["outcomes"].items()
        if name != "ok" and count
    ]
    return f"Failed: {failed}/{n} ({', '.join(parts)})"


def worst_entry(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The entry the report is about (see :func:`callproof.report.evidence.headline_entry`)."""
    return headline_entry(summary)


def executive_summary(summary: dict[str, Any]) -> list[str]:
    """Sentences for the top of a report: the worst target, each failure mode with its own
    rate, the same model on another provider, the fix, what it costs an agent."""
    return headline(summary, summary.get("compare_with"))


@dataclass
class AttemptLines:
    """Per (target, scenario): the first attempts' records (by attempt number) and a count."""

    records: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0

    @property
    def more(self) -> int:
        return self.total - len(self.records)


def _slim(record: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "target",
        "scenario",
        "attempt",
        "seq",
        "outcome",
        "passed",
        "detail",
        "text",
        "tool_calls",
        "timings",
        "started_at",
        "request_id",
        "capture",
        "error",
        "stop_reason",
        "raw_stop_reason",
    )
    slim = {k: record.get(k) for k in keep}
    slim["text"] = str(slim["text"] or "")[:200]
    return slim


def collect_attempt_lines(
    records: Iterable[dict[str, Any]], cap: int = ATTEMPT_LINE_CAP
) -> dict[tuple[str, str], AttemptLines]:
    """Keep, per (target, scenario), the ``cap`` lowest-numbered attempts (bounded memory)."""
    heaps: dict[tuple[str, str], list[tuple[int, int, dict[str, Any]]]] = {}
    totals: dict[tuple[str, str], int] = {}
    for order, record in enumerate(records):
        key = (str(record.get("target")), str(record.get("scenario")))
        totals[key] = totals.get(key, 0) + 1
        number = int(record.get("attempt") or record.get("seq") or 0)
        heap = heaps.setdefault(key, [])
        item = (-number, -order, _slim(record))
        if len(heap) < cap:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)
    out: dict[tuple[str, str], AttemptLines] = {}
    for key, heap in heaps.items():
        ordered = [rec for _, _, rec in sorted(heap, key=lambda t: (-t[0], -t[1]))]
        out[key] = AttemptLines(records=ordered, total=totals[key])
    return out


class _FailingPicker:
    """Watches records go by and keeps the failing one to show raw: of the preferred (target,
    scenario), in its dominant failure mode, with a capture, in that order of weight."""

    def __init__(self, prefer: tuple[str, str] | None, mode: str | None = None) -> None:
        self.prefer = prefer
        self.mode = mode
        self.best: dict[str, Any] | None = None
        self._score = -1

    def watch(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for record in records:
            if self._score < 7 and not record.get("passed"):
                key = (record.get("target"), record.get("scenario"))
                score = (
                    (4 if self.prefer and key == self.prefer else 0)
                    + (2 if self.mode and mode_of(record) == self.mode else 0)
                    + (1 if record.get("capture") else 0)
                )
                if score > self._score:
                    self.best, self._score = record, score
            yield record


def find_failing_record(
    run_dir: Path, prefer: tuple[str, str] | None = None
) -> dict[str, Any] | None:
    """A failing record to show raw: of ``prefer`` (target, scenario) first, captured first."""
    results = run_dir / "results.jsonl"
    if not results.exists():
        return None
    picker = _FailingPicker(prefer)
    for _ in picker.watch(read_records(results)):
        pass
    return picker.best


@dataclass
class Evidence:
    """What the reports need from ``results.jsonl``, gathered in one streaming pass."""

    lines: dict[tuple[str, str], AttemptLines]
    failing: dict[str, Any] | None
    #: Every failing attempt (slim records, in file order; at most FAILURE_ROWS_CAP).
    failures: list[dict[str, Any]] = field(default_factory=list)
    failures_total: int = 0
    #: (started_at, target, scenario, outcome, passed) of attempts, for the timeline chart.
    timeline: list[tuple[str, str, str, str, bool]] = field(default_factory=list)
    #: Lines of results.jsonl that are not records (reported, never dropped silently).
    corrupt: list[CorruptLine] = field(default_factory=list)


def _picker(summary: dict[str, Any]) -> _FailingPicker:
    worst = worst_entry(summary)
    if worst is None:
        return _FailingPicker(None)
    modes = mode_rates(worst)
    return _FailingPicker((worst["target"], worst["scenario"]), modes[0].name if modes else None)


def gather_evidence(
    run_dir: Path, summary: dict[str, Any], cap: int = ATTEMPT_LINE_CAP
) -> Evidence:
    """Attempt lines per (target, scenario), every failing attempt, the timeline points and
    the representative failure (the worst target's dominant failure mode), in one pass."""
    results = run_dir / "results.jsonl"
    if not results.exists():
        return Evidence(lines={}, failing=None)
    evidence = Evidence(lines={}, failing=None)
    picker = _picker(summary)
    total = int((summary.get("totals") or {}).get("attempts") or 0)
    every = max(1, -(-total // TIMELINE_CAP)) if total else 1

    def tap(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for i, record in enumerate(records):
            passed = bool(record.get("passed"))
            if not passed:
                evidence.failures_total += 1
                if len(evidence.failures) < FAILURE_ROWS_CAP:
                    evidence.failures.append(_slim(record))
            if record.get("started_at") and (not passed or i % every == 0):
                evidence.timeline.append(
                    (
                        str(record["started_at"]),
                        str(record.get("target")),
                        str(record.get("scenario")),
                        str(record.get("outcome")),
                        passed,
                    )
                )
            yield record

    stream = read_records(results, evidence.corrupt)
    evidence.lines = collect_attempt_lines(tap(picker.watch(stream)), cap)
    evidence.failing = picker.best
    evidence.failures.sort(key=lambda r: str(r.get("started_at") or ""))
    return evidence


#: Columns of the failing-attempts table (markdown and HTML).
FAILURE_COLUMNS = (
    "Target",
    "Attempt",
    "Start (UTC)",
    "Request id",
    "Outcome",
    "Headers",
    "First event",
    "Ended",
    "Capture",
    "Detail",
)


def _secs(value: Any) -> str:
    return f"{value:.3f} s" if isinstance(value, (int, float)) else "-"


def failure_row(record: dict[str, Any]) -> list[str]:
    """One failing attempt as table cells (see :data:`FAILURE_COLUMNS`); the detail is whole."""
    timings = record.get("timings") or {}
    started = str(record.get("started_at") or "-").replace("T", " ").removesuffix("Z")
    return [
        f"{record.get('target')} · {record.get('scenario')}",
        str(record.get("attempt") or "-"),
        started,
        str(record.get("request_id") or "-"),
        mode_of(record),
        _secs(timings.get("headers_s")),
        _secs(timings.get("first_event_s")),
        _secs(timings.get("total_s")),
        str(record.get("capture") or "-"),
        _SPACES.sub(" ", str(record.get("detail") or "")).strip() or "-",
    ]


def file_lines(run_dir: Path, evidence: Evidence) -> list[str]:
    """The run directory's files, one line each, with the captures counted and checked."""
    out = [
        f"{run_dir}/results.jsonl: one JSON record per attempt",
        f"{run_dir}/summary.json: the statistics of this report",
        f"{run_dir}/run.json: the plan, targets, exact request bodies and environment",
        f"{run_dir}/report.md, report.html: this report",
    ]
    captures = run_dir / "captures"
    if captures.is_dir():
        count = sum(1 for _ in captures.glob("*.jsonl"))
        named = [str(r["capture"]) for r in evidence.failures if r.get("capture")]
        missing = [c for c in named if not (run_dir / c).is_file()]
        line = f"{run_dir}/captures/: {count} raw wire captures of failing attempts"
        if missing:
            line += f"; {len(missing)} named in results.jsonl are missing: {', '.join(missing)}"
        elif named:
            line += "; every capture named in results.jsonl is present"
        out.append(line)
    return out
