"""A probe run as ``callproof run`` starts it: flags resolved against ``[defaults]`` (or against
the ``run.json`` of a run being resumed or rerun), the run directory made and locked, the run
executed, its reports and history written, and the exit code decided.

* :func:`plan_run` - :class:`RunFlags` to a loaded :class:`~callproof.probe.config.Config` and
  :class:`~callproof.probe.runner.RunOptions`;
* :func:`open_history` - the history store, or ``None`` when the default one cannot be opened;
* :func:`execute` - make (or reuse) the run directory, hold its lock, run, :func:`finish`;
* :func:`finish` - reports, then history; a report failure never skips the history write;
* :func:`judge` - the gate failures, the unreachable targets and the exit code of a result;
* :func:`unwritable` - an ``OSError`` while writing as a one-line ``ConfigError``.

The CLI (:mod:`callproof.cli.run`) parses flags and prints; everything else is here.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callproof import redact
from callproof.errors import ConfigError
from callproof.probe.config import DEFAULT_TOML, Config, load_config, parse_config
from callproof.probe.rundir import lock_run_dir
from callproof.probe.runner import (
    RunOptions,
    RunResult,
    check_selection,
    gate_failures,
    load_plan,
    new_run_dir,
    run_sync,
)
from callproof.probe.store import HistoryStore
from callproof.probe.summary import read_records
from callproof.report import write_reports
from callproof.report.evidence import unreachable_entries

__all__ = [
    "RunFlags",
    "Verdict",
    "execute",
    "finish",
    "judge",
    "open_history",
    "plan_run",
    "unwritable",
]

#: A function that shows a warning to the user (the CLI prints it on stderr).
Warn = Callable[[str], None]


@dataclass(slots=True)
class RunFlags:
    """What the user asked for on the command line (``None`` or empty: not given)."""

    config_path: Path | None = None
    n: int | None = None
    targets: tuple[str, ...] = ()
    scenarios: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    out: Path | None = None
    resume: Path | None = None
    rerun: Path | None = None
    concurrency: int | None = None
    per_target_concurrency: int | None = None
    rate_limit: float | None = None
    fail_under: float | None = None
    gate: str | None = None
    capture_failures: bool = False
    seed: int | None = None
    #: ``--out`` under ``--every``: the directory each new run directory is made in.
    parent_out: Path | None = None
    argv: list[str] = field(default_factory=list)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _from_plan(flags: RunFlags, source: Path) -> tuple[Config, RunOptions]:
    """``--resume DIR`` / ``--rerun DIR``: the run's own ``run.json``, flags over it."""
    plan = load_plan(source)
    cfg_path = flags.config_path or (Path(plan["config"]) if plan.get("config") else None)
    config = (
        load_config(cfg_path)
        if cfg_path is not None
        else parse_config(DEFAULT_TOML, name="<embedded default>")
    )
    d = config.defaults
    options = RunOptions(
        out=flags.resume if flags.resume is not None else (flags.out or Path(d.out)),
        n=flags.n or int(plan.get("n") or d.n),
        targets=list(plan.get("targets") or []),
        routes=list(plan.get("routes") or []),
        scenarios=list(plan.get("scenarios") or d.scenarios),
        concurrency=flags.concurrency or int(plan.get("concurrency") or d.concurrency),
        per_target_concurrency=flags.per_target_concurrency or plan.get("per_target_concurrency"),
        rate_limit=flags.rate_limit or plan.get("rate_limit"),
        capture_failures=flags.capture_failures or bool(plan.get("capture_failures")),
        resume=flags.resume is not None,
        seed=flags.seed if flags.seed is not None else plan.get("seed"),
    )
    if flags.rerun is not None:
        if flags.targets or flags.routes:
            options.targets = _unique(list(flags.targets))
            options.routes = _unique(list(flags.routes))
        if flags.scenarios:
            options.scenarios = _unique(list(flags.scenarios))
        check_selection(config, options)
    return config, options


