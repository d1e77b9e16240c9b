"""``callproof replay CAPTURE``: decode a capture offline and print what the client concludes.

The capture's recorded timestamps run through the same clocks as a live call, so a recorded
hang is concluded as the same stall. ``--json`` prints the object ``callproof call --json``
prints; the exit code is 0 when the outcome is ``ok``, 1 otherwise, 2 for a bad capture file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from callproof.cli.call import ConfigUsageError, attempt_json, explain_attempt
from callproof.errors import ConfigError
from callproof.scenarios import BUILTIN

__all__ = ["replay"]


@click.command("replay")
@click.argument("capture", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--scenario",
    type=click.Choice(list(BUILTIN)),
    default=None,
    help="Also apply this built-in scenario's check (the answer must mention 22; a "
    "well-formed get_weather call). Without it, only the stream itself is judged.",
)
@click.option("-v", "--verbose", is_flag=True, help="Also print every decoded event.")
def replay(capture: Path, as_json: bool, scenario: str | None, verbose: bool) -> None:
    """Decode CAPTURE (written by `callproof call --capture`) and explain it."""
    # lazy (see callproof.cli): the capture decoder brings the client and the record schema
    from callproof.attempt import attempt_from
    from callproof.capture import decode_capture, read_capture

    try:
        meta = read_capture(capture).meta
        result, _events = decode_capture(capture)
    except ConfigError as exc:
        raise ConfigUsageError(str(exc)) from None
    attempt = attempt_from(result, BUILTIN[scenario]() if scenario else None)
    if as_json:
        click.echo(json.dumps(attempt_json(attempt), ensure_ascii=False))
    else:
        label = f"replay of {capture} ({meta.get('api')}:{meta.get('model')})"
        explain_attempt(attempt, label=label, verbose=verbose)
    sys.exit(0 if attempt.passed else 1)
