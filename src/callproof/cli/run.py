"""``callproof run``: the probe. N identical tool-use conversations per target, classified,
summarised, reported and recorded in the history database.

With no configuration anywhere it starts the emulator in-process and probes the seeds' matrix.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from callproof import redact
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
    import time

    from callproof.resilience.measured import parse_duration

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
    config_path: Path | None,
    n: int | None,
    targets: tuple[str, ...],
    scenarios: tuple[str, ...],
    routes: tuple[str, ...],
    out: Path | None,
    resume: Path | None,
    rerun: Path | None,
    concurrency: int | None,
    per_target_concurrency: int | None,
    rate_limit: float | None,
    fail_under: float | None,
    gate: str | None,
    as_json: bool,
    junit: Path | None,
    output_format: str,
    db_url: str | None,
    no_history: bool,
    capture_failures: bool,
    seed: int | None,
    parent_out: Path | None = None,
) -> None:
    """One run (see :func:`run`); ``parent_out`` is ``--out`` under ``--every``: the directory
    each new run directory is made in."""
    from rich.console import Console
    from rich.markup import escape

    from callproof.probe.config import DEFAULT_TOML, load_config, parse_config
    from callproof.probe.runner import (
        RunOptions,
        check_selection,
        gate_failures,
        load_plan,
        new_run_dir,
        run_sync,
    )

    if resume is not None and rerun is not None:
        raise ConfigError("give --resume or --rerun, not both", where="--rerun")
    if resume is not None or rerun is not None:
        source = resume if resume is not None else rerun
        assert source is not None
        plan = load_plan(source)
        cfg_path = config_path or (Path(plan["config"]) if plan.get("config") else None)
        config = (
            load_config(cfg_path)
            if cfg_path is not None
            else parse_config(DEFAULT_TOML, name="<embedded default>")
        )
        options = RunOptions(
            out=resume if resume is not None else (out or Path(config.defaults.out)),
            n=n or int(plan.get("n") or config.defaults.n),
            targets=list(plan.get("targets") or []),
            routes=list(plan.get("routes") or []),
            scenarios=list(plan.get("scenarios") or config.defaults.scenarios),
            concurrency=concurrency or int(plan.get("concurrency") or config.defaults.concurrency),
            per_target_concurrency=per_target_concurrency or plan.get("per_target_concurrency"),
            rate_limit=rate_limit or plan.get("rate_limit"),
            capture_failures=capture_failures or bool(plan.get("capture_failures")),
            resume=resume is not None,
            seed=seed if seed is not None else plan.get("seed"),
        )
        if rerun is not None:
            if targets or routes:
                options.targets, options.routes = _unique(list(targets)), _unique(list(routes))
            if scenarios:
                options.scenarios = _unique(list(scenarios))
            check_selection(config, options)
    else:
        if config_path is not None and not config_path.is_file():
            raise ConfigError(f"configuration file not found: {config_path}", where="--config")
        config = load_config(config_path)
        d = config.defaults
        if targets or routes:
            chosen_targets, chosen_routes = list(targets), list(routes)
        else:
            chosen_targets = list(d.targets if d.targets is not None else config.targets)
            chosen_routes = list(d.routes if d.routes is not None else config.routes)
        options = RunOptions(
            out=out if out is not None else (parent_out or Path(d.out)),
            n=n or d.n,
            targets=_unique(chosen_targets),
            routes=_unique(chosen_routes),
            scenarios=_unique(list(scenarios) or d.scenarios),
            concurrency=concurrency or d.concurrency,
            per_target_concurrency=per_target_concurrency or d.per_target_concurrency,
            rate_limit=rate_limit or d.rate_limit,
            capture_failures=capture_failures,
            seed=seed,
        )
        check_selection(config, options)
    options.argv = redact.redact_argv(["callproof", *sys.argv[1:]])
    options.fail_under = fail_under if fail_under is not None else config.defaults.fail_under
    options.gate = gate or config.defaults.gate

    # piped output gets room for the tables instead of rich's 80-column fallback
    # (COLUMNS, when set, is the width asked for: lines wrap at words, never mid-number)
    wide = sys.stdout.isatty() or os.environ.get("COLUMNS")
    out_console = Console(highlight=False, width=None if wide else 140)
    progress = _progress(enabled=not as_json and sys.stderr.isatty())
    if progress is not None:
        options.on_start = progress.start_total
        options.on_record = progress.advance
    # opened first, so a bad --db is a usage error before anything runs or is made
    store = None if no_history else _open_history(db_url)
    from callproof.probe.rundir import lock_run_dir

    try:
        with _unwritable(options.out, resume=False):
            if resume is None and out is None:  # a new run (or a rerun) gets a new directory
                options.out = new_run_dir(options.out)
            elif resume is None:
                options.out.mkdir(parents=True, exist_ok=True)
        # one writer per run: held across the attempts, the reports and the history write
        with _unwritable(options.out, resume=True), lock_run_dir(options.out):
            try:
                result = run_sync(config, options)
            finally:
                if progress is not None:
                    progress.stop()
            _finish(result, store)
    finally:
        if store is not None:
            store.close()

    fail_under, gate_mode = options.fail_under, options.gate
    failing = gate_failures(result.summary, fail_under, gate_mode) if fail_under is not None else []
    if as_json:
        click.echo(json.dumps(result.summary, indent=2, ensure_ascii=False, default=str))
    else:
        _print_terminal(out_console, result)
    from callproof.report.ci import Gate, emit_ci_outputs

    emit_ci_outputs(
        result.summary,
        Gate(fail_under, gate_mode),
        junit=junit,
        annotations=output_format == "github",
        meta=result.meta,
        echo=lambda line: click.echo(line, err=as_json),
    )
    err = Console(stderr=True, highlight=False)
    for e in failing:
        value = e["ci95"][0] if gate_mode == "lower" else e["pass_rate"]
        what = "Wilson lower bound" if gate_mode == "lower" else "pass rate"
        err.print(
            f"[red]gate:[/] {escape(e['target'])} · {escape(e['scenario'])}: "
            f"{what} {value:.1%} < {fail_under:.1%}"
        )
    # sys.exit, not ctx.exit: click's non-standalone mode returns ctx.exit's code instead
    if result.interrupted:
        err.print(
            f"interrupted: {result.written} attempts finished; resume with "
            f"callproof run --resume {escape(str(result.run_dir))}"
        )
        sys.exit(130)
    from callproof.report.evidence import unreachable_entries

    unreached = unreachable_entries(result.summary)
    for e in unreached:
        err.print(
            f"[red]unreachable:[/] {escape(e['target'])} · {escape(e['scenario'])}: no attempt "
            f"got an answer ({escape(', '.join(f'{k} {v}' for k, v in e['outcomes'].items()))});"
            " check its endpoint, credentials and model id",
            soft_wrap=False,
        )
    if unreached:
        sys.exit(3)
    if failing:
        sys.exit(1)


@contextlib.contextmanager
def _unwritable(path: Path, *, resume: bool) -> Iterator[None]:
    """An ``OSError`` while writing becomes one line (exit 2) naming the path; a full disk says
    how to resume the run once there is space."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or path
        reason = exc.strerror or str(exc)
        message = f"cannot write {where}: {reason}"
        if resume and exc.errno in (errno.ENOSPC, errno.EDQUOT) and (path / "run.json").exists():
            message += f"; free some space, then resume with: callproof run --resume {path}"
        raise ConfigError(message) from None


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _open_history(db_url: str | None) -> Any:
    """The history store, or ``None`` (with a warning) when it cannot be opened. A database the
    user named (``--db``, ``CALLPROOF_DB``) that cannot be opened is a ``ConfigError`` (exit 2);
    the default location failing never stops a probe."""
    from rich.console import Console

    from callproof.probe.store import HistoryStore

    try:
        return HistoryStore.open(db_url)
    except ConfigError as exc:
        if db_url is not None:
            raise
        problem: Exception = exc
    except Exception as exc:  # noqa: BLE001 - history is a side record; the run stands without it
        problem = exc
    Console(stderr=True).print(f"[yellow]warning:[/] no history database: {problem}")
    return None


def _finish(result: Any, store: Any) -> None:
    """Reports, then history. A report that cannot be written never skips the history write
    (the error is raised after it); the history is written in one transaction, and a history
    failure is reported, never loses the run's files."""
    from rich.console import Console

    from callproof.probe.summary import read_records
    from callproof.report import write_reports

    report_error: OSError | None = None
    try:
        write_reports(result.run_dir, result.summary, result.meta)
    except OSError as exc:
        report_error = exc
    if store is not None:
        try:
            store.record(
                result.meta, result.summary, read_records(result.run_dir / "results.jsonl")
            )
        except Exception as exc:  # noqa: BLE001 - as above
            Console(stderr=True).print(f"[yellow]warning:[/] run not recorded in history: {exc}")
    if report_error is not None:
        raise report_error


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
