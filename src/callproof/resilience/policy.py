"""A route's policy: what is retried, how long to wait, when to hedge, when to stop trying a
target, and how the first-event watchdog adapts.

In ``callproof.toml`` every key of ``[routes.NAME]`` except ``targets`` is policy. Sub-tables
group the mechanisms; unknown keys are a :class:`~callproof.errors.ConfigError` naming them::

    [routes.kimi]
    targets = ["bedrock-kimi-k2.5", "openrouter-kimi-k2.5"]
    buffered = false                       # stream(): hold events until an attempt finished
    fallback_on = []                       # refusals that fall over: "context_length", ...
    retry = { max_attempts = 4, max_total_s = 120, empty_after_tool_result = true,
              wait_retry_after_max_s = 2 }
    backoff = { initial_s = 0.2, max_s = 10, multiplier = 2, jitter = true, retry_after_cap_s = 30 }
    hedge = { mode = "quantile", quantile = 0.9, delay_s = 2.0, max_extra = 1, target = "next" }
    breaker = { failures = 5, stall_rate = 0.3, window = 20, min_calls = 10, open_s = 30,
                reopen_initial_s = 2, reopen_multiplier = 2 }
    watchdog = { mode = "adaptive", quantile = 0.99, factor = 3, floor_s = 2, ceiling_s = 120 }

``hedge = "off"`` and ``hedge = 1.5`` (a fixed delay in seconds) are shorthands. ``order`` and
``measured`` (:class:`MeasuredSettings`) are read here too and applied by
:mod:`callproof.resilience.measured`. A whole ``[routes.NAME]`` table is a
:class:`RouteConfig`, parsed once when the configuration is loaded.

This module is pure data and validation (it imports nothing of callproof but the errors): the
configuration layer (:mod:`callproof.probe.config`) builds on it, and nothing under
``callproof.resilience`` imports the configuration layer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from callproof.errors import STOP_CATEGORIES, ConfigError

__all__ = [
    "DEFAULT_RETRY_ON",
    "FALLBACK_ON_CHOICES",
    "BackoffPolicy",
    "BreakerPolicy",
    "HedgePolicy",
    "MeasuredSettings",
    "RetryPolicy",
    "RouteConfig",
    "RoutePolicy",
    "WatchdogPolicy",
    "parse_duration",
]

#: Outcomes a retry (or a fallback to the next target) may cure, before output reached the
#: caller (``empty_response`` and ``tool_call_in_text`` are judged on finished answers: see
#: :meth:`callproof.resilience.Router.stream`). HTTP errors and stream exceptions are
#: retried only when the error itself says so (429, 5xx; throttling, service-unavailable,
#: internal, model-stream-error): see
#: :attr:`callproof.errors.CallError.retryable`.
DEFAULT_RETRY_ON: frozenset[str] = frozenset(
    {
        "stall_before_headers",
        "stall_no_events",
        "stall_mid_stream",
        "deadline_exceeded",
        "incomplete_stream",
        "http_error",
        "stream_exception",
        "transport_error",
        "empty_response",
        "tool_call_in_text",
    }
)

_RETRYABLE_CHOICES = DEFAULT_RETRY_ON | {"protocol_error"}

#: The names ``fallback_on`` accepts: the error categories a route does not fall over on by
#: default (:data:`callproof.errors.STOP_CATEGORIES`), and the outcome names of the errors
#: that carry them (``http_error``: every such HTTP error; ``stream_exception``: every such
#: in-stream error).
FALLBACK_ON_CHOICES: frozenset[str] = frozenset(STOP_CATEGORIES) | {
    "http_error",
    "stream_exception",
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Limits on trying again, on the same target or the next one."""

    #: Attempts per call, hedged backups not included (they have ``hedge.max_extra``).
    max_attempts: int = 4
    #: No new attempt starts once this many seconds have passed since the call began.
    max_total_s: float | None = 120.0
    #: Outcome names that may be retried (see :data:`DEFAULT_RETRY_ON`).
    on: frozenset[str] = DEFAULT_RETRY_ON
    #: Treat an empty answer (no text, no tool call) to a tool result as a retryable failure.
    empty_after_tool_result: bool = True
    #: A 429 or 503 whose Retry-After is at most this many seconds is waited out and retried
    #: on the same target once, before falling over; a longer one falls over at once (and the
    #: target is not tried again before its Retry-After passed). 0 turns the wait off.
    wait_retry_after_max_s: float = 2.0


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Exponential backoff with full jitter; a server's Retry-After wins, up to a cap."""

    initial_s: float = 0.2
    max_s: float = 10.0
    multiplier: float = 2.0
    #: Full jitter: wait a uniform draw in [0, computed]. False waits the computed value.
    jitter: bool = True
    #: The longest Retry-After (or ``x-amz-retry-after``) honoured; longer values are capped.
    retry_after_cap_s: float = 30.0


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    """When no first event has come by the hedge delay, start a backup attempt.

    ``mode``: ``off``; ``fixed`` (``delay_s``); ``quantile`` (the ``quantile`` of the target's
    observed healthy first-event latency, ``delay_s`` until ``min_samples`` are known).
    """

    mode: Literal["off", "fixed", "quantile"] = "quantile"
    #: The fixed delay; in ``quantile`` mode the cold-start delay, used until ``min_samples``
    #: first events of the target are known (a waiting call picks up the learned delay as
    #: soon as it is known).
    delay_s: float = 2.0
    quantile: float = 0.9
    #: Extra latency margin multiplied onto the quantile.
    factor: float = 1.0
    #: The learned delay never goes below this: with very fast healthy answers (a local model,
    #: the emulator) scheduling noise alone would otherwise start backups.
    min_delay_s: float = 0.25
    min_samples: int = 3
    #: Backup requests per call at most.
    max_extra: int = 1
    #: Where the backup goes: the ``next`` target of the route (the same one when it is alone
    #: or unavailable) or the ``same`` target.
    target: Literal["next", "same"] = "next"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """Circuit breaker per target: open after ``failures`` consecutive failures, or when the
    share of stalls among the last ``window`` calls (at least ``min_calls``) exceeds
    ``stall_rate``; half-open after ``reopen_initial_s`` with ``half_open_probes`` probe calls.
    Each failed probe reopens ``reopen_multiplier`` times longer, capped at ``open_s``; a
    successful probe closes and resets it."""

    enabled: bool = True
    failures: int = 5
    stall_rate: float = 0.3
    window: int = 20
    min_calls: int = 10
    #: The longest cool-down (the cap of the geometric reopen delays).
    open_s: float = 30.0
    half_open_probes: int = 1
    #: The first cool-down (closed -> open); each failed probe multiplies it.
    reopen_initial_s: float = 2.0
    #: Growth of the reopen delay per further failed probe (2, 4, 8 ... s up to ``open_s``).
    reopen_multiplier: float = 2.0


