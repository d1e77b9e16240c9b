"""The attempt record: one line of ``results.jsonl``, typed.

:class:`AttemptRecord` owns the fields of a record; :meth:`AttemptRecord.to_json` is its JSON
form (what ``results.jsonl``, the history database, the gateway's evidence and the reports
hold), :meth:`AttemptRecord.from_json` reads it back. A routed call's record carries one
:class:`RouteAttemptRecord` per attempt (and per skipped target) in ``route_attempts``.

The JSON form is a contract users script against: keys come in the declared order, with the
values as given (no rounding, no coercion), so a record written today reads back and writes
out byte for byte. Keys this module does not know (the gateway's ``front``, ``served_by`` ...)
are kept in ``extra`` and written after the known ones. :func:`attempt_schema` is the JSON
Schema of the form, generated from these classes; ``docs/attempt.schema.json`` is its committed
copy (a test keeps the two equal and validates every record the suite writes against it).

Reading is lenient where old runs may differ (a missing key takes its default, as the readers'
``.get`` did) and strict where a record would be meaningless: a JSON object without a known
``outcome`` is not a record (:class:`~callproof.errors.RecordError`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ConfigDict, TypeAdapter, with_config
from pydantic.json_schema import SkipJsonSchema

from callproof.errors import RecordError
from callproof.outcomes import Outcome

__all__ = [
    "ROUTE_OUTCOMES",
    "AttemptRecord",
    "ErrorRecord",
    "RouteAttemptRecord",
    "TimingsRecord",
    "ToolCallRecord",
    "attempt_schema",
    "schema_json",
]

#: Outcomes only a route attempt has: a target skipped (circuit open, nothing sent) and an
#: attempt cancelled because another one won or the call ended.
ROUTE_OUTCOMES = ("skipped", "abandoned")

_CONFIG = ConfigDict(use_attribute_docstrings=True, extra="allow")
_CLOSED = ConfigDict(use_attribute_docstrings=True, extra="forbid")


@with_config(_CLOSED)
@dataclass(frozen=True, slots=True)
class TimingsRecord:
    """The clocks of an attempt, in seconds from the moment the request was sent."""

    headers_s: float | None = None
    """Response headers arrived."""
    first_event_s: float | None = None
    """The first decoded stream event."""
    first_content_s: float | None = None
    """The first text, thinking or tool-call content."""
    total_s: float | None = None
    """The attempt ended (for an agent loop: every turn, summed)."""
    max_gap_s: float | None = None
    """The longest gap between two events."""

    def to_json(self) -> dict[str, Any]:
        return {
            "headers_s": self.headers_s,
            "first_event_s": self.first_event_s,
            "first_content_s": self.first_content_s,
            "total_s": self.total_s,
            "max_gap_s": self.max_gap_s,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TimingsRecord:
        return cls(
            headers_s=_number(data.get("headers_s")),
            first_event_s=_number(data.get("first_event_s")),
            first_content_s=_number(data.get("first_content_s")),
            total_s=_number(data.get("total_s")),
            max_gap_s=_number(data.get("max_gap_s")),
        )


@with_config(_CLOSED)
@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """The error a failed attempt ended with (:meth:`callproof.errors.CallError.to_dict`)."""

    kind: str
    """The error's class name (``StallNoEvents``, ``HTTPStatusError`` ...)."""
    type: str | None = None
    """The provider's error type, where one exists."""
    message: str = ""
    """What went wrong, in words."""
    status: int | None = None
    """The HTTP status, where one exists."""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "type": self.type,
            "message": self.message,
            "status": self.status,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ErrorRecord:
        status = data.get("status")
        return cls(
            kind=str(data.get("kind") or "error"),
            type=data.get("type"),
            message=str(data.get("message") or ""),
            status=status if type(status) is int else None,
        )


@with_config(_CLOSED)
@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """A tool call of the answer."""

    id: str
    """The call's id, as the provider gave it."""
    name: str
    """The tool called."""
    arguments: dict[str, Any] | str
    """The parsed arguments, or the raw text when it is not a JSON object."""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToolCallRecord:
        arguments = data.get("arguments")
        return cls(
            id=str(data.get("id") or ""),
            name=str(data.get("name") or ""),
            arguments=arguments if isinstance(arguments, dict | str) else "",
        )


