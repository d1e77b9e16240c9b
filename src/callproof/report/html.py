"""``report.html``: one self-contained page (inline CSS, inline SVG, no script, no network).

It carries what ``report.md`` carries, plus four charts drawn in Python
(:mod:`callproof.report.svg`): outcomes per target, attempts over time (the timeline), latency
distributions, compound curves. Nothing is collapsed: request bodies and captures are plain
blocks, so the page prints (``@media print``) exactly as it reads.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from callproof.probe.rundir import write_text_atomic
from callproof.probe.stats import format_pct
from callproof.redact import redact_argv
from callproof.report.common import (
    FAILURE_COLUMNS,
    OUTCOME_MEANINGS,
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
from callproof.report.evidence import mode_rates, recommendations, root_cause
from callproof.report.markdown import NO_CAPTURE_HINT, environment_rows, raw_attempt_text
from callproof.report.meta import (
    grouped_requests,
    meta_scenarios,
    meta_targets,
    pretty_json,
    target_row,
)
from callproof.report.svg import (
    LatencySeries,
    compound_chart,
    latency_chart,
    outcomes_chart,
    timeline_chart,
)

__all__ = ["render_html", "write_html"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d1d1f;
background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:1.6rem;margin:.2em 0}h2{margin-top:2em;border-bottom:1px solid #ddd;
padding-bottom:.2em}h3{margin-top:1.4em}
.meta{color:#555}.summary{background:#fff;border-left:4px solid #d62828;padding:12px 16px}
.summary.ok{border-left-color:#2e9d57}
table{border-collapse:collapse;margin:8px 0 16px;background:#fff}
th,td{border:1px solid #ddd;padding:4px 10px;text-align:left;font-size:.92rem}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}
pre{background:#111;color:#eee;padding:12px 14px;overflow-x:auto;font-size:.85rem;
font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace,"Noto Color Emoji",
"Apple Color Emoji","Segoe UI Emoji";
line-height:1.35;border-radius:4px}
.pass{color:#2e9d57;font-weight:600}.fail{color:#d62828;font-weight:600}
.chart{background:#fff;border:1px solid #e3e3e3;padding:8px;margin:8px 0 18px;overflow-x:auto}
.sig{font-weight:600;color:#d62828}
pre.wrap{white-space:pre-wrap;overflow-wrap:anywhere}
table.failures td{font-size:.8rem;vertical-align:top}table.failures td.detail{min-width:16em}
.warn{background:#fff4e5;border-left:4px solid #f77f00;padding:8px 14px}
ul.causes li{margin:.3em 0}.yes{color:#d62828;font-weight:600}.no{color:#2e9d57;font-weight:600}
@media print{
body{background:#fff}main{max-width:none;padding:0}
pre{background:#f6f6f6;color:#111;white-space:pre-wrap;overflow-wrap:anywhere;
border:1px solid #ccc}
.chart{overflow:visible;border:none}svg{max-width:100%;height:auto}
table{page-break-inside:auto}tr{page-break-inside:avoid}h2,h3{page-break-after:avoid}
}
"""


def _e(value: Any) -> str:
    return escape(str(value))


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _attempt_pre(entry: dict[str, Any], lines: Any) -> str:
    out = [f"Running {entry['n']} identical {entry['scenario']} requests...", ""]
    if lines is not None:
        for record in lines.records:
            css = "pass" if record.get("passed") else "fail"
            out.append(f'<span class="{css}">{_e(attempt_line(record))}</span>')
        if lines.more:
            out.append(f"... {lines.more} more")
        out.append("")
    out += [_e(passed_line(entry)), _e(failed_line(entry))]
    return "<pre>" + "\n".join(out) + "</pre>"


