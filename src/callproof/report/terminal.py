"""Terminal output of a probe: the seed's per-attempt lines and rich summary tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from callproof.probe.stats import format_pct
from callproof.record import AttemptRecord
from callproof.report.common import attempt_line, executive_summary, worst_entry
from callproof.report.evidence import recommendations

__all__ = ["print_attempt", "print_summary"]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def print_attempt(
    console: Console, record: AttemptRecord | Mapping[str, Any], *, show_target: bool = True
) -> None:
    """Print ``Test  1: ✅ OK       <text>`` (green) or ``Test  2: ❌ STALL_NO_EVENTS`` (red).

    With ``show_target`` the line starts with the target and scenario, since attempts of several
    targets interleave while a run is going.
    """
    rec = AttemptRecord.of(record)
    line = Text()
    if show_target:
        line.append(f"{rec.target} · {rec.scenario}  ", style="dim")
    passed = rec.passed
    text = attempt_line(rec, detail_width=0)
    head, _, rest = text.partition(": ")
    line.append(head + ": ")
    if passed:
        label, _, answer = rest.partition("OK")
        line.append(label + "OK", style="bold green")
        line.append(answer)
    else:
        line.append(rest, style="bold red")
        if rec.detail:
            line.append(f"  {rec.detail}", style="dim")
    total = rec.timings.total_s
    if total is not None:
        line.append(f"  {total:.2f}s", style="dim")
    # wrapped by rich at word boundaries (a terminal's own soft wrap cuts words and numbers)
    console.print(line, highlight=False)


def _outcome_cell(outcomes: dict[str, int]) -> Text:
    text = Text()
    for i, (name, count) in enumerate(outcomes.items()):
        if i:
            text.append(", ")
        text.append(f"{name} {count}", style="green" if name == "ok" else "red")
    return text


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    """Print the pass-rate table, the compound table, routes and the comparison verdicts."""
    results = summary.get("results", [])
    if not results:
        console.print("[yellow]no attempts recorded[/]")
        return
    scenarios = {e["scenario"] for e in results}
    one_scenario = len(scenarios) == 1

    def label(e: dict[str, Any]) -> str:
        return e["target"] if one_scenario else f"{e['target']} · {e['scenario']}"

    suffix = f" · {next(iter(scenarios))}" if one_scenario else ""
    table = Table(title=escape(f"Pass rate per target{suffix}"), title_justify="left")
    # Narrow terminals drop the latency columns (they are in the reports and the JSON) so that
    # the outcomes, the point of the table, stay whole.
    latency = console.width >= 100
    table.add_column("target", overflow="fold", min_width=12)
    for column in ("passed", "rate", "95% CI"):
        table.add_column(column, justify="right", no_wrap=True)
    # The failure mode is the point of the table: never cut an outcome name, however narrow
    # the terminal (the other columns give way first).
    pairs = [f"{name} {count}" for e in results for name, count in e["outcomes"].items()]
    table.add_column("outcomes", min_width=min(32, max(map(len, pairs), default=8)))
    if latency:
        table.add_column("p50 first event", justify="right")
        table.add_column("p50 total", justify="right")
    for e in results:
        style = "green" if e["passed"] == e["n"] else ("red" if e["pass_rate"] < 0.9 else "yellow")
        table.add_row(
            escape(label(e)),
            f"{e['passed']}/{e['n']}",
            Text(format_pct(e["pass_rate"]), style=style),
            f"{format_pct(e['ci95'][0])}–{format_pct(e['ci95'][1])}",
            _outcome_cell(e["outcomes"]),
            *(
                (
                    _seconds(e["latency_s"]["first_event"]["p50"]),
                    _seconds(e["latency_s"]["total"]["p50"]),
                )
                if latency
                else ()
            ),
        )
    console.print(table)

    worst = worst_entry(summary)
    if worst is not None:
        title = f"Why it compounds · {label(worst)} ({format_pct(worst['pass_rate'])} per call)"
        seed = Table(title=escape(title), title_justify="left", min_width=len(title))
        seed.add_column("Tool Uses", justify="right")
        seed.add_column("Success Probability", justify="right")
        seed.add_column("95% CI", justify="right")
        for row in worst["compound"]:
            seed.add_row(
                str(row["steps"]),
                format_pct(row["success"]),
                f"{format_pct(row['ci95'][0])}–{format_pct(row['ci95'][1])}",
            )
        console.print(seed)
    if len(results) > 1 or worst is None:
        steps = max(len(e["compound"]) for e in results)
        compound = Table(
            title="Success probability by number of sequential tool uses", title_justify="left"
        )
        compound.add_column("target", no_wrap=True)
        for k in range(1, steps + 1):
            compound.add_column(str(k), justify="right", no_wrap=True)
        for e in results:
            cells = [
                format_pct(e["compound"][k]["success"]) if k < len(e["compound"]) else "-"
                for k in range(steps)
            ]
            compound.add_row(escape(label(e)), *cells)
        console.print(compound)

    routes = [e for e in results if "route" in e]
    if routes:
        route_table = Table(title="Routes", title_justify="left")
        route_table.add_column("route", no_wrap=True)
        for column in ("success", "p50 total", "requests/call", "served by"):
            route_table.add_column(column)
        for e in routes:
            served = ", ".join(f"{k} {v}" for k, v in e["route"]["served_by"].items())
            route_table.add_row(
                escape(label(e)),
                f"{e['passed']}/{e['n']} ({format_pct(e['pass_rate'])})",
                _seconds(e["latency_s"]["total"]["p50"]),
                f"{e['requests_per_call']:.2f}" if e["requests_per_call"] is not None else "-",
                escape(served or "-"),
            )
        console.print(route_table)

    comparisons = summary.get("comparisons", [])
    shown = [
        c
        for c in comparisons
        if c["significant"] or c["a_passed"] * c["b_n"] != c["b_passed"] * c["a_n"]
    ]
    if comparisons:
        console.print("[bold]Comparisons[/] (Fisher's exact test, two-sided)")
        for c in sorted(shown, key=lambda c: (not c["significant"], c["p_value"])):
            mark = "[bold red]≠[/]" if c["significant"] else "[dim]≈[/]"
            console.print(f" {mark} {escape(c['verdict'])}", highlight=False)
        hidden = len(comparisons) - len(shown)
        if hidden:
            console.print(f" [dim]{hidden} pairs with equal pass rates not shown[/]")
    for sentence in executive_summary(summary):
        console.print(f"[bold]{escape(sentence)}[/]", highlight=False)
    advice = recommendations(summary, summary.get("compare_with"))
    if advice:
        console.print("Recommendations:")
        for i, item in enumerate(advice, 1):
            console.print(f" {i}. {escape(item)}", highlight=False)
