"""Pieces every report shares: the seed's per-attempt line, outcome meanings, the worst target."""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from callproof.probe.stats import format_p, format_pct
from callproof.probe.summary import read_records

__all__ = [
    "ATTEMPT_LINE_CAP",
    "OUTCOME_MEANINGS",
    "AttemptLines",
    "Evidence",
    "attempt_line",
    "collect_attempt_lines",
    "executive_summary",
    "failed_line",
    "find_failing_record",
    "gather_evidence",
    "passed_line",
    "snippet",
    "worst_entry",
]

#: Attempt lines shown per (target, scenario) in reports; the rest are counted ("... N more").
ATTEMPT_LINE_CAP = 200

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


def snippet(record: dict[str, Any], width: int = 60) -> str:
    """The answer in one short line: the text, else the tool calls made."""
    text = _SPACES.sub(" ", str(record.get("text") or "")).strip()
    if not text:
        calls = record.get("tool_calls") or []
        text = ", ".join(
            f"→ {c.get('name')}({json.dumps(c.get('arguments'), ensure_ascii=False)})"
            for c in calls
            if isinstance(c, dict)
        )
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text


def attempt_line(record: dict[str, Any], *, detail_width: int = 70) -> str:
    """``Test  1: ✅ OK       Tokyo's temperature is: 22°C`` / ``Test  2: ❌ STALL_NO_EVENTS``."""
    number = record.get("attempt") or record.get("seq") or 0
    outcome = str(record.get("outcome") or "unknown")
    passed = bool(record.get("passed", outcome == "ok"))
    if passed:
        return f"Test {number:>2}: ✅ {'OK':<9}{snippet(record)}".rstrip()
    line = f"Test {number:>2}: ❌ {outcome.upper()}"
    detail = _SPACES.sub(" ", str(record.get("detail") or "")).strip()
    if detail and detail_width > 0:
        if len(detail) > detail_width:
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
    """The entry with the lowest pass rate that failed at least once (most attempts on ties)."""
    results: list[dict[str, Any]] = summary.get("results", [])
    failing = [e for e in results if e["n"] and e["passed"] < e["n"]]
    if not failing:
        return None
    return min(failing, key=lambda e: (e["pass_rate"], -e["n"]))


def _best_peer(summary: dict[str, Any], worst: dict[str, Any]) -> dict[str, Any] | None:
    results: list[dict[str, Any]] = summary.get("results", [])
    peers = [
        e
        for e in results
        if e["scenario"] == worst["scenario"] and e["target"] != worst["target"] and e["n"]
    ]
    if not peers:
        return None
    # Among the best peers, prefer the same model served elsewhere (the fair comparison).
    mine = _model_key(worst)
    return max(
        peers,
        key=lambda e: (e["pass_rate"], SequenceMatcher(None, mine, _model_key(e)).ratio(), e["n"]),
    )


def _model_key(entry: dict[str, Any]) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(entry.get("model") or entry["target"]).lower())


def _comparison(summary: dict[str, Any], a: str, b: str, scenario: str) -> dict[str, Any] | None:
    comparisons: list[dict[str, Any]] = summary.get("comparisons", [])
    for c in comparisons:
        if c["scenario"] == scenario and {c["a"], c["b"]} == {a, b}:
            return c
    return None


def executive_summary(summary: dict[str, Any]) -> list[str]:
    """Sentences for the top of a report: the worst target, its failure mode, what it costs."""
    results = summary.get("results", [])
    if not results:
        return ["No attempts were recorded."]
    worst = worst_entry(summary)
    if worst is None:
        total = sum(e["n"] for e in results)
        return [f"Every target passed every attempt ({total} attempts): no failure observed."]
    failed = worst["n"] - worst["passed"]
    mode = worst["worst_failure"] or "unknown"
    meaning = OUTCOME_MEANINGS.get(mode, worst.get("failure_details", {}).get(mode, ""))
    first = (
        f"{worst['target']} fails {failed}/{worst['n']} ({format_pct(failed / worst['n'])}) "
        f"of {worst['scenario']} requests: {mode}" + (f" ({meaning})" if meaning else "") + "."
    )
    sentences = [first]
    peer = _best_peer(summary, worst)
    if peer is not None:
        line = (
            f"{peer['target']} passed {peer['passed']}/{peer['n']} "
            f"({format_pct(peer['pass_rate'])}) of the same requests"
        )
        comparison = _comparison(summary, worst["target"], peer["target"], worst["scenario"])
        if comparison is not None:
            significance = (
                "a significant difference"
                if comparison["significant"]
                else "not a significant difference at this n"
            )
            line += f" (Fisher's exact test {format_p(comparison['p_value'])}: {significance})"
        sentences.append(line + ".")
    steps = worst["compound"][-1] if worst["compound"] else None
    if steps is not None:
        sentences.append(
            f"At {format_pct(worst['pass_rate'])} per call, an agent that needs "
            f"{steps['steps']} sequential tool uses succeeds {format_pct(steps['success'])} "
            f"of the time (95% CI {format_pct(steps['ci95'][0])}–{format_pct(steps['ci95'][1])})."
        )
    return sentences


@dataclass
class AttemptLines:
    """Per (target, scenario): the first attempts' records (by attempt number) and a count."""

    records: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0

    @property
    def more(self) -> int:
        return self.total - len(self.records)


def _slim(record: dict[str, Any]) -> dict[str, Any]:
    keep = ("attempt", "seq", "outcome", "passed", "detail", "text", "tool_calls", "timings")
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
    """Watches records go by and keeps the best failing one to show raw."""

    def __init__(self, prefer: tuple[str, str] | None) -> None:
        self.prefer = prefer
        self.best: dict[str, Any] | None = None
        self._score = -1

    def watch(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for record in records:
            if self._score < 3 and not record.get("passed"):
                key = (record.get("target"), record.get("scenario"))
                score = (2 if self.prefer and key == self.prefer else 0) + (
                    1 if record.get("capture") else 0
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


def gather_evidence(
    run_dir: Path, summary: dict[str, Any], cap: int = ATTEMPT_LINE_CAP
) -> Evidence:
    """Attempt lines per (target, scenario) and one failing record (of the worst target)."""
    results = run_dir / "results.jsonl"
    if not results.exists():
        return Evidence(lines={}, failing=None)
    worst = worst_entry(summary)
    picker = _FailingPicker((worst["target"], worst["scenario"]) if worst else None)
    lines = collect_attempt_lines(picker.watch(read_records(results)), cap)
    return Evidence(lines=lines, failing=picker.best)
