"""``report.md``: an evidence report in the seeds' own form.

Title and date; an executive summary naming the worst target with each failure mode's own rate,
the same model on another provider, and the route that fixes it; Recommendations and a Root
Cause section derived from the data; the representative failure (the worst target's dominant
failure mode) with its capture decoded into timed events; a table of every failing attempt
(UTC start, request id, outcome, header and first-event times, capture file); every attempt of
every target as ``Test  N: ✅ OK <text>`` lines with ``Passed:``/``Failed:`` totals; the compound
table, comparisons with Fisher's exact test, routes, latency; the methodology (the exact request
sent, timeouts, environment, what each outcome means) and the run's Files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from callproof.errors import ConfigError
from callproof.probe.rundir import write_text_atomic
from callproof.probe.stats import format_pct
from callproof.redact import redact_argv
from callproof.report.common import (
    FAILURE_COLUMNS,
    OUTCOME_MEANINGS,
    AttemptLines,
    Evidence,
    attempt_line,
    executive_summary,
    failed_line,
    failure_row,
    file_lines,
    gather_evidence,
    passed_line,
    worst_entry,
)
from callproof.report.decode import decode_capture_events, format_events
from callproof.report.evidence import mode_rates, recommendations, root_cause
from callproof.report.meta import (
    grouped_requests,
    meta_scenarios,
    meta_targets,
    pretty_json,
    target_row,
)

__all__ = [
    "NO_CAPTURE_HINT",
    "environment_rows",
    "raw_attempt_text",
    "render_markdown",
    "write_markdown",
]

_RAW_LINES_CAP = 80
#: Said where a failure has no capture: how to keep the wire evidence next time.
NO_CAPTURE_HINT = (
    "No wire capture was kept for it: run with --capture-failures to keep the raw bytes of "
    "every failing attempt, decoded here into timed events."
)
_RAW_LINE_WIDTH = 4000


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _title(summary: dict[str, Any]) -> str:
    worst = worst_entry(summary)
    if not summary.get("results"):
        return "callproof evidence: no attempts recorded"
    if worst is None:
        return "callproof evidence: no failures observed"
    failed = worst["n"] - worst["passed"]
    modes = ", ".join(f"{m.name} {format_pct(m.rate)}" for m in mode_rates(worst))
    return (
        f"callproof evidence: {worst['target']} fails {format_pct(failed / worst['n'])} "
        f"of {worst['scenario']} requests ({modes})"
    )


def _target_heading(entry: dict[str, Any]) -> str:
    verdict = "PASSES" if entry["passed"] == entry["n"] else "FAILS"
    where = " · ".join(str(entry[k]) for k in ("api", "model") if entry.get(k))
    suffix = f" — {where}" if where else ""
    return f"### {entry['target']} ({verdict}){suffix}"


def _attempt_block(entry: dict[str, Any], lines: AttemptLines | None) -> list[str]:
    out = ["```", f"Running {entry['n']} identical {entry['scenario']} requests...", ""]
    if lines is not None:
        out.extend(attempt_line(record) for record in lines.records)
        if lines.more:
            out.append(f"... {lines.more} more")
        out.append("")
    out += [passed_line(entry), failed_line(entry), "```", ""]
    ci = entry["ci95"]
    lat = entry["latency_s"]
    out.append(
        f"Pass rate {format_pct(entry['pass_rate'])}, 95% Wilson interval "
        f"{format_pct(ci[0])}–{format_pct(ci[1])}. Passing attempts: first event p50 "
        f"{_seconds(lat['first_event']['p50'])}, total p50 {_seconds(lat['total']['p50'])}, "
        f"p90 {_seconds(lat['total']['p90'])}."
    )
    details = entry.get("failure_details") or {}
    for name, detail in details.items():
        out.append(f"- `{name}` example: {detail}")
    out.append("")
    return out


def _compound_tables(summary: dict[str, Any]) -> list[str]:
    results = summary["results"]
    worst = worst_entry(summary) or (results[0] if results else None)
    if worst is None:
        return []
    out = ["## Why It Compounds", ""]
    failed = worst["n"] - worst["passed"]
    out.append(
        f"{worst['target']}'s {format_pct(failed / worst['n'])} failure rate on "
        f"{worst['scenario']} compounds with each tool use an agent makes:"
    )
    out += [
        "",
        "| Tool Uses | Success Probability | 95% CI |",
        "|-----------|---------------------|--------|",
    ]
    for row in worst["compound"]:
        lo, hi = row["ci95"]
        out.append(
            f"| {row['steps']} | {format_pct(row['success'])} | {format_pct(lo)}–{format_pct(hi)} |"
        )
    out.append("")
    if len(results) > 1:
        header = (
            "| Tool Uses | "
            + " | ".join(_cell(f"{e['target']} · {e['scenario']}") for e in results)
            + " |"
        )
        out += ["All targets:", "", header, "|---" * (len(results) + 1) + "|"]
        steps = max(len(e["compound"]) for e in results)
        for k in range(steps):
            cells = [
                format_pct(e["compound"][k]["success"]) if k < len(e["compound"]) else "-"
                for e in results
            ]
            out.append(f"| {k + 1} | " + " | ".join(cells) + " |")
        out.append("")
    out += [
        "pass^k (the chance that k attempts in a row all pass, unbiased estimate C(c,k)/C(n,k)):",
        "",
        "| Target | Scenario | " + " | ".join(f"pass^{k}" for k in range(1, 6)) + " |",
        "|---|---|" + "---|" * 5,
    ]
    for e in results:
        values = [e["pass_hat_k"].get(str(k)) for k in range(1, 6)]
        cells = [format_pct(v) if v is not None else "n/a" for v in values]
        out.append(f"| {_cell(e['target'])} | {_cell(e['scenario'])} | " + " | ".join(cells) + " |")
    out.append("")
    return out


def _comparisons(summary: dict[str, Any]) -> list[str]:
    comparisons = summary.get("comparisons", [])
    if not comparisons:
        return []
    out = [
        "## Comparisons",
        "",
        "Fisher's exact test, two-sided, on passes and failures; significant at p < 0.05.",
        "",
        "| Scenario | A | B | A passed | B passed | p-value | Verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    ordered = sorted(comparisons, key=lambda c: (not c["significant"], c["p_value"]))
    out.extend(
        f"| {_cell(c['scenario'])} | {_cell(c['a'])} | {_cell(c['b'])} | "
        f"{c['a_passed']}/{c['a_n']} | {c['b_passed']}/{c['b_n']} | {c['p_value']:.4f} | "
        + (f"**{_cell(c['verdict'])}**" if c["significant"] else _cell(c["verdict"]))
        + " |"
        for c in ordered
    )
    out.append("")
    return out


def _routes(summary: dict[str, Any]) -> list[str]:
    routes = [e for e in summary["results"] if "route" in e]
    if not routes:
        return []
    out = [
        "## Routes",
        "",
        "| Route | Scenario | Success | 95% CI | p50 total | p90 total | Requests per call | "
        "Calls with fallback | Served by |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in routes:
        route = e["route"]
        served = ", ".join(f"{k}: {v}" for k, v in route["served_by"].items()) or "-"
        rpc = e["requests_per_call"]
        out.append(
            f"| {_cell(e['target'])} | {_cell(e['scenario'])} | {e['passed']}/{e['n']} "
            f"({format_pct(e['pass_rate'])}) | {format_pct(e['ci95'][0])}–"
            f"{format_pct(e['ci95'][1])} | {_seconds(e['latency_s']['total']['p50'])} | "
            f"{_seconds(e['latency_s']['total']['p90'])} | "
            f"{'-' if rpc is None else f'{rpc:.2f}'} | {route['calls_with_fallback']} | "
            f"{_cell(served)} |"
        )
    out.append("")
    for e in routes:
        by_target = e["route"]["attempts_by_target"]
        if by_target:
            out.append(f"Attempts inside {e['target']} ({e['scenario']}):")
            out.append("")
            for name, info in by_target.items():
                outcomes = ", ".join(f"{k} {v}" for k, v in info["outcomes"].items())
                out.append(f"- {name}: {info['attempts']} attempts ({outcomes})")
            out.append("")
    return out


def _latency(summary: dict[str, Any]) -> list[str]:
    out = [
        "## Latency of Passing Attempts",
        "",
        "| Target | Scenario | n | first event p50 | p90 | p99 | total p50 | p90 | p99 | mean |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in summary["results"]:
        fe, tot = e["latency_s"]["first_event"], e["latency_s"]["total"]
        out.append(
            f"| {_cell(e['target'])} | {_cell(e['scenario'])} | {tot['n']} | "
            f"{_seconds(fe['p50'])} | {_seconds(fe['p90'])} | {_seconds(fe['p99'])} | "
            f"{_seconds(tot['p50'])} | {_seconds(tot['p90'])} | {_seconds(tot['p99'])} | "
            f"{_seconds(tot['mean'])} |"
        )
    out.append("")
    return out


def _methodology(summary: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    out = ["## Test Methodology", ""]
    n = meta.get("n")
    if n is None and summary["results"]:
        n = summary["results"][0]["n"]
    out.append(
        f"Every target received the same request {n if n is not None else 'N'} times per "
        "scenario; each attempt is one "
        "fresh streaming call with callproof's clocks on it (first event, idle gap between "
        "decoded events, total deadline). A hang is an outcome: it is never retried inside a "
        "measured attempt."
    )
    out.append("")
    if meta.get("argv"):
        argv = meta["argv"]
        command = " ".join(redact_argv(argv if isinstance(argv, list) else [str(argv)]))
        out += ["Command:", "", "```", command, "```", ""]
    targets = meta_targets(meta)
    if targets:
        out += [
            "| Target | API | Model | Provider | Endpoint | Timeouts |",
            "|---|---|---|---|---|---|",
        ]
        for t in targets:
            out.append("| " + " | ".join(_cell(v) for v in target_row(t, meta)) + " |")
        out.append("")
    for scenario in meta_scenarios(meta):
        requests = grouped_requests(scenario)
        description = scenario.get("description")
        out.append(f"### Scenario {scenario.get('name')}")
        out.append("")
        if description:
            out += [str(description), ""]
        for names, body in requests[:8]:
            label = (
                f"Exact request body sent to {', '.join(names)}:"
                if names
                else "Exact request body:"
            )
            out += [label, "", "```json", pretty_json(body), "```", ""]
        if len(requests) > 8:
            out += [f"... and {len(requests) - 8} more request bodies in run.json", ""]
    env = environment_rows(meta)
    if env:
        out += ["Environment:", ""]
        out += [f"- {key}: {value}" for key, value in env]
        out.append("")
    out += [
        "Outcomes (each attempt ends in exactly one; only `ok` passes):",
        "",
        "| Outcome | Meaning |",
        "|---|---|",
    ]
    out += [f"| `{name}` | {meaning} |" for name, meaning in OUTCOME_MEANINGS.items()]
    out += [
        "",
        "Statistics: pass rates carry a 95% Wilson score interval; comparisons use Fisher's exact "
        "test (two-sided); the compound table is p^k with the interval carried through as "
        "(low^k, high^k); pass^k is tau-bench's unbiased C(c,k)/C(n,k); latency percentiles "
        "interpolate linearly between passing attempts.",
        "",
    ]
    return out


def environment_rows(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """``run.json``'s environment as (name, text) pairs: no ``None``, no dict reprs."""
    env = meta.get("environment")
    if not isinstance(env, dict):
        return []
    rows: list[tuple[str, str]] = []
    for key, value in env.items():
        if value is None or value == "":
            text = "not installed" if key != "emulator" else "not used (real endpoints)"
        elif isinstance(value, dict):
            text = ", ".join(f"{k} {v}" for k, v in value.items() if v not in (None, "")) or "-"
        elif isinstance(value, (list, tuple)):
            text = ", ".join(str(v) for v in value) or "-"
        else:
            text = str(value)
        rows.append((str(key), text))
    return rows


