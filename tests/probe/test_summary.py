"""The Aggregator: summary.json's shape and values, bounded memory, the latency sketch."""

from __future__ import annotations

import gc
import json
import math
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from callproof.probe import stats
from callproof.probe.summary import (
    EXACT_CAP,
    Aggregator,
    LatencySketch,
    read_records,
    summarize_records,
)
from callproof.record import AttemptRecord
from tests.probe.synthetic import record, route_records, seed_records


def by_target(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["target"]: e for e in summary["results"]}


def test_seed_matrix_summary() -> None:
    summary = Aggregator().add_all(seed_records()).summary()
    json.loads(json.dumps(summary))  # JSON-ready
    kimi = by_target(summary)["bedrock-kimi-k2.5"]
    assert kimi["n"] == 10
    assert kimi["passed"] == 6
    assert kimi["pass_rate"] == 0.6
    assert [round(v, 4) for v in kimi["ci95"]] == [0.3127, 0.8318]
    assert kimi["outcomes"] == {"ok": 6, "stall_no_events": 4}
    assert kimi["worst_failure"] == "stall_no_events"
    assert [round(r["success"] * 100) for r in kimi["compound"]] == [60, 36, 22, 13, 8]
    assert [r["steps"] for r in kimi["compound"]] == [1, 2, 3, 4, 5]
    assert kimi["pass_hat_k"]["1"] == pytest.approx(0.6)
    assert kimi["pass_hat_k"]["2"] == pytest.approx(1 / 3)
    assert set(kimi["pass_hat_k"]) == {"1", "2", "3", "4", "5"}
    assert kimi["requests_per_call"] == 1.0
    assert (kimi["api"], kimi["model"]) == ("bedrock-converse-stream", "moonshotai.kimi-k2.5")
    assert "route" not in kimi
    # Latency is of passing attempts only (failures took 2.0 s each).
    total = kimi["latency_s"]["total"]
    assert total["n"] == 6
    passing = sorted(0.3 + a / 100 for a in (4, 6, 7, 8, 9, 10))
    assert total["p50"] == pytest.approx(stats.percentile(passing, 50))
    assert total["mean"] == pytest.approx(sum(passing) / 6)
    assert kimi["latency_s"]["first_event"]["n"] == 6
    mistral = by_target(summary)["bedrock-mistral-large-3"]
    assert mistral["worst_failure"] is None
    assert mistral["outcomes"] == {"ok": 10}
    assert summary["totals"] == {"attempts": 30, "passed": 26, "failed": 4}


def test_comparisons_pairwise_per_scenario() -> None:
    records = list(seed_records())
    records.append(record("bedrock-kimi-k2.5", 1, seq=999, scenario="tool-call"))
    summary = Aggregator().add_all(records).summary()
    tool_result = [c for c in summary["comparisons"] if c["scenario"] == "tool-result"]
    assert len(tool_result) == 3  # 3 targets -> 3 pairs; tool-call has one target -> none
    assert all(c["scenario"] == "tool-result" for c in summary["comparisons"])
    kimi_pair = next(
        c for c in tool_result if {c["a"], c["b"]} == {"bedrock-kimi-k2.5", "openrouter-kimi-k2.5"}
    )
    assert round(kimi_pair["p_value"], 4) == 0.0867
    assert kimi_pair["significant"] is False
    assert kimi_pair["verdict"].startswith("no significant difference")


def test_significant_comparison_verdict() -> None:
    summary = Aggregator().add_all(seed_records(n=20)).summary()
    pair = next(
        c
        for c in summary["comparisons"]
        if {c["a"], c["b"]} == {"bedrock-kimi-k2.5", "openrouter-kimi-k2.5"}
    )
    # 16/20 vs 20/20 is still not significant: p = 0.1060
    assert pair["significant"] is False
    records = [
        record("a", i, outcome="ok" if i > 8 else "stall_no_events") for i in range(1, 21)
    ] + [record("b", i, seq=100 + i) for i in range(1, 21)]
    summary = Aggregator().add_all(records).summary()
    (pair,) = summary["comparisons"]
    assert pair["significant"] is True
    assert (
        pair["verdict"]
        == f"a is worse than b on tool-result: 60% vs 100%, p = {pair['p_value']:.4f}"
    )