def _latency_series(
    summary: dict[str, Any], lines_by_key: dict[tuple[str, str], Any]
) -> list[LatencySeries]:
    series = []
    for e in summary["results"]:
        lines = lines_by_key.get((e["target"], e["scenario"]))
        passing: list[float] = []
        failing: list[float] = []
        for record in lines.records if lines is not None else []:
            total = (record.get("timings") or {}).get("total_s")
            if isinstance(total, (int, float)):
                (passing if record.get("passed") else failing).append(float(total))
        series.append(LatencySeries(f"{e['target']} · {e['scenario']}", passing, failing))
    return series


def _methodology(meta: dict[str, Any]) -> list[str]:
    out = ["<h2>Test methodology</h2>"]
    n = meta.get("n")
    out.append(
        f"<p>Every target received the same request {_e(n if n is not None else 'N')} times per "
        "scenario, each a fresh streaming call with callproof's clocks on it (first event, idle "
        "gap between decoded events, total deadline). A hang is an outcome, never retried inside "
        "a measured attempt.</p>"
    )
    if meta.get("argv"):
        argv = redact_argv(meta["argv"] if isinstance(meta["argv"], list) else [meta["argv"]])
        out.append(f"<pre>{_e(' '.join(argv))}</pre>")
    targets = meta_targets(meta)
    if targets:
        rows = [[_e(v) for v in target_row(t, meta)] for t in targets]
        out.append(_table(["Target", "API", "Model", "Provider", "Endpoint", "Timeouts"], rows))
    for scenario in meta_scenarios(meta):
        out.append(f"<h3>Scenario {_e(scenario.get('name'))}</h3>")
        if scenario.get("description"):
            out.append(f"<p>{_e(scenario['description'])}</p>")
        for names, body in grouped_requests(scenario)[:8]:
            label = (
                f"Exact request body sent to {', '.join(names)}" if names else "Exact request body"
            )
            # never collapsed: a printed report shows the body too
            out.append(f'<p>{_e(label)}:</p><pre class="wrap">{_e(pretty_json(body))}</pre>')
    env = environment_rows(meta)
    if env:
        out.append(_table(["Environment", ""], [[_e(k), _e(v)] for k, v in env]))
    out.append(
        _table(
            ["Outcome", "Meaning"],
            [[f"<code>{_e(k)}</code>", _e(v)] for k, v in OUTCOME_MEANINGS.items()],
        )
    )
    return out


def _evidence_sections(
    run_dir: Path, summary: dict[str, Any], meta: dict[str, Any], evidence: Evidence
) -> list[str]:
    """Recommendations, root cause, the representative failure and every failing attempt."""
    out: list[str] = []
    compare_with = summary.get("compare_with")
    items = recommendations(summary, compare_with)
    if items:
        out.append("<h2>Recommendations</h2><ol>")
        out += [f"<li>{_e(item)}</li>" for item in items]
        out.append("</ol>")
    hypotheses = root_cause(summary, meta, evidence.failures, compare_with, evidence.timeline)
    if hypotheses:
        out.append("<h2>Root cause</h2><p>What the outcome mix supports and rules out:</p>")
        out.append('<ul class="causes">')
        for h in hypotheses:
            mark = (
                '<span class="yes">Supported</span>'
                if h.supported
                else ('<span class="no">Ruled out</span>')
            )
            out.append(f"<li>{mark}: {_e(h.cause)}. {_e(h.evidence)}.</li>")
        out.append("</ul>")
    record = evidence.failing
    if record is not None:
        source, text = raw_attempt_text(run_dir, record)
        started = str(record.get("started_at") or "").replace("T", " ").removesuffix("Z")
        out.append("<h2>Representative failure</h2>")
        out.append(
            f"<p>{_e(record.get('target'))} · {_e(record.get('scenario'))}, attempt "
            f"{_e(record.get('attempt'))}"
            + (f", started {_e(started)} UTC" if started else "")
            + f": <code>{_e(record.get('outcome'))}</code>: "
            f"{_e(record.get('detail') or 'no detail')} (request id "
            f"<code>{_e(record.get('request_id') or 'not sent by the server')}</code>; from the "
            f"{_e(source)}). Times are seconds since the request was sent."
            + ("" if record.get("capture") else f" {_e(NO_CAPTURE_HINT)}")
            + "</p>"
        )
        out.append(f'<pre class="wrap">{_e(text)}</pre>')
    if evidence.failures:
        out.append(
            f'<h2 id="failing-attempts">Failing attempts ({evidence.failures_total})</h2>'
            "<p>Every failing attempt, by start time; times are seconds from sending "
            "the request.</p>"
        )
        rows = [[_e(c) for c in failure_row(r)] for r in evidence.failures]
        table = _table(list(FAILURE_COLUMNS), rows, numeric={1, 5, 6, 7})
        out.append(table.replace("<table>", '<table class="failures">', 1))
        if evidence.failures_total > len(evidence.failures):
            more = evidence.failures_total - len(evidence.failures)
            out.append(f"<p>... {more} more in results.jsonl</p>")
    return out


