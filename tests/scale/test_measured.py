"""``order = "measured"``: a route follows its targets' probe history (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from callproof.client import Client
from callproof.errors import ConfigError
from callproof.probe.store import HistoryStore
from callproof.resilience import HedgePolicy, RoutePolicy, Router
from callproof.resilience.measured import (
    MeasuredRouting,
    MeasuredSettings,
    measured_order,
    parse_duration,
)
from callproof.scenarios import tool_result
from callproof.targets import Target
from tests.probe.conftest_pg import pg_server, pg_url  # noqa: F401 - fixtures

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
MakeTarget = Callable[..., Target]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _run(store: HistoryStore, run_id: str, at: datetime, results: dict[str, tuple[int, int]],
         scenario: str = "tool-result") -> None:  # fmt: skip
    """One probe run as ``callproof run`` records it: per target, ``passed`` of ``n``."""
    records: list[dict[str, Any]] = []
    for target, (n, passed) in results.items():
        for i in range(n):
            ok = i < passed
            records.append(
                {
                    "seq": len(records) + 1,
                    "target": target,
                    "scenario": scenario,
                    "attempt": i + 1,
                    "outcome": "ok" if ok else "stall_no_events",
                    "passed": ok,
                    "started_at": _stamp(at + timedelta(seconds=i)),
                }
            )
    store.record_run({"run_id": run_id, "started_at": _stamp(at)}, {"results": []})
    store.record_attempts(run_id, iter(records))


SETTINGS = MeasuredSettings(order="measured", window_s=7 * 86400, min_attempts=20)


def test_order_follows_a_drop_in_the_first_targets_pass_rate(db_url: str) -> None:
    targets = ["bedrock-kimi", "openrouter-kimi"]
    router = Router("kimi", [_t(n) for n in targets], client=None)  # type: ignore[arg-type]
    routing = MeasuredRouting(router, SETTINGS, db_url=db_url)
    with HistoryStore.open(db_url) as store:
        _run(
            store,
            "r1",
            NOW - timedelta(days=3),
            {"bedrock-kimi": (30, 30), "openrouter-kimi": (30, 27)},
        )
    first = routing.refresh(now=NOW)
    assert first.order == ("bedrock-kimi", "openrouter-kimi")
    assert [t.name for t in router.targets] == ["bedrock-kimi", "openrouter-kimi"]

    with HistoryStore.open(db_url) as store:  # Bedrock starts hanging on 60% of calls
        _run(
            store,
            "r2",
            NOW - timedelta(hours=1),
            {"bedrock-kimi": (30, 12), "openrouter-kimi": (30, 30)},
        )
    second = routing.refresh(now=NOW)
    assert second.order == ("openrouter-kimi", "bedrock-kimi")
    assert [t.name for t in router.targets] == ["openrouter-kimi", "bedrock-kimi"]
    figures = {f.target: f for f in second.figures}
    assert figures["bedrock-kimi"].attempts == 60
    assert figures["bedrock-kimi"].passed == 42
    assert figures["openrouter-kimi"].wilson_low is not None
    assert figures["bedrock-kimi"].wilson_low is not None
    assert figures["openrouter-kimi"].wilson_low > figures["bedrock-kimi"].wilson_low
    shown = second.to_dict()
    assert shown["order"] == ["openrouter-kimi", "bedrock-kimi"]
    assert shown["configured"] == targets
    assert shown["figures"][0]["pass_rate"] == 0.7

    # a shorter window forgets the good days: only the recent run counts
    short = MeasuredRouting(
        router, MeasuredSettings(order="measured", window_s=86400, min_attempts=20), db_url=db_url
    )
    recent = {f.target: f for f in short.refresh(now=NOW).figures}
    assert recent["bedrock-kimi"].attempts == 30
    assert recent["bedrock-kimi"].passed == 12


def test_too_little_history_keeps_the_configured_place(db_url: str) -> None:
    names = ["a", "b", "c"]
    router = Router("r", [_t(n) for n in names], client=None)  # type: ignore[arg-type]
    with HistoryStore.open(db_url) as store:
        # a fails a lot, c is perfect, b has only 5 attempts (under min_attempts = 20)
        _run(store, "r1", NOW - timedelta(hours=2), {"a": (30, 10), "b": (5, 5), "c": (30, 30)})
        # other scenario families and old attempts do not count
        _run(store, "r2", NOW - timedelta(hours=2), {"b": (50, 50)}, scenario="tool-call")
        _run(store, "r3", NOW - timedelta(days=30), {"b": (50, 50)})
        _run(store, "r4", NOW - timedelta(hours=1), {"b": (10, 10)}, scenario="tool-result:long")
    order = MeasuredRouting(router, SETTINGS, db_url=db_url).refresh(now=NOW)
    assert order.order == ("c", "b", "a")  # b stays in the middle; a and c swap
    b = next(f for f in order.figures if f.target == "b")
    assert (b.attempts, b.measured) == (15, False)  # the family counts tool-result:long


def test_measured_order_pure() -> None:
    s = MeasuredSettings(order="measured", min_attempts=20)
    assert measured_order(["x", "y"], {}, s).order == ("x", "y")
    # 19/20 does not beat 190/200 on the lower bound
    assert measured_order(["x", "y"], {"x": (20, 19), "y": (200, 190)}, s).order == ("y", "x")
    # ties keep the configured order
    assert measured_order(["x", "y"], {"x": (30, 30), "y": (30, 30)}, s).order == ("x", "y")


def test_settings_from_route_and_errors() -> None:
    s = MeasuredSettings.from_route(
        {
            "order": "measured",
            "measured": {"window": "7d", "scenario": "tool-result", "min_attempts": 20},
        }
    )
    assert (s.enabled, s.window_s, s.scenario, s.min_attempts) == (
        True,
        604800.0,
        "tool-result",
        20,
    )
    assert parse_duration("15m", where="x") == 900.0
    assert parse_duration(30, where="x") == 30.0
    with pytest.raises(ConfigError, match="expected a duration") as info:
        MeasuredSettings.from_route(
            {"order": "measured", "measured": {"window": "soon"}}, where="routes.kimi"
        )
    assert info.value.where == "routes.kimi.measured.window"
    with pytest.raises(ConfigError) as info:
        MeasuredSettings.from_route({"order": "fastest"}, where="routes.kimi")
    assert info.value.where == "routes.kimi.order"
    with pytest.raises(ConfigError) as info:
        MeasuredSettings.from_route({"measured": {"windows": "7d"}}, where="routes.kimi")
    assert info.value.where == "routes.kimi.measured.windows"
    # the route policy accepts the keys (and validates them)
    RoutePolicy.from_mapping({"order": "measured", "measured": {"window": "1d"}})
    with pytest.raises(ConfigError):
        RoutePolicy.from_mapping({"order": "measured", "measured": {"min_attempts": 0}})


def test_unreadable_history_keeps_the_order(tmp_path: Path) -> None:
    router = Router("r", [_t("a"), _t("b")], client=None)  # type: ignore[arg-type]
    routing = MeasuredRouting(router, SETTINGS, db_url="mysql://nowhere/db")
    found = routing.refresh(now=NOW)
    assert found.order == ("a", "b")
    assert found.error is not None
    assert "unsupported database URL scheme" in found.error


async def test_a_routed_call_goes_to_the_measured_first(
    make_target: MakeTarget, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    with HistoryStore.open(url) as store:
        _run(
            store,
            "r1",
            datetime.now(UTC) - timedelta(hours=1),
            {"first": (25, 5), "second": (25, 25)},
        )
    async with Client() as client:
        router = Router(
            "kimi",
            [make_target("first"), make_target("second")],
            client=client,
            policy=RoutePolicy(hedge=HedgePolicy(mode="off")),
        )
        routing = MeasuredRouting(router, SETTINGS, db_url=url)
        await routing.start()
        try:
            response = await router.complete(tool_result().conversation)
        finally:
            await routing.aclose()
    assert [a["target"] for a in response.attempts] == ["second"]


def _t(name: str) -> Target:
    from tests.resilience.fakes import target

    return target(name)
