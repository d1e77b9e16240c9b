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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from callproof.errors import ConfigError

if TYPE_CHECKING:
    from callproof.probe.store import HistoryStore
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

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: Any, *, where: str) -> float:
    """Seconds from ``"7d"``, ``"15m"``, ``"90s"``, ``"2h"``, ``"1w"`` or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ConfigError(
            f'expected a duration such as "7d", "12h", "15m" or seconds, got {value!r}',
            where=where,
        )
    if seconds <= 0:
        raise ConfigError("must be positive", where=where)
    return seconds


@dataclass(frozen=True, slots=True)
class MeasuredSettings:
    """``order`` and ``measured = {...}`` of a route."""

    order: str = "configured"
    window_s: float = 7 * 86400.0
    scenario: str = "tool-result"
    min_attempts: int = 20
    refresh_s: float = 300.0

    @property
    def enabled(self) -> bool:
        return self.order == "measured"

    @classmethod
    def from_route(cls, data: Mapping[str, Any], *, where: str = "route") -> MeasuredSettings:
        """The settings in a route's table; bad values raise ConfigError naming the key."""
        order = data.get("order", "configured")
        if order not in ("configured", "measured"):
            raise ConfigError(
                f'expected "configured" or "measured", got {order!r}', where=f"{where}.order"
            )
        raw = data.get("measured", {})
        if not isinstance(raw, Mapping):
            raise ConfigError(f"expected a table, got {raw!r}", where=f"{where}.measured")
        known = {"window", "scenario", "min_attempts", "refresh"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}",
                where=f"{where}.measured.{unknown[0]}",
            )
        values: dict[str, Any] = {"order": order}
        if "window" in raw:
            values["window_s"] = parse_duration(raw["window"], where=f"{where}.measured.window")
        if "refresh" in raw:
            values["refresh_s"] = parse_duration(raw["refresh"], where=f"{where}.measured.refresh")
        if "scenario" in raw:
            if not isinstance(raw["scenario"], str) or not raw["scenario"]:
                raise ConfigError("expected a scenario name", where=f"{where}.measured.scenario")
            values["scenario"] = raw["scenario"]
        if "min_attempts" in raw:
            n = raw["min_attempts"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(
                    f"expected a positive integer, got {n!r}",
                    where=f"{where}.measured.min_attempts",
                )
            values["min_attempts"] = n
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "window_s": self.window_s,
            "scenario": self.scenario,
            "min_attempts": self.min_attempts,
            "refresh_s": self.refresh_s,
        }


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
    from callproof.probe.stats import wilson

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
        from callproof.probe.store import HistoryStore

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
