"""Every attempt record the suite writes follows docs/attempt.schema.json.

:func:`checking_records` wraps :meth:`AttemptRecord.to_json` (every writer of results.jsonl,
the gateway's evidence and ``call --json`` builds its JSON form there) so each JSON form it
returns is validated. Validating a record costs milliseconds, so each distinct shape (keys,
value types, outcomes) is validated once: the schema constrains only those.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema

from callproof.record import AttemptRecord

SCHEMA = Path(__file__).parents[1] / "docs" / "attempt.schema.json"


def shape(value: Any, key: str | None = None) -> Any:
    """What the schema can tell apart in ``value``: keys, types and outcome names."""
    if isinstance(value, dict):
        return tuple((k, shape(v, k)) for k, v in value.items())
    if isinstance(value, list):
        return ("list", frozenset(shape(v) for v in value))
    if key in ("outcome", "breaker"):
        return ("value", value)
    return type(value).__name__


@contextmanager
def checking_records() -> Iterator[list[str]]:
    """Validate every JSON form :meth:`AttemptRecord.to_json` returns; yields the problems."""
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    seen: set[Any] = set()
    problems: list[str] = []
    installed = AttemptRecord.to_json  # restored after; the raw method is called (no nesting)
    original = inspect.unwrap(installed)

    @functools.wraps(original)
    def to_json(self: AttemptRecord) -> dict[str, Any]:
        data = original(self)
        key = shape(data)
        if key not in seen:
            seen.add(key)
            for error in validator.iter_errors(data):
                problems.append(f"{list(error.absolute_path)}: {error.message}")
        return data

    AttemptRecord.to_json = to_json  # type: ignore[method-assign]
    try:
        yield problems
    finally:
        AttemptRecord.to_json = installed  # type: ignore[method-assign]