@with_config(_CONFIG)
@dataclass(frozen=True, slots=True, kw_only=True)
class RouteAttemptRecord:
    """One attempt of a routed call, or one target it skipped (``sent`` false).

    ``ended_s``, ``first_event_timeout_s`` and ``capture`` are written for sent attempts only
    (a skipped target's ``capture: null``, which ``--capture-failures`` writes last, is kept in
    ``extra``); ``suspected_stall`` for abandoned ones only.
    """

    target: str
    """The member target."""
    attempt: int
    """1-based, in the order the route tried its members."""
    outcome: Outcome | Literal["skipped", "abandoned"]
    """The attempt's own outcome; ``skipped`` (circuit open) or ``abandoned`` (cancelled)."""
    sent: bool = True
    """Whether a request went out."""
    hedge: bool = False
    """Whether it was a hedge (a second request while the first still ran)."""
    timings: TimingsRecord | None = None
    """Its clocks, when it was sent."""
    started_s: float = 0.0
    """When it started, in seconds from the call's start."""
    ended_s: float | None = None
    """When it ended, in seconds from the call's start."""
    first_event_timeout_s: float | None = None
    """The first-event timeout it ran under (the adaptive watchdog may lower it)."""
    abandoned_reason: str | None = None
    """Why it ended without an answer of its own (its outcome, or why it was cancelled)."""
    error: ErrorRecord | None = None
    """The error it ended with."""
    request_id: str | None = None
    """The provider's request id."""
    breaker: str = "closed"
    """The target's circuit state when the attempt started."""
    capture: str | None = None
    """Its raw wire capture, when one was kept."""
    warnings: tuple[str, ...] = ()
    """The client's warnings about a stream that still counted as complete."""
    usage: dict[str, int] | None = None
    """This attempt's own token counts."""
    served: bool = False
    """Whether this attempt's answer is the one the call returned."""
    suspected_stall: bool | None = None
    """For an abandoned hedge loser: whether it most likely hung."""
    extra: SkipJsonSchema[dict[str, Any]] = field(default_factory=dict)
    """Keys this class does not know, kept in order after the known ones."""

    def to_json(self) -> dict[str, Any]:
        """The JSON form: the keys in declared order, ``extra`` last."""
        out: dict[str, Any] = {
            "target": self.target,
            "attempt": self.attempt,
            "outcome": str(self.outcome),
            "sent": self.sent,
            "hedge": self.hedge,
            "timings": self.timings.to_json() if self.timings is not None else None,
            "started_s": self.started_s,
        }
        if self.sent:
            out["ended_s"] = self.ended_s
            out["first_event_timeout_s"] = self.first_event_timeout_s
        out["abandoned_reason"] = self.abandoned_reason
        out["error"] = self.error.to_json() if self.error is not None else None
        out["request_id"] = self.request_id
        out["breaker"] = self.breaker
        if self.sent:
            out["capture"] = self.capture
        out["warnings"] = list(self.warnings)
        out["usage"] = dict(self.usage) if self.usage is not None else None
        out["served"] = self.served
        if self.suspected_stall is not None:
            out["suspected_stall"] = self.suspected_stall
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RouteAttemptRecord:
        """Read a JSON form back (missing keys take their defaults)."""
        outcome = data.get("outcome")
        timings, error, usage = data.get("timings"), data.get("error"), data.get("usage")
        return cls(
            target=str(data.get("target") or "?"),
            attempt=_int(data.get("attempt"), 0),
            outcome=outcome if outcome in ROUTE_OUTCOMES else _outcome(outcome),
            sent=bool(data.get("sent", True)),
            hedge=bool(data.get("hedge", False)),
            timings=TimingsRecord.from_json(timings) if isinstance(timings, dict) else None,
            started_s=_number(data.get("started_s")) or 0.0,
            ended_s=_number(data.get("ended_s")),
            first_event_timeout_s=_number(data.get("first_event_timeout_s")),
            abandoned_reason=_str(data.get("abandoned_reason")),
            error=ErrorRecord.from_json(error) if isinstance(error, dict) else None,
            request_id=_str(data.get("request_id")),
            breaker=str(data.get("breaker") or "closed"),
            capture=_str(data.get("capture")),
            warnings=tuple(str(w) for w in data.get("warnings") or ()),
            usage=dict(usage) if isinstance(usage, dict) else None,
            served=bool(data.get("served", False)),
            suspected_stall=_bool(data.get("suspected_stall")),
            extra={
                k: v
                for k, v in data.items()
                if k not in _ROUTE_KEYS or (k in _SENT_ONLY and not data.get("sent", True))
            },
        )

    def replace(self, **changes: Any) -> RouteAttemptRecord:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)


