"""One finished call as telemetry sees it: a typed summary built from the router's records.

Metrics and traces are both derived from a :class:`CallSummary` once a call ended, so neither
needs a hook inside the router: the attempt records a routed call already keeps (``target``,
``outcome``, ``hedge``, ``started_s``, ``ended_s``, ``timings``, ``abandoned_reason``) say
everything a span per attempt or a counter per outcome needs.

Every field that becomes a metric label is bounded: names come from the configuration (routes,
targets, model ids the gateway maps) or from fixed vocabularies (outcomes, token types). No
prompt, answer, key or request id is ever put into a label; content reaches a span only when
the user asks for it (see :mod:`callproof.telemetry.tracing`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from callproof.dialects import api_family
from callproof.events import Response
from callproof.record import RouteAttemptRecord
from callproof.targets import Target

__all__ = ["AttemptSummary", "CallSummary", "attempts_from_records", "provider_name"]


def provider_name(target: Target | None) -> str:
    """The OpenTelemetry ``gen_ai.provider.name`` of a target: ``aws.bedrock`` for the
    Bedrock APIs, else the target's provider label from the configuration (``openrouter``),
    else ``openai``."""
    if target is None:
        return "unknown"
    if api_family(target.api) == "bedrock":
        return "aws.bedrock"
    return target.provider or "openai"


@dataclass(frozen=True, slots=True)
class AttemptSummary:
    """One attempt of a call (or a target skipped because its circuit was open)."""

    number: int
    target: str
    model: str | None
    provider: str
    #: ``ok``, an outcome name, ``abandoned`` (a hedge loser, a closed call) or ``skipped``.
    outcome: str
    hedge: bool
    sent: bool
    #: Seconds from the call's start to the attempt's start and end.
    started_s: float
    ended_s: float | None
    #: Seconds from the attempt's request to its first decoded event (``None``: none came).
    first_event_s: float | None
    abandoned_reason: str | None
    breaker: str | None
    #: The error's class name when it failed (a fixed vocabulary), else ``None``.
    error_type: str | None


@dataclass(frozen=True, slots=True)
class CallSummary:
    """One finished call: what the metrics count and the spans show."""

    #: ``gen_ai.operation.name``: ``chat`` for every front and API callproof speaks.
    operation: str
    #: The model id the caller asked for (a configured name: mapped id, route or target).
    request_model: str
    #: The serving target's model, when one served.
    response_model: str | None
    provider: str
    #: The router's name (``kimi`` for ``route:kimi``; a target's name for a one-target call).
    route: str
    #: Wall-clock start (seconds since the epoch) and the call's duration.
    started_at: float
    duration_s: float
    #: From the call's start to the first event the caller received.
    time_to_first_chunk_s: float | None
    input_tokens: int | None
    output_tokens: int | None
    #: ``ok`` or the failed call's outcome name.
    outcome: str
    error_type: str | None
    served_by: str | None
    finish_reason: str | None
    attempts: tuple[AttemptSummary, ...]
    #: The gateway front (``converse-stream``, ``chat`` ...) or ``library``.
    front: str = "library"
    #: Only when content capture is on: the request's messages and the answer, as JSON-able data.
    input_messages: Any = None
    output_text: str | None = None

    @classmethod
    def of_response(
        cls,
        response: Response | None,
        *,
        request_model: str,
        route: str,
        targets: Mapping[str, Target],
        started_at: float,
        duration_s: float,
        outcome: str,
        error_type: str | None,
        served_by: str | None,
        records: Sequence[RouteAttemptRecord | Mapping[str, Any]],
        front: str = "library",
        time_to_first_chunk_s: float | None = None,
    ) -> CallSummary:
        """A summary from a call's response (``None`` when nothing served) and records."""
        attempts = attempts_from_records(records, targets)
        serving = targets.get(served_by) if served_by else None
        last = targets.get(attempts[-1].target) if attempts else None
        usage = response.usage if response is not None else None
        if time_to_first_chunk_s is None and response is not None and served_by is not None:
            winner = next(
                (a for a in attempts if a.target == served_by and a.outcome == "ok"), None
            )
            if winner is not None and winner.first_event_s is not None:
                time_to_first_chunk_s = winner.started_s + winner.first_event_s
        return cls(
            operation="chat",
            request_model=request_model,
            response_model=serving.model if serving is not None else None,
            provider=provider_name(serving or last),
            route=route,
            started_at=started_at,
            duration_s=max(0.0, duration_s),
            time_to_first_chunk_s=time_to_first_chunk_s,
            input_tokens=usage.input_tokens if usage is not None else None,
            output_tokens=usage.output_tokens if usage is not None else None,
            outcome=outcome,
            error_type=error_type,
            served_by=served_by,
            finish_reason=(
                str(response.stop_reason) if response is not None and response.stop_reason else None
            ),
            attempts=attempts,
            front=front,
        )


def attempts_from_records(
    records: Sequence[RouteAttemptRecord | Mapping[str, Any]], targets: Mapping[str, Target]
) -> tuple[AttemptSummary, ...]:
    """Typed attempts from a routed call's records (``RouteStream.records``, or their JSON
    form in ``Response.attempts``)."""
    out = []
    for i, item in enumerate(records, 1):
        rec = item if isinstance(item, RouteAttemptRecord) else RouteAttemptRecord.from_json(item)
        target = targets.get(rec.target)
        out.append(
            AttemptSummary(
                number=rec.attempt or i,
                target=rec.target,
                model=target.model if target is not None else None,
                provider=provider_name(target),
                outcome=str(rec.outcome),
                hedge=rec.hedge,
                sent=rec.sent,
                started_s=rec.started_s,
                ended_s=rec.ended_s,
                first_event_s=rec.timings.first_event_s if rec.timings is not None else None,
                abandoned_reason=rec.abandoned_reason,
                breaker=rec.breaker,
                error_type=rec.error.kind if rec.error is not None and rec.error.kind else None,
            )
        )
    return tuple(out)