def raw_attempt_text(run_dir: Path, record: dict[str, Any]) -> tuple[str, str]:
    """The evidence of one attempt: (where it came from, text). Its capture decoded into timed
    events (eventstream headers and JSON payloads, SSE events) when there is one, else the
    results record."""
    capture = record.get("capture")
    if capture:
        path = (run_dir / str(capture)).resolve()
        # results.jsonl is data: a capture is only ever read from inside the run directory
        if path.is_relative_to(run_dir.resolve()) and path.is_file():
            try:
                events = decode_capture_events(path)
            except ConfigError:
                events = []
            if events:
                return (f"capture `{capture}`, decoded", format_events(events))
            lines: list[str] = []
            with path.open(encoding="utf-8", errors="replace") as fh:
                for number, line in enumerate(fh):
                    if number >= _RAW_LINES_CAP:
                        lines.append(f"... (cut at {_RAW_LINES_CAP} lines; see {capture})")
                        break
                    lines.append(line.rstrip("\n")[:_RAW_LINE_WIDTH])
            return (f"capture `{capture}`", "\n".join(lines))
    slim = {k: v for k, v in record.items() if k not in ("thinking",)}
    return ("results record", pretty_json(slim))


def _raw_failure(run_dir: Path, record: dict[str, Any] | None) -> list[str]:
    if record is None:
        return []
    source, text = raw_attempt_text(run_dir, record)
    started = str(record.get("started_at") or "").replace("T", " ").removesuffix("Z")
    return [
        "## Representative Failure",
        "",
        f"{record.get('target')} · {record.get('scenario')}, attempt {record.get('attempt')}"
        + (f", started {started} UTC" if started else "")
        + f": `{record.get('outcome')}`: {record.get('detail') or 'no detail'} "
        f"(request id {record.get('request_id') or 'not sent by the server'}; from the "
        f"{source}). Times are seconds since the request was sent."
        + ("" if record.get("capture") else f" {NO_CAPTURE_HINT}"),
        "",
        "```",
        text,
        "```",
        "",
    ]