@dataclass(frozen=True, slots=True)
class WatchdogPolicy:
    """The first-event timeout per target.

    ``fixed`` uses the target's configured ``timeouts.first_event``. ``adaptive`` learns the
    target's healthy first-event latency over the last ``window`` successes and uses
    ``quantile x factor`` clamped to [``floor_s``, ``ceiling_s``]; until ``min_samples`` are
    known it uses the configured timeout (cold start), so a slow thinking model is never cut
    off by a guess.
    """

    mode: Literal["fixed", "adaptive"] = "adaptive"
    quantile: float = 0.99
    factor: float = 3.0
    floor_s: float = 2.0
    ceiling_s: float = 120.0
    window: int = 200
    min_samples: int = 20


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """Everything a :class:`~callproof.resilience.Router` needs to know about trying again."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    hedge: HedgePolicy = field(default_factory=HedgePolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    watchdog: WatchdogPolicy = field(default_factory=WatchdogPolicy)
    #: ``stream()`` holds every event until an attempt finished, so it may retry after a
    #: mid-stream failure (``complete()`` always works this way: its caller sees nothing until
    #: the end).
    buffered: bool = False
    #: Refusals (context length, content filter, validation, authentication) end the call with
    #: the provider's own error unless named here (a category, or ``http_error`` /
    #: ``stream_exception`` for all of that kind): then they fall over to the next target.
    fallback_on: frozenset[str] = frozenset()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str = "route") -> RoutePolicy:
        """Build a policy from a config mapping; unknown keys and bad values raise
        :class:`ConfigError` naming ``where.key``."""
        if not isinstance(data, Mapping):
            raise ConfigError("a route policy must be a table", where=where)
        sections: dict[str, Any] = {}
        known = {
            "retry",
            "backoff",
            "hedge",
            "breaker",
            "watchdog",
            "buffered",
            "fallback_on",
            "targets",
        }
        known |= {"order", "measured"}  # target order: callproof.resilience.measured
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}",
                where=f"{where}.{unknown[0]}",
            )
        if "buffered" in data:
            sections["buffered"] = _bool(data["buffered"], f"{where}.buffered")
        if "fallback_on" in data:
            sections["fallback_on"] = _names(data["fallback_on"], f"{where}.fallback_on")
        if "order" in data or "measured" in data:
            # validated here, applied by callproof.resilience.measured
            MeasuredSettings.from_route(data, where=where)
        hedge_raw = data.get("hedge")
        if isinstance(hedge_raw, str) and hedge_raw == "off":
            hedge_raw = {"mode": "off"}
        elif isinstance(hedge_raw, int | float) and not isinstance(hedge_raw, bool):
            hedge_raw = {"mode": "fixed", "delay_s": hedge_raw}
        for name, kind in (
            ("retry", RetryPolicy),
            ("backoff", BackoffPolicy),
            ("hedge", HedgePolicy),
            ("breaker", BreakerPolicy),
            ("watchdog", WatchdogPolicy),
        ):
            raw = hedge_raw if name == "hedge" else data.get(name)
            if raw is None:
                continue
            sections[name] = _section(kind, raw, f"{where}.{name}")
        policy = cls(**sections)
        policy.validate(where=where)
        return policy

    def validate(self, *, where: str = "route") -> None:
        """Raise :class:`ConfigError` for values outside their sensible ranges."""
        checks: list[tuple[bool, str, str]] = [
            (self.retry.max_attempts >= 1, "retry.max_attempts", "must be at least 1"),
            (
                self.retry.max_total_s is None or self.retry.max_total_s > 0,
                "retry.max_total_s",
                "must be positive",
            ),
            (
                self.retry.wait_retry_after_max_s >= 0,
                "retry.wait_retry_after_max_s",
                "must not be negative",
            ),
            (
                self.fallback_on <= FALLBACK_ON_CHOICES,
                "fallback_on",
                f"unknown name(s) {', '.join(sorted(self.fallback_on - FALLBACK_ON_CHOICES))}; "
                f"expected some of {', '.join(sorted(FALLBACK_ON_CHOICES))}",
            ),
            (
                self.retry.on <= _RETRYABLE_CHOICES,
                "retry.on",
                f"must be among {', '.join(sorted(_RETRYABLE_CHOICES))}",
            ),
            (self.backoff.initial_s >= 0, "backoff.initial_s", "must not be negative"),
            (self.backoff.max_s >= 0, "backoff.max_s", "must not be negative"),
            (self.backoff.multiplier >= 1, "backoff.multiplier", "must be at least 1"),
            (self.backoff.retry_after_cap_s >= 0, "backoff.retry_after_cap_s", "negative"),
            (self.hedge.mode in ("off", "fixed", "quantile"), "hedge.mode", "off|fixed|quantile"),
            (self.hedge.delay_s >= 0, "hedge.delay_s", "must not be negative"),
            (0 < self.hedge.quantile <= 1, "hedge.quantile", "must be in (0, 1]"),
            (self.hedge.factor > 0, "hedge.factor", "must be positive"),
            (self.hedge.min_delay_s >= 0, "hedge.min_delay_s", "must not be negative"),
            (self.hedge.max_extra >= 0, "hedge.max_extra", "must not be negative"),
            (self.hedge.min_samples >= 1, "hedge.min_samples", "must be at least 1"),
            (self.hedge.target in ("next", "same"), "hedge.target", "must be next or same"),
            (self.breaker.failures >= 1, "breaker.failures", "must be at least 1"),
            (0 < self.breaker.stall_rate <= 1, "breaker.stall_rate", "must be in (0, 1]"),
            (self.breaker.window >= 1, "breaker.window", "must be at least 1"),
            (
                1 <= self.breaker.min_calls <= self.breaker.window,
                "breaker.min_calls",
                "must be in [1, window]",
            ),
            (self.breaker.open_s >= 0, "breaker.open_s", "must not be negative"),
            (self.breaker.half_open_probes >= 1, "breaker.half_open_probes", "at least 1"),
            (self.breaker.reopen_initial_s >= 0, "breaker.reopen_initial_s", "negative"),
            (self.breaker.reopen_multiplier >= 1, "breaker.reopen_multiplier", "at least 1"),
            (self.watchdog.mode in ("fixed", "adaptive"), "watchdog.mode", "fixed|adaptive"),
            (0 < self.watchdog.quantile <= 1, "watchdog.quantile", "must be in (0, 1]"),
            (self.watchdog.factor > 0, "watchdog.factor", "must be positive"),
            (
                0 < self.watchdog.floor_s <= self.watchdog.ceiling_s,
                "watchdog.floor_s",
                "must be positive and at most ceiling_s",
            ),
            (self.watchdog.window >= 1, "watchdog.window", "must be at least 1"),
            (self.watchdog.min_samples >= 1, "watchdog.min_samples", "must be at least 1"),
        ]
        for ok, key, why in checks:
            if not ok:
                raise ConfigError(why, where=f"{where}.{key}")

    def replace(self, **changes: Any) -> RoutePolicy:
        """A copy with whole sections replaced (``policy.replace(hedge=HedgePolicy(...))``)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The policy as plain data (for ``run.json``)."""
        out: dict[str, Any] = {"buffered": self.buffered, "fallback_on": sorted(self.fallback_on)}
        for name in ("retry", "backoff", "hedge", "breaker", "watchdog"):
            section = getattr(self, name)
            out[name] = {
                f.name: sorted(v) if isinstance(v := getattr(section, f.name), frozenset) else v
                for f in fields(section)
            }
        return out


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
class RouteConfig:
    """``[routes.NAME]`` of ``callproof.toml``: the target names in order and the route's
    policy, parsed once, here (a bad key raises :class:`ConfigError` naming
    ``routes.NAME.key``). Routers are built from it by
    :func:`callproof.resilience.routes.router_for`."""

    name: str
    targets: list[str]
    #: The table's policy keys as written (``run.json`` records them so).
    policy: dict[str, Any] = field(default_factory=dict)
    #: ``policy`` parsed: what the route's :class:`~callproof.resilience.Router` does.
    route_policy: RoutePolicy = field(init=False)
    #: ``order`` and ``measured``: how :mod:`callproof.resilience.measured` orders the targets.
    measured: MeasuredSettings = field(init=False)

    def __post_init__(self) -> None:
        where = f"routes.{self.name}"
        object.__setattr__(self, "route_policy", RoutePolicy.from_mapping(self.policy, where=where))
        object.__setattr__(self, "measured", MeasuredSettings.from_route(self.policy, where=where))


def _names(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"expected a list of names, got {value!r}", where=where)
    return frozenset(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {value!r}", where=where)
    return value


def _section(kind: type[Any], raw: Any, where: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"expected a table, got {raw!r}", where=where)
    defaults = kind()
    names = {f.name for f in fields(kind)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(names))}",
            where=f"{where}.{unknown[0]}",
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        default = getattr(defaults, key)
        here = f"{where}.{key}"
        if isinstance(default, bool):
            values[key] = _bool(value, here)
        elif isinstance(default, frozenset):
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"expected a list of outcome names, got {value!r}", where=here)
            values[key] = frozenset(value)
        elif isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"expected an integer, got {value!r}", where=here)
            values[key] = value
        elif isinstance(default, float) or default is None:
            if value is None and default is None:
                values[key] = None
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"expected a number, got {value!r}", where=here)
            else:
                values[key] = float(value)
        else:  # a Literal choice, validated by RoutePolicy.validate
            if not isinstance(value, str):
                raise ConfigError(f"expected a string, got {value!r}", where=here)
            values[key] = value
    return kind(**values)