def test_route_entries_count_requests_and_fallbacks() -> None:
    summary = Aggregator().add_all(route_records()).summary()
    (route,) = summary["results"]
    assert route["target"] == "route:kimi"
    assert route["passed"] == 10
    assert route["requests"] == 13  # attempts 3, 6, 9 spent two requests
    assert route["requests_per_call"] == pytest.approx(1.3)
    assert route["route"]["calls_with_fallback"] == 3
    assert route["route"]["served_by"] == {"bedrock-kimi-k2.5": 7, "openrouter-kimi-k2.5": 3}
    attempts = route["route"]["attempts_by_target"]
    assert attempts["bedrock-kimi-k2.5"] == {
        "attempts": 10,
        "outcomes": {"ok": 7, "stall_no_events": 3},
    }


def test_order_follows_the_run_then_routes_last() -> None:
    records = [*route_records(), *seed_records()]
    summary = Aggregator().add_all(records).summary()
    assert [e["target"] for e in summary["results"]] == [
        "bedrock-kimi-k2.5",
        "bedrock-mistral-large-3",
        "openrouter-kimi-k2.5",
        "route:kimi",
    ]
    ordered = Aggregator(targets=["openrouter-kimi-k2.5", "route:kimi", "bedrock-kimi-k2.5"])
    summary = ordered.add_all(records).summary()
    assert [e["target"] for e in summary["results"]][:3] == [
        "openrouter-kimi-k2.5",
        "route:kimi",
        "bedrock-kimi-k2.5",
    ]


def test_tolerates_sparse_records() -> None:
    summary = summarize_records([{"target": "t", "scenario": "s", "outcome": "http_error"}])
    (entry,) = summary["results"]
    assert entry["passed"] == 0
    assert entry["latency_s"]["total"] == {
        "p50": None,
        "p90": None,
        "p99": None,
        "mean": None,
        "n": 0,
    }
    assert summarize_records([]) == {
        "results": [],
        "comparisons": [],
        "totals": {"attempts": 0, "passed": 0, "failed": 0},
    }


def test_read_records_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    lines = [json.dumps(r) for r in seed_records(n=2)]
    path.write_text("\n".join(lines) + "\n\n" + lines[0][:40], encoding="utf-8")
    assert len(list(read_records(path))) == 6
    assert len(list(read_records(tmp_path))) == 6  # a run directory works too


def test_latency_sketch_exact_below_the_cap() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(-1, 0.5) for _ in range(500)]
    sketch = LatencySketch()
    for v in values:
        sketch.add(v)
    assert sketch.exact
    expected = stats.percentiles(values)
    assert sketch.describe() == pytest.approx(expected)


def test_latency_sketch_histogram_within_one_percent() -> None:
    rng = random.Random(4)
    values = [rng.lognormvariate(-1, 0.8) for _ in range(EXACT_CAP * 10)]
    sketch = LatencySketch()
    for v in values:
        sketch.add(v)
    assert not sketch.exact
    assert sketch.samples() is None
    ordered = sorted(values)
    for q in (50, 90, 99):
        exact = stats.percentile(ordered, q)
        assert exact is not None
        assert sketch.percentile(q) == pytest.approx(exact, rel=0.011)
    assert sketch.describe()["mean"] == pytest.approx(sum(values) / len(values))
    assert sketch.percentile(100) == pytest.approx(max(values))
    sketch.add(0.0)  # below the first bucket
    assert sketch.percentile(0) == 0.0


def _peak_adding(n: int) -> int:
    rng = random.Random(5)
    targets = ["a", "b", "c", "route:r"]
    # A pool of distinct records built (and typed) before tracing starts, so only the
    # Aggregator is measured.
    pool: list[AttemptRecord] = []
    for i in range(997):
        outcome = "ok" if rng.random() < 0.8 else "stall_no_events"
        pool.append(
            AttemptRecord.from_json(
                {
                    "target": targets[i % 4],
                    "scenario": "tool-result",
                    "attempt": i,
                    "outcome": outcome,
                    "passed": outcome == "ok",
                    "detail": "" if outcome == "ok" else f"no event ({i})",
                    "requests": 1,
                    "timings": {
                        "first_event_s": rng.lognormvariate(-2, 0.5),
                        "total_s": rng.lognormvariate(-1, 0.5),
                    },
                    "route_attempts": [{"target": "a", "outcome": outcome}] if i % 4 == 3 else [],
                }
            )
        )
    aggregator = Aggregator()
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(n):
            aggregator.add(pool[i % 997])
        aggregator.summary()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert aggregator.records == n
    return peak


@pytest.mark.timeout(120)
def test_memory_is_flat_from_10k_to_100k_records() -> None:
    small = _peak_adding(10_000)
    large = _peak_adding(100_000)
    # Ten times the records may not cost more than a sliver more memory.
    assert large < small * 1.3, (small, large)
    assert math.isfinite(large)
