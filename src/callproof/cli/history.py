"""``callproof history``: each target's pass rate over the recorded runs."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import click

from callproof.cli.options import db_option
from callproof.probe.stats import format_pct

__all__ = ["history", "sparkline"]

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(rates: list[float]) -> str:
    """One block character per run, from ▁ (0%) to █ (100%)."""
    return "".join(_BARS[min(len(_BARS) - 1, int(rate * (len(_BARS) - 1) + 0.5))] for rate in rates)


#: Columns a run needs: "100% (10/10)" or a 16-character timestamp, plus padding and border.
_RUN_COLUMN_WIDTH = 19


def _cell(row: dict[str, Any]) -> str:
    return f"{format_pct(row['pass_rate'])} ({row['passed']}/{row['n']})"


@click.command("history")
@db_option
@click.option("--target", "target", metavar="NAME", help="Only this target (or route:NAME).")
@click.option("--scenario", "scenario", metavar="NAME", help="Only this scenario.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Only the last N runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON on stdout.")
@click.option(
    "--emulator",
    is_flag=True,
    help="Show the runs the embedded emulator served (make run, tests) instead of real ones.",
)
def history(
    db_url: str | None,
    target: str | None,
    scenario: str | None,
    limit: int | None,
    as_json: bool,
    emulator: bool,
) -> None:
    """Show each target's pass rate over time, one row per recorded run.

    \b
    Real runs only by default: runs served by the embedded emulator (the quickstart, tests)
    are kept apart and shown with --emulator.

    \b
    The database is SQLite under the user data directory unless --db says otherwise
    (sqlite:///PATH or postgresql://USER@HOST/DB).
    """
    # lazy (see callproof.cli): rich and the history store
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from callproof.probe.store import HistoryStore

    with HistoryStore.open(db_url) as store:
        rows = store.pass_rates_over_time(target=target, scenario=scenario, emulator=emulator)
        other = 0 if rows else len(store.runs(emulator=not emulator))
        url = store.url
    if limit:
        keep = list(OrderedDict.fromkeys(r["run_id"] for r in rows))[-limit:]
        rows = [r for r in rows if r["run_id"] in set(keep)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
        return
    console = Console(highlight=False)
    if not rows:
        what = f" for {target}" if target else ""
        kind = "emulator" if emulator else "real"
        console.print(escape(f"no {kind} runs recorded{what} in {url}"))
        if other:
            hint = "without --emulator" if emulator else "with --emulator"
            console.print(escape(f"({other} {'real' if emulator else 'emulator'} runs: {hint})"))
        return
    scenarios = list(OrderedDict.fromkeys(r["scenario"] for r in rows))
    for name in scenarios:
        subset = [r for r in rows if r["scenario"] == name]
        targets = list(OrderedDict.fromkeys(r["target"] for r in subset))
        by_run: OrderedDict[str, dict[str, Any]] = OrderedDict()
        for r in subset:
            run = by_run.setdefault(r["run_id"], {"started_at": r["started_at"], "cells": {}})
            run["cells"][r["target"]] = r
        # Targets down, runs across: as many recent runs as fit the terminal, so cells never
        # wrap mid-number however many targets there are.
        run_ids = list(by_run)
        width = max(len(t) for t in targets) + 4
        shown = run_ids[-max(1, (console.width - width) // _RUN_COLUMN_WIDTH) :]
        table = Table(title=escape(f"Pass rate over time · {name}"), title_justify="left")
        table.add_column("target", no_wrap=True)
        for run_id in shown:
            started = str(by_run[run_id]["started_at"] or "")[:16].replace("T", " ")
            table.add_column(escape(f"{started}\n{run_id}"), justify="right", no_wrap=True)
        for t in targets:
            cells: list[Text | str] = []
            for run_id in shown:
                row = by_run[run_id]["cells"].get(t)
                if row is None:
                    cells.append("-")
                    continue
                style = "green" if row["passed"] == row["n"] else "red"
                cells.append(Text(_cell(row), style=style))
            table.add_row(escape(t), *cells)
        console.print(table)
        if len(shown) < len(run_ids):
            older = len(run_ids) - len(shown)
            runs = "run" if older == 1 else "runs"
            console.print(f"({older} older {runs} not shown at this width; --json lists them all)")
        trend = Table(title=escape(f"Trend · {name}"), title_justify="left")
        trend.add_column("target", no_wrap=True)
        for column in ("runs", "first", "latest", "all attempts", "trend"):
            trend.add_column(column, justify="right" if column != "trend" else "left")
        for t in targets:
            series = [r for r in subset if r["target"] == t]
            passed = sum(r["passed"] for r in series)
            n = sum(r["n"] for r in series)
            trend.add_row(
                escape(t),
                str(len(series)),
                format_pct(series[0]["pass_rate"]),
                format_pct(series[-1]["pass_rate"]),
                f"{format_pct(passed / n if n else 0.0)} ({passed}/{n})",
                sparkline([r["pass_rate"] for r in series]),
            )
        console.print(trend)
