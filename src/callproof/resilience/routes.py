"""Routes from configuration, and a routed call as a probe attempt.

* :func:`router_for` and :func:`router_from_config` (from :mod:`callproof.resilience.configured`,
  the one place a router is made from configuration) are re-exported here.
* :func:`run_route_attempt` sends a scenario through a router and classifies the result into a
  :class:`RouteAttempt` (a :class:`callproof.attempt.Attempt` whose record adds ``requests``
  and ``route_attempts``); like ``run_attempt`` it never raises for failed calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callproof.attempt import ATTEMPT_FIELDS, Attempt
from callproof.errors import AllAttemptsFailed, CallError, CircuitOpenError
from callproof.outcomes import classify
from callproof.record import AttemptRecord, RouteAttemptRecord
from callproof.resilience.configured import router_for, router_from_config
from callproof.resilience.router import Router
from callproof.scenarios import Scenario

__all__ = ["RouteAttempt", "final_error", "router_for", "router_from_config", "run_route_attempt"]


@dataclass(slots=True)
class RouteAttempt(Attempt):
    """An :class:`Attempt` made through a route: ``target`` is ``route:NAME``, ``requests``
    the HTTP requests it spent, ``route_attempts`` one record per attempt."""

    target: str = ""
    requests: int = 0
    route_attempts: list[dict[str, Any]] = field(default_factory=list)

    def record(self, **fields: Any) -> AttemptRecord:
        """The attempt's record with ``target``, ``requests`` and ``route_attempts``."""
        routed = {
            "target": self.target,
            "requests": self.requests,
            "route_attempts": tuple(RouteAttemptRecord.from_json(a) for a in self.route_attempts),
        }
        return Attempt.record(self, **{**routed, **fields})

    def to_record(self) -> dict[str, Any]:
        """The per-attempt record fields plus ``target``, ``requests`` and ``route_attempts``."""
        full = self.record().to_json()
        record = {k: full[k] for k in ATTEMPT_FIELDS}
        for key in ("target", "requests", "route_attempts"):
            record[key] = full[key]
        return record


async def run_route_attempt(
    router: Router, scenario: Scenario, *, capture: Path | None = None
) -> RouteAttempt:
    """Send ``scenario`` through ``router`` once and classify the result. With ``capture``,
    each attempt's raw wire is captured beside it (see :meth:`Router.stream`).

    When every attempt failed, the outcome is that of the last attempt's error and ``detail``
    names them all.
    """
    label = router.label
    try:
        response = await router.complete(scenario.conversation, capture=capture)
    except CallError as refusal:  # a refusal the route does not fall over on (fallback_on)
        verdict = classify(refusal, scenario.expectation, scenario.conversation)
        refused = refusal.response.attempts if refusal.response is not None else []
        return RouteAttempt(
            outcome=verdict.outcome,
            detail=(
                f"route {router.name}: {refusal.target} refused the call "
                f"({refusal.category}): {refusal.message}"
            ),
            response=refusal.response,
            error=refusal,
            verdict=verdict,
            target=label,
            requests=_sent(refused),
            route_attempts=refused,
        )
    except AllAttemptsFailed as group:
        last = final_error(group)
        verdict = classify(last, scenario.expectation, scenario.conversation)
        records: list[dict[str, Any]] = getattr(group, "attempts", [])
        return RouteAttempt(
            outcome=verdict.outcome,
            detail=str(group.message),
            response=last.response,
            error=last,
            verdict=verdict,
            target=label,
            requests=_sent(records),
            route_attempts=records,
        )
    verdict = classify(response, scenario.expectation, scenario.conversation)
    return RouteAttempt(
        outcome=verdict.outcome,
        detail=verdict.detail,
        response=response,
        error=None,
        verdict=verdict,
        target=label,
        requests=_sent(response.attempts),
        route_attempts=response.attempts,
    )


def final_error(group: AllAttemptsFailed) -> CallError:
    """The error a failed routed call counts as: the last attempt actually sent (a skipped
    target, whose circuit was open, only when nothing was sent)."""
    errors = [e for e in group.exceptions if isinstance(e, CallError)]
    sent = [e for e in errors if not isinstance(e, CircuitOpenError)]
    return (sent or errors or [CallError(str(group))])[-1]


def _sent(records: list[dict[str, Any]]) -> int:
    # counted from this call's own records: the router's counter is shared by every call
    return sum(1 for r in records if r.get("sent"))
