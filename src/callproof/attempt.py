"""One attempt at a scenario: call, then classify. Never raises for a failed call.

``callproof call``, the probe runner and routes all produce :class:`Attempt` objects, so one
attempt looks the same everywhere: :meth:`Attempt.record` is its
:class:`~callproof.record.AttemptRecord`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callproof.errors import CallError
from callproof.events import Response, Timings
from callproof.outcomes import Outcome, Verdict, classify
from callproof.record import AttemptRecord, ErrorRecord, TimingsRecord, ToolCallRecord
from callproof.scenarios import Scenario
from callproof.targets import Target, Timeouts

if TYPE_CHECKING:
    from callproof.client import Client

__all__ = ["ATTEMPT_FIELDS", "Attempt", "attempt_from", "run_attempt"]


@dataclass(slots=True)
class Attempt:
    """The outcome of one call and what it produced.

    ``response`` is the full response, or the partial one a failed call left (with timings);
    ``error`` is the :class:`~callproof.errors.CallError` when the call failed.
    """

    outcome: Outcome
    detail: str
    response: Response | None
    error: CallError | None
    verdict: Verdict

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.OK

    def record(self, **fields: Any) -> AttemptRecord:
        """This attempt as an :class:`~callproof.record.AttemptRecord`; ``fields`` fill in
        what the attempt does not know (``run_id``, ``target``, ``scenario`` ...)."""
        resp = self.response
        timings = resp.timings if resp is not None else Timings()
        request_id = resp.request_id if resp is not None else None
        if request_id is None and self.error is not None:
            request_id = self.error.request_id
        error = self.error.to_dict() if self.error is not None else None
        return AttemptRecord(
            outcome=self.outcome,
            passed=self.passed,
            detail=self.detail,
            stop_reason=resp.stop_reason if resp else None,
            raw_stop_reason=resp.raw_stop_reason if resp else None,
            text=resp.text if resp else "",
            thinking=resp.thinking if resp else "",
            tool_calls=tuple(ToolCallRecord(**tc.to_dict()) for tc in resp.tool_calls)
            if resp
            else (),
            usage=resp.usage.to_dict() if resp and resp.usage else None,
            timings=TimingsRecord(**timings.to_dict()),
            error=ErrorRecord(**error) if error is not None else None,
            request_id=request_id,
            **fields,
        )

    def to_record(self) -> dict[str, Any]:
        """The per-attempt fields of the record's JSON form: outcome, passed, detail,
        stop_reason, raw_stop_reason, text, thinking, tool_calls, usage, timings, error,
        request_id."""
        full = self.record().to_json()
        return {k: full[k] for k in ATTEMPT_FIELDS}


#: The keys of :meth:`Attempt.to_record`: what an attempt alone decides.
ATTEMPT_FIELDS = (
    "outcome",
    "passed",
    "detail",
    "stop_reason",
    "raw_stop_reason",
    "text",
    "thinking",
    "tool_calls",
    "usage",
    "timings",
    "error",
    "request_id",
)


def attempt_from(result: Response | CallError, scenario: Scenario | None = None) -> Attempt:
    """Classify a finished call (its response, or the error it raised) into an Attempt."""
    expectation = scenario.expectation if scenario else None
    conversation = scenario.conversation if scenario else None
    verdict = classify(result, expectation, conversation)
    if isinstance(result, CallError):
        return Attempt(verdict.outcome, verdict.detail, result.response, result, verdict)
    return Attempt(verdict.outcome, verdict.detail, result, None, verdict)


async def run_attempt(
    client: Client,
    target: Target,
    scenario: Scenario,
    *,
    timeouts: Timeouts | None = None,
    capture: Path | None = None,
) -> Attempt:
    """Send ``scenario`` to ``target`` once and classify the result.

    A failed call becomes an Attempt with its outcome; only configuration errors
    (:class:`~callproof.errors.ConfigError`) propagate.
    """
    try:
        response = await client.complete(
            target, scenario.conversation, timeouts=timeouts, capture=capture
        )
    except CallError as err:
        return attempt_from(err, scenario)
    return attempt_from(response, scenario)
