"""Inline SVG charts for ``report.html``, drawn in Python: no JavaScript, no CDN, no fonts.

Each function returns one ``<svg>`` element as a string with a ``data-chart`` attribute naming
it (``outcomes``, ``latency``, ``compound``), so tests and readers can find them in the DOM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from callproof.probe.stats import format_pct, percentile

__all__ = [
    "OUTCOME_COLORS",
    "LatencySeries",
    "compound_chart",
    "latency_chart",
    "outcomes_chart",
    "timeline_chart",
]

#: A stable colour per outcome: green for ok, warm colours for stalls, cool for protocol trouble.
OUTCOME_COLORS: dict[str, str] = {
    "ok": "#2e9d57",
    "stall_before_headers": "#8b1e1e",
    "stall_no_events": "#d62828",
    "stall_mid_stream": "#f77f00",
    "deadline_exceeded": "#b5179e",
    "incomplete_stream": "#fcbf49",
    "empty_response": "#9d8189",
    "abnormal_stop": "#e76f51",
    "tool_call_malformed": "#7209b7",
    "tool_call_in_text": "#3a0ca3",
    "http_error": "#4361ee",
    "stream_exception": "#4cc9f0",
    "protocol_error": "#264653",
    "transport_error": "#6c757d",
    "expectation_failed": "#a98467",
}
_FALLBACK = ("#577590", "#90be6d", "#f9844a", "#43aa8b", "#f8961e")
_LINE_COLORS = ("#d62828", "#2e9d57", "#4361ee", "#f77f00", "#7209b7", "#264653", "#b5179e")
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _color(outcome: str, index: int) -> str:
    return OUTCOME_COLORS.get(outcome, _FALLBACK[index % len(_FALLBACK)])


def _label(entry: dict[str, Any]) -> str:
    return f"{entry['target']} · {entry['scenario']}"


def outcomes_chart(results: Sequence[dict[str, Any]]) -> str:
    """Stacked horizontal bars: each target's attempts split by outcome, with a legend."""
    label_w, bar_w, row_h = 260, 560, 30
    names: list[str] = []
    for entry in results:
        for name in entry["outcomes"]:
            if name not in names:
                names.append(name)
    names.sort(key=lambda n: (n != "ok", n))
    legend_rows = math.ceil(len(names) / 4) if names else 0
    height = 30 + row_h * len(results) + 22 * legend_rows + 10
    width = label_w + bar_w + 90
    parts = [
        f'<svg data-chart="outcomes" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {_FONT}>',
        "<title>Outcomes per target</title>",
    ]
    for row, entry in enumerate(results):
        y = 20 + row * row_h
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(_label(entry))}</text>'
        )
        x = float(label_w)
        n = entry["n"] or 1
        for name in names:
            count = entry["outcomes"].get(name, 0)
            if not count:
                continue
            w = bar_w * count / n
            parts.append(
                f'<rect class="seg" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 8}" '
                f'fill="{_color(name, names.index(name))}"><title>{escape(name)}: {count}/'
                f"{entry['n']}</title></rect>"
            )
            x += w
        parts.append(
            f'<text x="{label_w + bar_w + 8}" y="{y + 15}">{entry["passed"]}/{entry["n"]} ok</text>'
        )
    legend_y = 30 + row_h * len(results)
    for i, name in enumerate(names):
        lx = 10 + (i % 4) * 220
        ly = legend_y + (i // 4) * 22
        parts.append(
            f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{_color(name, i)}"/>'
            f'<text x="{lx + 18}" y="{ly + 11}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


@dataclass
class LatencySeries:
    """Points of one target: total seconds of passing and of failing attempts."""

    label: str
    passing: list[float]
    failing: list[float]


def _ticks(high: float) -> list[float]:
    if high <= 0:
        return [0.0]
    raw = high / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(high / step) + 2) if i * step <= high * 1.0001 + step]