def render_html(
    run_dir: Path,
    summary: dict[str, Any],
    meta: dict[str, Any],
    evidence: Evidence | None = None,
) -> str:
    """The whole page as a string."""
    if evidence is None:
        evidence = gather_evidence(run_dir, summary)
    lines_by_key = evidence.lines
    results = summary.get("results", [])
    worst = worst_entry(summary)
    title = (
        f"{worst['target']} fails {format_pct(1 - worst['pass_rate'])} of {worst['scenario']} "
        "requests (" + ", ".join(f"{m.name} {format_pct(m.rate)}" for m in mode_rates(worst)) + ")"
        if worst
        else "no failures observed"
    )
    date = str(meta.get("started_at") or "")[:19].replace("T", " ")
    body: list[str] = [
        f"<h1>callproof evidence: {_e(title)}</h1>",
        f'<p class="meta">Date: {_e(date or "unknown")} UTC · Run: <code>'
        f"{_e(meta.get('run_id') or '-')}</code></p>",
        f'<div class="summary{"" if worst else " ok"}">'
        + "".join(f"<p>{_e(s)}</p>" for s in executive_summary(summary))
        + "</div>",
    ]
    if evidence.corrupt:
        body.append(
            '<div class="warn"><p><b>Warning:</b> '
            f"{len(evidence.corrupt)} line(s) of results.jsonl are not records and are not "
            "counted in this report:</p><ul>"
            + "".join(f"<li>line {c.line}: {_e(c.problem)}</li>" for c in evidence.corrupt)
            + "</ul></div>"
        )
    if results:
        rows = [
            [
                _e(e["target"]),
                _e(e["scenario"]),
                f"{e['passed']}/{e['n']}",
                f'<span class="{"pass" if e["passed"] == e["n"] else "fail"}">'
                f"{format_pct(e['pass_rate'])}</span>",
                f"{format_pct(e['ci95'][0])}–{format_pct(e['ci95'][1])}",
                _e(
                    ", ".join(
                        [f"ok {e['outcomes'].get('ok', 0)}"]
                        + [f"{m.name} {m.count}" for m in mode_rates(e)]
                    )
                ),
                _seconds(e["latency_s"]["first_event"]["p50"]),
                _seconds(e["latency_s"]["total"]["p50"]),
                f"{e['requests_per_call']:.2f}" if e.get("requests_per_call") else "-",
            ]
            for e in results
        ]
        body.append(
            _table(
                [
                    "Target",
                    "Scenario",
                    "Passed",
                    "Rate",
                    "95% CI",
                    "Outcomes",
                    "p50 first event",
                    "p50 total",
                    "Requests/call",
                ],
                rows,
                numeric={2, 3, 4, 6, 7, 8},
            )
        )
        body += _evidence_sections(run_dir, summary, meta, evidence)
        body += [
            "<h2>Charts</h2>",
            "<h3>Outcomes per target</h3>",
            f'<div class="chart">{outcomes_chart(results)}</div>',
            "<h3>Attempts over time (start time; failures as bars, coloured by outcome)</h3>",
            f'<div class="chart">{timeline_chart(evidence.timeline)}</div>',
            "<h3>Latency (total seconds; box = passing attempts, red = failed attempts)</h3>",
            f'<div class="chart">{latency_chart(_latency_series(summary, lines_by_key))}</div>',
            "<h3>Success probability over sequential tool uses (95% band)</h3>",
            f'<div class="chart">{compound_chart(results)}</div>',
        ]
    body.append("<h2>Proof: consistency test results</h2>")
    for e in results:
        verdict = "PASSES" if e["passed"] == e["n"] else "FAILS"
        where = " · ".join(str(e[k]) for k in ("api", "model") if e.get(k))
        body.append(f"<h3>{_e(e['target'])} ({verdict}) <small>{_e(where)}</small></h3>")
        body.append(_attempt_pre(e, lines_by_key.get((e["target"], e["scenario"]))))
    if worst is not None:
        rows = [
            [
                str(r["steps"]),
                format_pct(r["success"]),
                f"{format_pct(r['ci95'][0])}–{format_pct(r['ci95'][1])}",
            ]
            for r in worst["compound"]
        ]
        body.append(f"<h2>Why it compounds ({_e(worst['target'])})</h2>")
        body.append(_table(["Tool Uses", "Success Probability", "95% CI"], rows, {0, 1, 2}))
    if results:
        rows = [
            [_e(e["target"]), _e(e["scenario"])]
            + [
                format_pct(v) if (v := e["pass_hat_k"].get(str(k))) is not None else "n/a"
                for k in range(1, 6)
            ]
            for e in results
        ]
        body.append("<h3>pass^k (unbiased C(c,k)/C(n,k))</h3>")
        body.append(_table(["Target", "Scenario"] + [f"pass^{k}" for k in range(1, 6)], rows))
    comparisons = sorted(
        summary.get("comparisons", []), key=lambda c: (not c["significant"], c["p_value"])
    )
    if comparisons:
        body.append("<h2>Comparisons (Fisher's exact test, two-sided)</h2>")
        rows = [
            [
                _e(c["scenario"]),
                _e(c["a"]),
                _e(c["b"]),
                f"{c['a_passed']}/{c['a_n']}",
                f"{c['b_passed']}/{c['b_n']}",
                f"{c['p_value']:.4f}",
                f'<span class="{"sig" if c["significant"] else ""}">{_e(c["verdict"])}</span>',
            ]
            for c in comparisons
        ]
        body.append(_table(["Scenario", "A", "B", "A passed", "B passed", "p", "Verdict"], rows))
    routes = [e for e in results if "route" in e]
    if routes:
        body.append("<h2>Routes</h2>")
        rows = [
            [
                _e(e["target"]),
                _e(e["scenario"]),
                f"{e['passed']}/{e['n']} ({format_pct(e['pass_rate'])})",
                _seconds(e["latency_s"]["total"]["p50"]),
                f"{e['requests_per_call']:.2f}" if e.get("requests_per_call") else "-",
                str(e["route"]["calls_with_fallback"]),
                _e(", ".join(f"{k}: {v}" for k, v in e["route"]["served_by"].items()) or "-"),
            ]
            for e in routes
        ]
        body.append(
            _table(
                [
                    "Route",
                    "Scenario",
                    "Success",
                    "p50 total",
                    "Requests/call",
                    "Calls with fallback",
                    "Served by",
                ],
                rows,
            )
        )
    body += _methodology(meta)
    body.append("<h2>Files</h2><ul>")
    body += [f"<li><code>{_e(line)}</code></li>" for line in file_lines(run_dir, evidence)]
    body.append("</ul>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>callproof: {_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def write_html(
    run_dir: Path,
    summary: dict[str, Any],
    meta: dict[str, Any],
    evidence: Evidence | None = None,
) -> Path:
    """Write ``run_dir/report.html`` and return its path."""
    path = run_dir / "report.html"
    write_text_atomic(path, render_html(run_dir, summary, meta, evidence))
    return path
