"""``callproof run``: the probe. N identical tool-use conversations per target, classified,
summarised, reported and recorded in the history database.

With no configuration anywhere it starts the emulator in-process and probes the seeds' matrix.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from callproof.cli.options import db_option
from callproof.errors import ConfigError

__all__ = ["parse_fraction", "run"]

#: Per (target, scenario), attempt lines printed on the terminal (the reports hold more).
TERMINAL_LINES = 50


def parse_fraction(text: str) -> float:
    """``0.9``, ``90`` and ``90%`` all mean 90%; returns the fraction."""
    raw = text.strip().rstrip("%").strip()
    try:
        value = float(raw)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a number (use 0.9 or 90)") from None
    if text.strip().endswith("%") or value > 1:
        value /= 100
    if not 0 <= value <= 1:
        raise click.BadParameter(f"{text!r} is outside 0..1 (or 0..100%)")
    return value


def _fraction(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    return None if value is None else parse_fraction(value)


@click.command("run")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="CALLPROOF_CONFIG",
    help="callproof.toml (or the seeds' agent-config .json). Default: ./callproof.toml, else "
    "the embedded default (the seeds' matrix on the in-process emulator). Env: CALLPROOF_CONFIG.",
)
@click.option(
    "-n",
    "n",
    type=click.IntRange(min=1),
    metavar="N",
    help="Attempts per target and scenario [10].",
)
@click.option(
    "--target", "targets", multiple=True, metavar="NAME", help="Probe this target (repeatable)."
)
@click.option(
    "--scenario", "scenarios", multiple=True, metavar="NAME", help="Run this scenario (repeatable)."
)
@click.option(
    "--route", "routes", multiple=True, metavar="NAME", help="Probe this route (repeatable)."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="CALLPROOF_OUT",
    metavar="DIR",
    help="Run directory. Default: callproof-runs/<UTC timestamp>/. Env: CALLPROOF_OUT.",
)
@click.option(
    "--resume",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Complete the interrupted run in DIR; finished attempts are not redone.",
)
@click.option(
    "--rerun",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Repeat the run in DIR from its run.json (config, targets, scenarios, n, seed) into a "
    "new run directory; flags given here override its values.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    metavar="N",
    help="Attempts in flight at once [16].",
)
@click.option(
    "--per-target-concurrency",
    type=click.IntRange(min=1),
    metavar="N",
    help="Attempts in flight per target or route [no limit beyond --concurrency].",
)
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0, min_open=True),
    metavar="R",
    help="Start at most R attempts per second over the whole run.",
)
@click.option(
    "--fail-under",
    callback=_fraction,
    metavar="P",
    help="Exit 1 when any pass rate is under P: a fraction (0.9) or a percentage (90, 90%).",
)
@click.option(
    "--gate",
    type=click.Choice(["point", "lower"]),
    help="What --fail-under compares: the pass rate (point) or its Wilson 95% lower bound.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print summary.json on stdout, and nothing else."
)
@click.option(
    "--junit",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Write JUnit XML: one test case per target and scenario, failing when it fails the "
    "gate (every attempt passing, without --fail-under). Also appends a Markdown summary to "
    "$GITHUB_STEP_SUMMARY whenever that is set.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "github"]),
    default="text",
    show_default=True,
    help="github: also print ::error annotations for the targets that fail the gate.",
)
@db_option
@click.option("--no-history", is_flag=True, help="Do not record the run in the history database.")
@click.option(
    "--capture-failures",
    is_flag=True,
    help="Keep the raw wire capture of every failing attempt under captures/.",
)
@click.option("--seed", type=int, metavar="N", help="Seed of the embedded emulator's fault draws.")
@click.option(
    "--every",
    metavar="DURATION",
    envvar="CALLPROOF_EVERY",
    help="Repeat the run every DURATION (15m, 2h, 1d or seconds) until interrupted, each in a "
    "new directory under --out, each recorded in the history (which keeps routes with "
    'order = "measured" fresh). Env: CALLPROOF_EVERY.',
)
def run(every: str | None, **params: Any) -> None:
    """Probe targets N times per scenario; write results.jsonl, summary.json and reports.

    \b
    Exit codes: 0 done (and every pass rate at or over --fail-under);
    1 a pass rate under --fail-under; 2 usage or configuration error, or a path that cannot
    be written (run directory, captures, history; a full disk says how to resume);
    3 a target was never reached (every attempt a transport error, no response headers, or
    HTTP 401/403/404); 130 interrupted (the reports of what finished are still written).
    With --every, each run's exit code is printed and the loop goes on; 130 ends it.
    """
    if every is None:
        _run_once(**params)
        return
    _repeat(every, params)


def _repeat(every: str, params: dict[str, Any]) -> None:
    """``--every``: one run per period (a run longer than the period starts the next at once)."""
    from callproof.resilience.policy import parse_duration  # lazy: see _run_once

    period = parse_duration(every, where="--every")
    if params.get("resume") is not None:
        raise ConfigError("--every starts new runs; it cannot --resume one", where="--every")
    parent = params.pop("out", None)
    err = sys.stderr
    while True:
        started = time.monotonic()
        try:
            _run_once(out=None, parent_out=parent, **params)
            code: int | str | None = 0
        except SystemExit as exc:
            code = exc.code
        if code == 130:
            sys.exit(130)
        print(
            f"every {every}: run ended with exit code {code}; next in "
            f"{max(0.0, period - (time.monotonic() - started)):.0f} s",
            file=err,
            flush=True,
        )
        try:
            time.sleep(max(0.0, period - (time.monotonic() - started)))
        except KeyboardInterrupt:
            sys.exit(130)


def _run_once(
    *,
    as_json: bool,
    junit: Path | None,
    output_format: str,
    db_url: str | None,
    no_history: bool,
    **selection: Any,
) -> None:
    """One run (see :func:`run`); the work is :mod:`callproof.probe.launch`'s, this prints."""
    # lazy, as in every command: `callproof --help` loads each command module, and the runner
    # (httpx, the client, pydantic) takes about a second to import
    from rich.console import Console
    from rich.markup import escape

    from callproof.probe.launch import RunFlags, execute, judge, open_history, plan_run
    from callproof.report.ci import Gate, emit_ci_outputs

    flags = RunFlags(**selection, argv=["callproof", *sys.argv[1:]])
    config, options = plan_run(flags)
    # piped output gets room for the tables instead of rich's 80-column fallback
    # (COLUMNS, when set, is the width asked for: lines wrap at words, never mid-number)
    wide = sys.stdout.isatty() or os.environ.get("COLUMNS")
    out_console = Console(highlight=False, width=None if wide else 140)
    err = Console(stderr=True, highlight=False)

    def warn(message: str) -> None:
        Console(stderr=True).print(f"[yellow]warning:[/] {message}")

    progress = _progress(enabled=not as_json and sys.stderr.isatty())
    if progress is not None:
        options.on_start = progress.start_total
        options.on_record = progress.advance
    # opened first, so a bad --db is a usage error before anything runs or is made
    store = None if no_history else open_history(db_url, warn)
    try:
        result = execute(
            config,
            options,
            new_dir=flags.resume is None and flags.out is None,
            store=store,
            warn=warn,
            after_run=progress.stop if progress is not None else None,
        )
    finally:
        if store is not None:
            store.close()
    verdict = judge(result, options)
    if as_json:
        click.echo(json.dumps(result.summary, indent=2, ensure_ascii=False, default=str))
    else:
        _print_terminal(out_console, result)
    fail_under, gate_mode = options.fail_under, options.gate
    emit_ci_outputs(
        result.summary,
        Gate(fail_under, gate_mode),
        junit=junit,
        annotations=output_format == "github",
        meta=result.meta,
        echo=lambda line: click.echo(line, err=as_json),
    )
    for e in verdict.failing:
        assert fail_under is not None
        value = e["ci95"][0] if gate_mode == "lower" else e["pass_rate"]
        what = "Wilson lower bound" if gate_mode == "lower" else "pass rate"
        err.print(
            f"[red]gate:[/] {escape(e['target'])} · {escape(e['scenario'])}: "
            f"{what} {value:.1%} < {fail_under:.1%}"
        )
    if result.interrupted:
        err.print(
            f"interrupted: {result.written} attempts finished; resume with "
            f"callproof run --resume {escape(str(result.run_dir))}"
        )
    for e in verdict.unreached:
        err.print(
            f"[red]unreachable:[/] {escape(e['target'])} · {escape(e['scenario'])}: no attempt "
            f"got an answer ({escape(', '.join(f'{k} {v}' for k, v in e['outcomes'].items()))});"
            " check its endpoint, credentials and model id",
            soft_wrap=False,
        )
    # sys.exit, not ctx.exit: click's non-standalone mode returns ctx.exit's code instead
    if verdict.exit_code:
        sys.exit(verdict.exit_code)


