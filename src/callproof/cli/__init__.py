"""The ``callproof`` command line: a thin layer over the library.

Each command lives in its own module, loaded by :class:`LazyGroup` when it is looked up. A
command module imports click and cheap modules at module level and its library entry point
inside the command function: ``callproof --help`` loads every command module (for the short
help), and the library behind a command (httpx, the client, pydantic, starlette, rich) takes
up to a second to import, so one command's imports never slow another. Those function-level
imports are the only ones of the package's own modules under ``cli/``.

Exit codes: 0 success; 1 the call or run failed its check (an outcome other than ``ok``, a pass
rate under ``--fail-under``); 2 usage or configuration error; 130 interrupted.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from callproof import redact
from callproof.errors import CallproofError, ConfigError

__all__ = [
    "LazyGroup",
    "main",
]

#: command name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "run": "callproof.cli.run:run",
    "call": "callproof.cli.call:call",
    "emulate": "callproof.cli.emulate:emulate",
    "serve": "callproof.cli.serve:serve",
    "replay": "callproof.cli.replay:replay",
    "init": "callproof.cli.init:init",
    "history": "callproof.cli.history:history",
    "report": "callproof.cli.report:report",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="callproof")
@click.option(
    "--log-level",
    envvar="CALLPROOF_LOG_LEVEL",
    default="WARNING",
    show_default=True,
    type=click.Choice(["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Logging level (transforms and circuit-breaker changes log at DEBUG/INFO). Every line "
    "is redacted; httpx, httpcore and botocore stay at WARNING unless TRACE.",
)
def cli(log_level: str) -> None:
    """callproof: prove which LLM provider fails your tool-use flows, and route around it."""
    # Everything printed goes through the redactor: a secret a server reflects (a key in an
    # error message, a tool argument) never reaches the terminal or a log.
    redact.install_stdio()
    redact.configure_logging(log_level)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point: maps errors to documented exit codes, never a traceback."""
    try:
        return cli.main(args=argv, prog_name="callproof", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except CallproofError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
