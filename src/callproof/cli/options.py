"""Options shared by several commands, declared once."""

from __future__ import annotations

import click

__all__ = ["db_option"]

#: ``--db URL`` (env ``CALLPROOF_DB``): the history database of ``run``, ``history``, ``report``.
db_option = click.option(
    "--db",
    "db_url",
    envvar="CALLPROOF_DB",
    metavar="URL",
    help="History database URL (sqlite:///PATH, postgresql://...). Env: CALLPROOF_DB.",
)