def _fresh(flags: RunFlags) -> tuple[Config, RunOptions]:
    """A new run: the configuration's ``[defaults]``, flags over them."""
    if flags.config_path is not None and not flags.config_path.is_file():
        raise ConfigError(f"configuration file not found: {flags.config_path}", where="--config")
    config = load_config(flags.config_path)
    d = config.defaults
    if flags.targets or flags.routes:
        chosen_targets, chosen_routes = list(flags.targets), list(flags.routes)
    else:
        chosen_targets = list(d.targets if d.targets is not None else config.targets)
        chosen_routes = list(d.routes if d.routes is not None else config.routes)
    options = RunOptions(
        out=flags.out if flags.out is not None else (flags.parent_out or Path(d.out)),
        n=flags.n or d.n,
        targets=_unique(chosen_targets),
        routes=_unique(chosen_routes),
        scenarios=_unique(list(flags.scenarios) or d.scenarios),
        concurrency=flags.concurrency or d.concurrency,
        per_target_concurrency=flags.per_target_concurrency or d.per_target_concurrency,
        rate_limit=flags.rate_limit or d.rate_limit,
        capture_failures=flags.capture_failures,
        seed=flags.seed,
    )
    check_selection(config, options)
    return config, options


def plan_run(flags: RunFlags) -> tuple[Config, RunOptions]:
    """The configuration and options of the run ``flags`` ask for; bad combinations and
    unknown names are ``ConfigError``."""
    if flags.resume is not None and flags.rerun is not None:
        raise ConfigError("give --resume or --rerun, not both", where="--rerun")
    source = flags.resume if flags.resume is not None else flags.rerun
    config, options = _fresh(flags) if source is None else _from_plan(flags, source)
    options.argv = redact.redact_argv(flags.argv)
    options.fail_under = (
        flags.fail_under if flags.fail_under is not None else config.defaults.fail_under
    )
    options.gate = flags.gate or config.defaults.gate
    return config, options


@contextlib.contextmanager
def unwritable(path: Path, *, resume: bool) -> Iterator[None]:
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


def open_history(db_url: str | None, warn: Warn) -> HistoryStore | None:
    """The history store, or ``None`` (with a warning) when it cannot be opened. A database the
    user named (``--db``, ``CALLPROOF_DB``) that cannot be opened is a ``ConfigError`` (exit 2);
    the default location failing never stops a probe."""
    try:
        return HistoryStore.open(db_url)
    except ConfigError as exc:
        if db_url is not None:
            raise
        problem: Exception = exc
    except Exception as exc:  # noqa: BLE001 - history is a side record; the run stands without it
        problem = exc
    warn(f"no history database: {problem}")
    return None


def finish(result: RunResult, store: HistoryStore | None, warn: Warn) -> None:
    """Reports, then history. A report that cannot be written never skips the history write
    (the error is raised after it); the history is written in one transaction, and a history
    failure is reported, never loses the run's files."""
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
            warn(f"run not recorded in history: {exc}")
    if report_error is not None:
        raise report_error


def execute(
    config: Config,
    options: RunOptions,
    *,
    new_dir: bool,
    store: HistoryStore | None,
    warn: Warn,
    after_run: Callable[[], None] | None = None,
) -> RunResult:
    """Run: a new run directory under ``options.out`` when ``new_dir`` (else ``options.out``
    itself, made when missing), locked across the attempts, the reports and the history write
    (one writer per run). ``after_run`` is called once the attempts ended, even on an error
    (the CLI stops its progress bar)."""
    with unwritable(options.out, resume=False):
        if new_dir:
            options.out = new_run_dir(options.out)
        elif not options.resume:
            options.out.mkdir(parents=True, exist_ok=True)
    with unwritable(options.out, resume=True), lock_run_dir(options.out):
        try:
            result = run_sync(config, options)
        finally:
            if after_run is not None:
                after_run()
        finish(result, store, warn)
    return result


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a finished run means for its exit code."""

    #: ``summary["results"]`` entries under the ``--fail-under`` gate.
    failing: list[dict[str, Any]]
    #: Entries no attempt of which got an answer (see ``report.evidence``).
    unreached: list[dict[str, Any]]
    #: 130 interrupted, 3 a target never reached, 1 a gate failure, else 0.
    exit_code: int


def judge(result: RunResult, options: RunOptions) -> Verdict:
    """The gate failures, the unreachable targets and the exit code of ``result``."""
    failing = (
        gate_failures(result.summary, options.fail_under, options.gate)
        if options.fail_under is not None
        else []
    )
    unreached = [] if result.interrupted else unreachable_entries(result.summary)
    if result.interrupted:
        code = 130
    elif unreached:
        code = 3
    elif failing:
        code = 1
    else:
        code = 0
    return Verdict(failing=failing, unreached=unreached, exit_code=code)
