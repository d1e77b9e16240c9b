"""Generate the CLI reference (``docs/cli.md``) from ``--help``, so the docs cannot drift.

Run ``make docs`` (``python -m callproof.docgen > docs/cli.md``); a test fails when the file is
out of date.
"""

from __future__ import annotations

import click

from callproof.cli import cli

__all__ = ["render"]


def _help(command: click.Command, name: str) -> str:
    ctx = click.Context(
        command,
        info_name=name,
        terminal_width=100,
        max_content_width=100,
        help_option_names=["-h", "--help"],
    )
    return command.get_help(ctx)


def render() -> str:
    """The whole CLI reference as Markdown."""
    root = click.Context(cli, info_name="callproof")
    parts = [
        "# CLI reference",
        "",
        "Generated from `--help` by `make docs`; do not edit by hand.",
        "",
        "Exit codes: `0` success; `1` the call or run failed its check (an outcome other than",
        "`ok`, a pass rate under `--fail-under`); `2` usage or configuration error; `130`",
        "interrupted.",
        "",
        "## callproof",
        "",
        "```text",
        _help(cli, "callproof"),
        "```",
    ]
    for name in cli.list_commands(root):
        command = cli.get_command(root, name)
        if command is None:
            continue
        parts += [
            "",
            f"## callproof {name}",
            "",
            "```text",
            _help(command, f"callproof {name}"),
            "```",
        ]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render(), end="")