def _print_terminal(console: Any, result: Any) -> None:
    from rich.markup import escape

    from callproof.probe.summary import read_records
    from callproof.report.common import collect_attempt_lines, failed_line, passed_line
    from callproof.report.terminal import print_attempt, print_summary

    entries = {(e["target"], e["scenario"]): e for e in result.summary.get("results", [])}
    lines = collect_attempt_lines(
        read_records(result.run_dir / "results.jsonl"), cap=TERMINAL_LINES
    )
    for key, entry in entries.items():
        cell = lines.get(key)
        console.print(f"\n[bold]{escape(key[0])}[/] · {escape(key[1])}")
        console.print(f"Running {entry['n']} identical {escape(key[1])} requests...\n")
        if cell is not None:
            for record in cell.records:
                print_attempt(console, record, show_target=False)
            if cell.more:
                console.print(f"[dim]... {cell.more} more in results.jsonl[/]")
        console.print(f"\n{passed_line(entry)}\n{failed_line(entry)}")
    console.print()
    print_summary(console, result.summary)
    console.print(
        f"\nRun directory: {escape(str(result.run_dir))} "
        "(results.jsonl, summary.json, run.json, report.md, report.html)"
    )


class _Progress:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("probing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.task = self.progress.add_task("probe", total=None, failed=0)
        self.failed = 0
        self.started = False

    def start_total(self, total: int) -> None:
        self.progress.update(self.task, total=total)
        self.progress.start()
        self.started = True

    def advance(self, record: dict[str, Any]) -> None:
        if not record.get("passed"):
            self.failed += 1
        self.progress.update(self.task, advance=1, failed=self.failed)

    def stop(self) -> None:
        if self.started:
            self.progress.stop()


def _progress(*, enabled: bool) -> _Progress | None:
    return _Progress() if enabled else None