@with_config(_CONFIG)
@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord:
    """One attempt of a (target or route, scenario): a line of ``results.jsonl``.

    Built by :meth:`callproof.attempt.Attempt.record` (the per-attempt fields) and completed by
    the runner (``run_id``, ``seq``, the unit and scenario, ``started_at``, ``capture``).
    """

    run_id: str = ""
    """The run it belongs to."""
    seq: int = 0
    """1-based, in the order the records were written."""
    target: str = ""
    """The target, or ``route:NAME`` for a route."""
    scenario: str = ""
    """The scenario's name."""
    attempt: int = 0
    """1-based number of the attempt at this (target, scenario)."""
    api: str | None = None
    """The target's wire API (none for a route)."""
    model: str | None = None
    """The target's model id (none for a route)."""
    provider: str | None = None
    """The target's provider, when configured."""
    outcome: Outcome
    """The attempt's outcome (:func:`callproof.outcomes.classify`)."""
    passed: bool
    """Whether the outcome is ``ok``."""
    detail: str = ""
    """One line a person can read: why it failed."""
    stop_reason: str | None = None
    """The normalised stop reason."""
    raw_stop_reason: str | None = None
    """The stop reason as the provider sent it."""
    text: str = ""
    """The answer's text (an agent loop's final or failing turn)."""
    thinking: str = ""
    """The answer's reasoning text."""
    tool_calls: tuple[ToolCallRecord, ...] = ()
    """The answer's tool calls."""
    usage: dict[str, int] | None = None
    """Token counts as the provider reported them."""
    timings: TimingsRecord = field(default_factory=TimingsRecord)
    """The attempt's clocks."""
    error: ErrorRecord | None = None
    """The error the attempt ended with."""
    request_id: str | None = None
    """The provider's request id."""
    requests: int = 1
    """The HTTP requests the attempt spent (a route's attempts, a loop's turns)."""
    route_attempts: tuple[RouteAttemptRecord, ...] = ()
    """For a route: one record per attempt and per skipped target."""
    started_at: str | None = None
    """When it started (UTC, ISO 8601)."""
    capture: str | None = None
    """Its raw wire capture, relative to the run directory, when one was kept."""
    extra: SkipJsonSchema[dict[str, Any]] = field(default_factory=dict)
    """Keys this class does not know (the gateway's), kept in order after the known ones."""
    requests_first: SkipJsonSchema[bool] = True
    """Whether ``requests`` comes before ``route_attempts`` in the JSON form. A plain
    target's single-request records have always written ``route_attempts`` first (routes,
    agent loops and the gateway ``requests`` first); kept so every line reads back and
    writes out byte for byte."""

    def to_json(self) -> dict[str, Any]:
        """The JSON form: the keys in declared order, ``extra`` last."""
        out = {
            "run_id": self.run_id,
            "seq": self.seq,
            "target": self.target,
            "scenario": self.scenario,
            "attempt": self.attempt,
            "api": self.api,
            "model": self.model,
            "provider": self.provider,
            "outcome": str(self.outcome),
            "passed": self.passed,
            "detail": self.detail,
            "stop_reason": self.stop_reason,
            "raw_stop_reason": self.raw_stop_reason,
            "text": self.text,
            "thinking": self.thinking,
            "tool_calls": [c.to_json() for c in self.tool_calls],
            "usage": dict(self.usage) if self.usage is not None else None,
            "timings": self.timings.to_json(),
            "error": self.error.to_json() if self.error is not None else None,
            "request_id": self.request_id,
        }
        routed = [a.to_json() for a in self.route_attempts]
        if self.requests_first:
            out["requests"] = self.requests
            out["route_attempts"] = routed
        else:
            out["route_attempts"] = routed
            out["requests"] = self.requests
        out["started_at"] = self.started_at
        out["capture"] = self.capture
        out.update(self.extra)
        return out

    def to_line(self) -> str:
        """The ``results.jsonl`` line (with its newline)."""
        return json.dumps(self.to_json(), ensure_ascii=False, default=str) + "\n"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttemptRecord:
        """Read a JSON form back. Missing keys take their defaults; a mapping without a known
        ``outcome`` raises :class:`~callproof.errors.RecordError`."""
        if not isinstance(data, Mapping):
            raise RecordError(f"a JSON {type(data).__name__}, not a record")
        outcome = _outcome(data.get("outcome"))
        timings, error, usage = data.get("timings"), data.get("error"), data.get("usage")
        routed = data.get("route_attempts")
        return cls(
            run_id=str(data.get("run_id") or ""),
            seq=_int(data.get("seq"), 0),
            target=str(data.get("target") or "?"),
            scenario=str(data.get("scenario") or "?"),
            attempt=_int(data.get("attempt"), 0),
            api=_str(data.get("api")),
            model=_str(data.get("model")),
            provider=_str(data.get("provider")),
            outcome=outcome,
            passed=bool(data.get("passed", outcome is Outcome.OK)),
            detail=str(data.get("detail") or ""),
            stop_reason=_str(data.get("stop_reason")),
            raw_stop_reason=_str(data.get("raw_stop_reason")),
            text=str(data.get("text") or ""),
            thinking=str(data.get("thinking") or ""),
            tool_calls=tuple(
                ToolCallRecord.from_json(c)
                for c in data.get("tool_calls") or ()
                if isinstance(c, dict)
            ),
            usage=dict(usage) if isinstance(usage, dict) else None,
            timings=TimingsRecord.from_json(timings)
            if isinstance(timings, dict)
            else TimingsRecord(),
            error=ErrorRecord.from_json(error) if isinstance(error, dict) else None,
            request_id=_str(data.get("request_id")),
            requests=_int(data.get("requests"), 1),
            route_attempts=tuple(
                RouteAttemptRecord.from_json(a) for a in routed or () if isinstance(a, dict)
            )
            if isinstance(routed, list)
            else (),
            started_at=_str(data.get("started_at")),
            capture=_str(data.get("capture")),
            extra={k: v for k, v in data.items() if k not in _ATTEMPT_KEYS},
            requests_first=_requests_first(data),
        )

    @classmethod
    def of(cls, record: AttemptRecord | Mapping[str, Any]) -> AttemptRecord:
        """``record`` itself, or its JSON form read back (for readers that take either)."""
        return record if isinstance(record, AttemptRecord) else cls.from_json(record)

    @classmethod
    def from_line(cls, line: str) -> AttemptRecord:
        """Read a ``results.jsonl`` line."""
        try:
            data = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise RecordError(f"not JSON: {exc}") from exc
        return cls.from_json(data)

    def replace(self, **changes: Any) -> AttemptRecord:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    @property
    def key(self) -> tuple[str, str, int]:
        """(target, scenario, attempt): what ``--resume`` skips."""
        return (self.target, self.scenario, self.attempt)