def _recommendations(summary: dict[str, Any]) -> list[str]:
    items = recommendations(summary, summary.get("compare_with"))
    if not items:
        return []
    return ["## Recommendations", "", *(f"{i}. {item}" for i, item in enumerate(items, 1)), ""]


def _root_cause(summary: dict[str, Any], meta: dict[str, Any], evidence: Evidence) -> list[str]:
    hypotheses = root_cause(
        summary, meta, evidence.failures, summary.get("compare_with"), evidence.timeline
    )
    if not hypotheses:
        return []
    out = ["## Root Cause", "", "What the outcome mix supports and rules out:", ""]
    for h in hypotheses:
        mark = "**Supported**" if h.supported else "**Ruled out**"
        out.append(f"- {mark}: {h.cause}. {h.evidence[:1].upper()}{h.evidence[1:]}.")
    out.append("")
    return out


def _failing_table(evidence: Evidence) -> list[str]:
    if not evidence.failures:
        return []
    out = [
        "## Failing Attempts",
        "",
        f"Every failing attempt ({evidence.failures_total}), by start time; times are "
        "seconds from sending the request.",
        "",
        "| " + " | ".join(FAILURE_COLUMNS) + " |",
        "|" + "---|" * len(FAILURE_COLUMNS),
    ]
    out.extend(
        "| " + " | ".join(_cell(c) for c in failure_row(r)) + " |" for r in evidence.failures
    )
    if evidence.failures_total > len(evidence.failures):
        out.append(
            f"\n... {evidence.failures_total - len(evidence.failures)} more in results.jsonl"
        )
    out.append("")
    return out