def latency_chart(series: Sequence[LatencySeries]) -> str:
    """Box (p25-p75, median, whiskers min-max) of passing attempts' total time, with every
    attempt as a dot: passing in green, failing in red at the moment it was given up."""
    label_w, plot_w, row_h = 260, 560, 40
    values = [v for s in series for v in (*s.passing, *s.failing)]
    high = max(values) if values else 1.0
    ticks = _ticks(high * 1.05 or 1.0)
    top = ticks[-1] or 1.0
    height = 30 + row_h * len(series) + 30
    width = label_w + plot_w + 40

    def x_of(value: float) -> float:
        return label_w + plot_w * value / top

    parts = [
        f'<svg data-chart="latency" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {_FONT}>',
        "<title>Latency distribution per target (total seconds)</title>",
    ]
    axis_y = 20 + row_h * len(series)
    for tick in ticks:
        x = x_of(tick)
        parts.append(
            f'<line x1="{x:.1f}" y1="15" x2="{x:.1f}" y2="{axis_y}" stroke="#ddd"/>'
            f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle">{tick:g}s</text>'
        )
    for row, s in enumerate(series):
        y = 20 + row * row_h
        mid = y + row_h / 2 - 4
        parts.append(
            f'<text x="{label_w - 8}" y="{mid + 4:.1f}" text-anchor="end">{escape(s.label)}</text>'
        )
        ordered = sorted(s.passing)
        if ordered:
            q1, q2, q3 = (percentile(ordered, q) or 0.0 for q in (25, 50, 75))
            lo, hi = ordered[0], ordered[-1]
            parts.append(
                f'<line class="whisker" x1="{x_of(lo):.1f}" y1="{mid:.1f}" x2="{x_of(hi):.1f}" '
                f'y2="{mid:.1f}" stroke="#555"/>'
                f'<rect class="box" x="{x_of(q1):.1f}" y="{mid - 9:.1f}" '
                f'width="{max(1.0, x_of(q3) - x_of(q1)):.1f}" height="18" fill="#cfe8d7" '
                f'stroke="#2e9d57"><title>p25 {q1:.3f}s, p50 {q2:.3f}s, p75 {q3:.3f}s'
                "</title></rect>"
                f'<line x1="{x_of(q2):.1f}" y1="{mid - 9:.1f}" x2="{x_of(q2):.1f}" '
                f'y2="{mid + 9:.1f}" stroke="#1b5e35" stroke-width="2"/>'
            )
        for i, value in enumerate(s.passing):
            jitter = ((i * 7) % 11 - 5) * 1.2
            parts.append(
                f'<circle cx="{x_of(value):.1f}" cy="{mid + jitter:.1f}" r="2.5" '
                f'fill="#2e9d57" fill-opacity="0.6"/>'
            )
        for i, value in enumerate(s.failing):
            jitter = ((i * 5) % 9 - 4) * 1.5
            parts.append(
                f'<circle cx="{x_of(value):.1f}" cy="{mid + jitter:.1f}" r="3" fill="#d62828" '
                f'fill-opacity="0.8"><title>failed after {value:.2f}s</title></circle>'
            )
    parts.append("</svg>")
    return "".join(parts)


