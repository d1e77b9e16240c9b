"""Routes ordered by measured reliability: the probe history decides which target goes first.

::

    [routes.kimi]
    targets = ["bedrock-kimi", "openrouter-kimi"]
    order = "measured"                     # default "configured"
    measured = { window = "7d", scenario = "tool-result", min_attempts = 20, refresh = "5m" }

With ``order = "measured"`` the targets are ordered by their pass rate in the history store
(SQLite or PostgreSQL, as ``callproof run`` writes it): for each target, the attempts of the
scenario family (``tool-result`` counts ``tool-result`` and ``tool-result:VARIANT``) started
within the window, and the lower bound of their 95% Wilson interval. Using the lower bound means
that 19/20 does not beat 190/200 by luck of a small sample.

A target with fewer than ``min_attempts`` attempts in the window keeps its configured place; the
measured ones are sorted (best lower bound first, ties in configured order) into the places the
measured ones held. So with one measured target nothing moves, and a target nobody probed is
never promoted or demoted by guesswork.

:class:`MeasuredRouting` refreshes the order every ``refresh`` (default 5 min) off the event
loop and sets it on the router; :attr:`MeasuredRouting.current` (a :class:`MeasuredOrder`) is
what ``GET /routes`` and the evidence log show. ``callproof run --every 15m`` (or a cron line,
see ``docs/scale.md``) keeps the history fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from callproof.errors import ConfigError
from callproof.probe.stats import wilson
from callproof.probe.store import HistoryStore
from callproof.resilience.policy import MeasuredSettings, parse_duration

if TYPE_CHECKING:
    from callproof.resilience.router import Router

__all__ = [
    "MeasuredOrder",
    "MeasuredRouting",
    "MeasuredSettings",
    "TargetFigures",
    "history_counts",
    "measured_order",
    "parse_duration",
]

log = logging.getLogger("callproof.resilience")


@dataclass(frozen=True, slots=True)
class TargetFigures:
    """One target's history over the window."""

    target: str
    attempts: int
    passed: int
    #: The 95% Wilson interval's lower bound (``None`` when there is no attempt).
    wilson_low: float | None
    #: Whether it had ``min_attempts`` (else it kept its configured place).
    measured: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "attempts": self.attempts,
            "passed": self.passed,
            "pass_rate": round(self.passed / self.attempts, 4) if self.attempts else None,
            "wilson_low": None if self.wilson_low is None else round(self.wilson_low, 4),
            "measured": self.measured,
        }


@dataclass(frozen=True, slots=True)
class MeasuredOrder:
    """The order in force and the figures behind it."""

    configured: tuple[str, ...]
    order: tuple[str, ...]
    figures: tuple[TargetFigures, ...]
    settings: MeasuredSettings
    refreshed_at: str | None
    #: Why the history could not be read, when it could not (the configured order holds).
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "order": list(self.order),
            "configured": list(self.configured),
            "mode": self.settings.order,
            "settings": self.settings.to_dict(),
            "refreshed_at": self.refreshed_at,
            "figures": [f.to_dict() for f in self.figures],
            "error": self.error,
        }


def measured_order(
    configured: Sequence[str],
    counts: Mapping[str, tuple[int, int]],
    settings: MeasuredSettings,
    *,
    refreshed_at: str | None = None,
) -> MeasuredOrder:
    """The order from ``counts`` (target -> (attempts, passed)); see the module docstring."""
    figures = []
    for name in configured:
        n, passed = counts.get(name, (0, 0))
        figures.append(
            TargetFigures(
                target=name,
                attempts=n,
                passed=passed,
                wilson_low=wilson(passed, n)[0] if n else None,
                measured=n >= settings.min_attempts,
            )
        )
    by_name = {f.target: f for f in figures}
    slots = [i for i, name in enumerate(configured) if by_name[name].measured]
    ranked = sorted(
        (configured[i] for i in slots),
        key=lambda name: (-(by_name[name].wilson_low or 0.0), configured.index(name)),
    )
    order = list(configured)
    for slot, name in zip(slots, ranked, strict=True):
        order[slot] = name
    return MeasuredOrder(
        configured=tuple(configured),
        order=tuple(order),
        figures=tuple(figures),
        settings=settings,
        refreshed_at=refreshed_at,
    )


def _family_filter(scenario: str) -> tuple[str, str]:
    escaped = scenario.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return scenario, escaped + ":%"


def history_counts(
    store: HistoryStore,
    targets: Sequence[str],
    settings: MeasuredSettings,
    *,
    now: datetime | None = None,
) -> dict[str, tuple[int, int]]:
    """target -> (attempts, passed) in the store for the scenario family and window."""
    now = now or datetime.now(UTC)
    since = (now - timedelta(seconds=settings.window_s)).astimezone(UTC)
    # runner.py writes "2026-12-01T10:19:22.123Z"; ISO strings in UTC compare as text
    cutoff = since.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    exact, like = _family_filter(settings.scenario)
    marks = ", ".join("?" for _ in targets)
    sql = (
        "SELECT target, count(*) AS n, sum(passed) AS passed FROM attempts "  # noqa: S608 - placeholders only
        f"WHERE target IN ({marks}) AND (scenario = ? OR scenario LIKE ? ESCAPE '\\') "
        "AND started_at >= ? GROUP BY target"
    )
    # HistoryStore's connection adapter speaks both SQLite and PostgreSQL placeholders
    rows = store._db.query(sql, (*targets, exact, like, cutoff))
    store._end_read()
    return {str(r["target"]): (int(r["n"]), int(r["passed"] or 0)) for r in rows}


class MeasuredRouting:
    """Keeps one router's target order measured from the history store at ``db_url``."""

    def __init__(
        self, router: Router, settings: MeasuredSettings, *, db_url: str | None = None
    ) -> None:
        self.router = router
        self.settings = settings
        self.db_url = db_url
        self._configured = tuple(t.name for t in router.targets)
        self._targets = {t.name: t for t in router.targets}
        self.current = MeasuredOrder(
            configured=self._configured,
            order=self._configured,
            figures=(),
            settings=settings,
            refreshed_at=None,
        )
        self._task: asyncio.Task[None] | None = None

    def refresh(self, *, now: datetime | None = None) -> MeasuredOrder:
        """Read the history (blocking) and put the order in force on the router. When the
        store cannot be read, the order stays as it was and ``error`` says why."""
        stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
        try:
            with HistoryStore.open(self.db_url) as store:
                counts = history_counts(store, self._configured, self.settings, now=now)
        except (ConfigError, OSError, RuntimeError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            log.warning("route %s: measured order not refreshed: %s", self.router.name, message)
            self.current = MeasuredOrder(
                configured=self.current.configured,
                order=self.current.order,
                figures=self.current.figures,
                settings=self.settings,
                refreshed_at=self.current.refreshed_at,
                error=message,
            )
            return self.current
        found = measured_order(self._configured, counts, self.settings, refreshed_at=stamp)
        if found.order != self.current.order:
            log.info(
                "route %s: measured order %s (was %s)",
                self.router.name,
                " > ".join(found.order),
                " > ".join(self.current.order),
            )
        self.router.targets = tuple(self._targets[name] for name in found.order)
        self.current = found
        return found

    async def start(self) -> None:
        """Refresh now, then every ``settings.refresh_s`` in the background."""
        await asyncio.to_thread(self.refresh)
        if self._task is None:
            self._task = asyncio.create_task(
                self._loop(), name=f"callproof-measured-{self.router.name}"
            )

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.refresh_s)
            await asyncio.to_thread(self.refresh)

    async def aclose(self) -> None:
        """Stop refreshing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