def _corrupt(evidence: Evidence) -> list[str]:
    if not evidence.corrupt:
        return []
    out = [
        "## Warning: Unreadable Records",
        "",
        f"{len(evidence.corrupt)} line(s) of results.jsonl are not records and are not counted "
        "in this report:",
        "",
    ]
    out += [f"- line {c.line}: {c.problem}" for c in evidence.corrupt]
    out.append("")
    return out


def _files(run_dir: Path, evidence: Evidence) -> list[str]:
    return ["## Files", "", *(f"- {line}" for line in file_lines(run_dir, evidence)), ""]


def render_markdown(
    run_dir: Path,
    summary: dict[str, Any],
    meta: dict[str, Any],
    evidence: Evidence | None = None,
) -> str:
    """The report as one string (attempt lines streamed from ``run_dir/results.jsonl``, unless
    ``evidence`` already holds them)."""
    results_path = run_dir / "results.jsonl"
    if evidence is None:
        evidence = gather_evidence(run_dir, summary)
    lines_by_key = evidence.lines
    date = str(meta.get("started_at") or meta.get("finished_at") or "")[:10] or "unknown"
    out = [f"# {_title(summary)}", "", f"**Date:** {date}  "]
    if meta.get("run_id"):
        out.append(f"**Run:** `{meta['run_id']}`  ")
    version = (
        (meta.get("environment") or {}).get("callproof")
        if isinstance(meta.get("environment"), dict)
        else None
    )
    out.append(f"**Tested By:** callproof{f' {version}' if version else ''} (`callproof run`)  ")
    out += ["", *_corrupt(evidence), "## Executive Summary", ""]
    out += executive_summary(summary)
    out.append("")
    results = summary.get("results", [])
    if results:
        out += [
            "| Target | Scenario | Passed | Pass rate | 95% CI | Failures by mode |",
            "|---|---|---|---|---|---|",
        ]
        for e in results:
            out.append(
                f"| {_cell(e['target'])} | {_cell(e['scenario'])} | {e['passed']}/{e['n']} | "
                f"{format_pct(e['pass_rate'])} | {format_pct(e['ci95'][0])}–"
                f"{format_pct(e['ci95'][1])} | "
                + (_cell(", ".join(f"{m.name} {m.count}" for m in mode_rates(e))) or "-")
                + " |"
            )
        out.append("")
    out += _recommendations(summary)
    out += _root_cause(summary, meta, evidence)
    out += _raw_failure(run_dir, evidence.failing)
    out += _failing_table(evidence)
    out += ["## Proof: Consistency Test Results", ""]
    for e in results:
        out.append(_target_heading(e))
        out.append("")
        out += _attempt_block(e, lines_by_key.get((e["target"], e["scenario"])))
    if results:
        out += _compound_tables(summary)
        out += _comparisons(summary)
        out += _routes(summary)
        out += _latency(summary)
    out += _methodology(summary, meta)
    significant = [c for c in summary.get("comparisons", []) if c["significant"]]
    if significant:
        out += ["## Verdicts", ""]
        out += [f"- {c['verdict']}" for c in significant]
        out.append("")
    out += _files(run_dir, evidence)
    attempts = summary.get("totals", {}).get("attempts", 0)
    out += [
        "---",
        f"*Generated by callproof from `{results_path.name}` ({attempts} attempts).*",
        "",
    ]
    return "\n".join(out)


def write_markdown(
    run_dir: Path,
    summary: dict[str, Any],
    meta: dict[str, Any],
    evidence: Evidence | None = None,
) -> Path:
    """Write ``run_dir/report.md`` and return its path."""
    path = run_dir / "report.md"
    write_text_atomic(path, render_markdown(run_dir, summary, meta, evidence))
    return path