def compound_chart(results: Sequence[dict[str, Any]]) -> str:
    """Success probability against sequential tool uses, one line per target, its 95% band."""
    left, plot_w, plot_h, top_pad = 50, 560, 260, 20
    legend_w = 300
    width = left + plot_w + legend_w
    height = top_pad + plot_h + 50
    steps = max((len(e["compound"]) for e in results), default=1)

    def x_of(step: int) -> float:
        return left + plot_w * ((step - 1) / max(1, steps - 1))

    def y_of(p: float) -> float:
        return top_pad + plot_h * (1 - p)

    parts = [
        f'<svg data-chart="compound" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {_FONT}>',
        "<title>Success probability over sequential tool uses</title>",
    ]
    for pct in (0, 25, 50, 75, 100):
        y = y_of(pct / 100)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{pct}%</text>'
        )
    parts.extend(
        f'<text x="{x_of(step):.1f}" y="{top_pad + plot_h + 18}" text-anchor="middle">{step}</text>'
        for step in range(1, steps + 1)
    )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{top_pad + plot_h + 38}" '
        f'text-anchor="middle">sequential tool uses</text>'
    )
    bands: set[str] = set()
    for i, entry in enumerate(results):
        color = _LINE_COLORS[i % len(_LINE_COLORS)]
        rows = entry["compound"]
        if not rows:
            continue
        upper = [f"{x_of(r['steps']):.1f},{y_of(r['ci95'][1]):.1f}" for r in rows]
        lower = [f"{x_of(r['steps']):.1f},{y_of(r['ci95'][0]):.1f}" for r in reversed(rows)]
        band = " ".join(upper + lower)
        if band not in bands:  # equal results share one band instead of darkening it
            bands.add(band)
            parts.append(
                f'<polygon class="band" points="{band}" fill="{color}" '
                f'fill-opacity="0.1" stroke="none"/>'
            )
        line = " ".join(f"{x_of(r['steps']):.1f},{y_of(r['success']):.1f}" for r in rows)
        # Identical curves (several targets at 100%) would hide each other: later ones are
        # dashed and thinner so every line stays visible.
        dash = "" if i == 0 else f' stroke-dasharray="{6 + 2 * i},{3 + i}"'
        parts.append(
            f'<polyline class="curve" points="{line}" fill="none" stroke="{color}" '
            f'stroke-width="{max(1.5, 3.5 - 0.5 * i)}"{dash}/>'
        )
        parts.extend(
            f'<circle cx="{x_of(r["steps"]):.1f}" cy="{y_of(r["success"]):.1f}" r="3" '
            f'fill="{color}"><title>{escape(_label(entry))}: {r["steps"]} uses '
            f"{format_pct(r['success'])}</title></circle>"
            for r in rows
        )
        ly = top_pad + 10 + i * 20
        parts.append(
            f'<rect x="{left + plot_w + 20}" y="{ly - 9}" width="14" height="4" fill="{color}"/>'
            f'<text x="{left + plot_w + 40}" y="{ly}">{escape(_label(entry))} '
            f"({format_pct(entry['pass_rate'])})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _when(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def timeline_chart(points: Sequence[tuple[str, str, str, str, bool]]) -> str:
    """Attempts against their UTC start time: one row per target · scenario, one mark per
    attempt coloured by outcome (passing ones small and green, failing ones large), so clusters
    of hangs, or hangs that follow throttling bursts, show at a glance."""
    label_w, plot_w, row_h = 260, 560, 26
    parsed = [
        (t, f"{target} · {scenario}", o, p)
        for s, target, scenario, o, p in points
        if (t := _when(s)) is not None
    ]
    rows: list[str] = []
    for _, label, _, _ in parsed:
        if label not in rows:
            rows.append(label)
    outcomes = sorted({o for _, _, o, _ in parsed}, key=lambda n: (n != "ok", n))
    legend_rows = math.ceil(len(outcomes) / 4) if outcomes else 0
    height = 30 + row_h * max(1, len(rows)) + 24 + 22 * legend_rows + 10
    width = label_w + plot_w + 40
    parts = [
        f'<svg data-chart="timeline" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {_FONT}>',
        "<title>Attempts over time (start time, coloured by outcome)</title>",
    ]
    if not parsed:
        parts.append('<text x="10" y="20">no attempt start times recorded</text></svg>')
        return "".join(parts)
    t0 = min(t for t, _, _, _ in parsed)
    span = max(t for t, _, _, _ in parsed) - t0
    ticks = _ticks(span * 1.02 or 1.0)
    top = ticks[-1] or 1.0

    def x_of(value: float) -> float:
        return label_w + plot_w * (value - t0) / top

    axis_y = 20 + row_h * len(rows)
    for tick in ticks:
        x = label_w + plot_w * tick / top
        parts.append(
            f'<line x1="{x:.1f}" y1="15" x2="{x:.1f}" y2="{axis_y}" stroke="#eee"/>'
            f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle">+{tick:g}s</text>'
        )
    for row, label in enumerate(rows):
        y = 20 + row * row_h + row_h / 2
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>'
            f'<line x1="{label_w}" y1="{y:.1f}" x2="{label_w + plot_w}" y2="{y:.1f}" '
            f'stroke="#ccc"/>'
        )
    for t, label, outcome, passed in sorted(parsed, key=lambda p: p[3]):  # failures on top
        y = 20 + rows.index(label) * row_h + row_h / 2
        color = _color(outcome, outcomes.index(outcome))
        if passed:
            parts.append(
                f'<circle class="pass" cx="{x_of(t):.1f}" cy="{y:.1f}" r="2.5" '
                f'fill="{color}" fill-opacity="0.5"/>'
            )
        else:
            parts.append(
                f'<rect class="fail" x="{x_of(t) - 4:.1f}" y="{y - 7:.1f}" width="8" height="14" '
                f'fill="{color}"><title>{escape(outcome)} at +{t - t0:.2f}s</title></rect>'
            )
    legend_y = axis_y + 30
    for i, name in enumerate(outcomes):
        lx = 10 + (i % 4) * 220
        ly = legend_y + (i // 4) * 22
        parts.append(
            f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{_color(name, i)}"/>'
            f'<text x="{lx + 18}" y="{ly + 11}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