_ATTEMPT_KEYS = frozenset(f.name for f in dataclasses.fields(AttemptRecord)) - {
    "extra",
    "requests_first",
}
_ROUTE_KEYS = frozenset(f.name for f in dataclasses.fields(RouteAttemptRecord)) - {"extra"}
_SENT_ONLY = frozenset({"ended_s", "first_event_timeout_s", "capture"})


def _requests_first(data: Mapping[str, Any]) -> bool:
    if "route_attempts" not in data or "requests" not in data:
        return True
    for key in data:
        if key in ("requests", "route_attempts"):
            return key == "requests"
    return True  # pragma: no cover - both keys are present


def _outcome(value: Any) -> Outcome:
    try:
        return Outcome(value)
    except ValueError:
        raise RecordError(f"not a record: outcome {value!r} is not an outcome") from None


def _number(value: Any) -> float | None:
    # the value as written (an int stays an int), so the JSON form reads back byte for byte
    return value if type(value) in (int, float) else None


def _int(value: Any, default: int) -> int:
    return value if type(value) is int else default


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def attempt_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of :meth:`AttemptRecord.to_json`, from the classes.

    Every key :meth:`AttemptRecord.to_json` always writes is required; a route attempt's
    sent-only and abandoned-only keys are optional. Other keys are allowed (``extra``)."""
    schema = TypeAdapter(AttemptRecord).json_schema(mode="serialization")
    schema["required"] = [
        f.name for f in dataclasses.fields(AttemptRecord) if f.name in _ATTEMPT_KEYS
    ]
    route = schema["$defs"]["RouteAttemptRecord"]
    optional = {"ended_s", "first_event_timeout_s", "capture", "suspected_stall", "extra"}
    route["required"] = [
        f.name for f in dataclasses.fields(RouteAttemptRecord) if f.name not in optional
    ]
    for name in ("ErrorRecord", "TimingsRecord", "ToolCallRecord"):
        definition = schema["$defs"][name]
        definition["required"] = list(definition["properties"])  # to_json writes every key
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_json() -> str:
    """:func:`attempt_schema` as ``docs/attempt.schema.json`` holds it."""
    return json.dumps(attempt_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m callproof.record > docs/attempt.schema.json
    print(schema_json(), end="")
