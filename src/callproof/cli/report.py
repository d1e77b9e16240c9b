"""``callproof report DIR|RUN_ID``: render a run's reports again.

From a run directory the summary is recomputed from ``results.jsonl``; from a run id the records
are rebuilt from the history database into a directory (``--out``, default
``callproof-runs/<run id>/``) first.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from callproof.cli.options import db_option
from callproof.errors import ConfigError

if TYPE_CHECKING:
    from callproof.probe.summary import Aggregator

__all__ = ["regenerate", "report"]

_SUMMARY_KEYS = frozenset({"results", "comparisons", "totals", "corrupt_lines"})


def _aggregator(meta: dict[str, Any]) -> Aggregator:
    from callproof.probe.summary import Aggregator
    from callproof.report.meta import meta_scenarios, meta_targets

    return Aggregator(
        targets=[str(t["name"]) for t in meta_targets(meta) if t.get("name")],
        scenarios=[str(s["name"]) for s in meta_scenarios(meta) if s.get("name")],
    )


def regenerate(
    run_dir: Path, meta: dict[str, Any], previous: dict[str, Any] | None
) -> dict[str, Any]:
    """Recompute ``summary.json`` from ``run_dir/results.jsonl`` and write the reports.

    Keys the runner added to the previous summary (``run``, ``gate``) are kept.
    """
    from callproof.probe.rundir import write_json
    from callproof.probe.summary import CorruptLine, read_records
    from callproof.report import write_reports

    aggregator = _aggregator(meta)
    corrupt: list[CorruptLine] = []
    summary = aggregator.add_all(read_records(run_dir / "results.jsonl", corrupt)).summary()
    for key, value in (previous or {}).items():
        if key not in _SUMMARY_KEYS:
            summary[key] = value
    if corrupt:
        # never silently dropped: named in summary.json, the reports and on stderr
        summary["corrupt_lines"] = [c.to_dict() for c in corrupt]
    write_json(run_dir / "summary.json", summary)
    write_reports(run_dir, summary, meta)
    return summary


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}", where=str(path)) from exc
    return value if isinstance(value, dict) else None


def _from_dir(run_dir: Path) -> tuple[Path, dict[str, Any], dict[str, Any] | None]:
    if not (run_dir / "results.jsonl").is_file():
        raise ConfigError(f"{run_dir} holds no results.jsonl: not a callproof run directory")
    meta = _read_json(run_dir / "run.json") or {"run_id": run_dir.name}
    return run_dir, meta, _read_json(run_dir / "summary.json")


def _from_db(
    run_id: str, db_url: str | None, out: Path | None
) -> tuple[Path, dict[str, Any], dict[str, Any] | None]:
    from callproof.probe.store import HistoryStore

    with HistoryStore.open(db_url) as store:
        found = store.run(run_id)
        if found is None:
            raise ConfigError(
                f"{run_id!r} is neither a run directory nor a run id recorded in {store.url}"
            )
        run_dir = out or Path("callproof-runs") / found["run_id"]
        run_dir.mkdir(parents=True, exist_ok=True)
        meta = found["meta"]
        with (run_dir / "results.jsonl").open("w", encoding="utf-8") as fh:
            for record in store.attempts(found["run_id"]):
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    (run_dir / "run.json").write_text(
        json.dumps(meta, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    _copy_captures(found["summary"], run_dir)
    return run_dir, meta, found["summary"]


def _copy_captures(summary: dict[str, Any] | None, run_dir: Path) -> None:
    """Bring the original run's captures along when its directory still exists."""
    original = ((summary or {}).get("run") or {}).get("run_dir")
    if not original:
        return
    source = Path(original) / "captures"
    target = run_dir / "captures"
    if source.is_dir() and source.resolve() != target.resolve():
        shutil.copytree(source, target, dirs_exist_ok=True)


@click.command("report")
@click.argument("source", metavar="DIR|RUN_ID")
@db_option
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Where a run rebuilt from the database is written [callproof-runs/<run id>/].",
)
@click.option("--json", "as_json", is_flag=True, help="Print summary.json on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the report paths.")
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 1 when results.jsonl holds a line that is not a record (it is always reported).",
)
def report(
    source: str, db_url: str | None, out: Path | None, as_json: bool, quiet: bool, strict: bool
) -> None:
    """Render report.md and report.html again, from a run directory or a recorded RUN_ID.

    \b
    SOURCE is a run directory (holding results.jsonl), or a run id (or a unique prefix of one)
    recorded in the history database.

    \b
    A line of results.jsonl that is not a record (a torn or edited line) is never dropped
    silently: each is named with its line number on stderr, in summary.json (corrupt_lines)
    and at the top of both reports.

    \b
    Exit codes: 0 reports written; 1 --strict and results.jsonl holds unreadable lines;
    2 usage error, not a run, or a path that cannot be written.
    """
    path = Path(source)
    try:
        if path.is_dir():
            run_dir, meta, previous = _from_dir(path)
        elif path.exists():
            raise ConfigError(f"{source} is a file; give a run directory or a run id")
        else:
            run_dir, meta, previous = _from_db(source, db_url, out)
        from callproof.probe.rundir import lock_run_dir

        with lock_run_dir(run_dir):  # a run still being written is not rewritten under it
            summary = regenerate(run_dir, meta, previous)
    except OSError as exc:
        raise ConfigError(f"cannot write {exc.filename or path}: {exc.strerror or exc}") from None
    corrupt = summary.get("corrupt_lines") or []
    for item in corrupt:
        click.echo(
            f"warning: results.jsonl line {item['line']} is not a record and is not counted: "
            f"{item['problem']}",
            err=True,
        )
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
        if strict and corrupt:
            sys.exit(1)
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    if not quiet:
        from callproof.report.terminal import print_summary

        print_summary(console, summary)
    console.print(escape(f"{run_dir / 'report.md'}\n{run_dir / 'report.html'}"), soft_wrap=True)
    if strict and corrupt:
        sys.exit(1)
