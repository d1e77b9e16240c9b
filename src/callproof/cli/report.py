"""``callproof report DIR|RUN_ID``: render a run's reports again.

The work is :func:`callproof.probe.rebuild.rerender`: from a run directory the summary is
recomputed from ``results.jsonl``; from a run id the records are rebuilt from the history
database into a directory (``--out``, default ``callproof-runs/<run id>/``) first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from callproof.cli.options import db_option

__all__ = ["report"]


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
    # lazy, as in every command: `callproof --help` loads each command module, and the
    # library behind this one (the history store, the reports, pydantic) takes ~0.3 s to import
    from callproof.probe.rebuild import rerender

    run_dir, summary = rerender(source, db_url=db_url, out=out)
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

    from callproof.report.terminal import print_summary

    console = Console(highlight=False)
    if not quiet:
        print_summary(console, summary)
    console.print(escape(f"{run_dir / 'report.md'}\n{run_dir / 'report.html'}"), soft_wrap=True)
    if strict and corrupt:
        sys.exit(1)
