"""Incremental aggregation of results records into ``summary.json``.

:class:`Aggregator` takes one results record at a time (``add``) and keeps only counts and a
bounded latency sketch per (target, scenario), so memory stays flat whether a run has ten
attempts or a hundred thousand; :meth:`Aggregator.summary` computes the statistics.

Latency sketch: the first :data:`EXACT_CAP` samples of a cell are kept exactly, so a normal probe
(n = 10..1,000) reports exact percentiles. Past the cap the samples move into a fixed log-bucket
histogram (buckets 1% wide from 0.1 ms to beyond an hour; at most ~2,300 buckets, sparse), whose
percentiles are within 1% of the truth. A histogram was chosen over a reservoir sample because it
is deterministic (two runs over the same records give the same summary), its error is bounded for
every percentile including p99, and it never forgets the tail.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callproof.errors import RecordError
from callproof.outcomes import Outcome
from callproof.probe import stats
from callproof.record import AttemptRecord, RouteAttemptRecord

__all__ = [
    "EXACT_CAP",
    "UNREACHABLE_STATUSES",
    "Aggregator",
    "CorruptLine",
    "LatencySketch",
    "read_records",
    "summarize_records",
]

#: Samples kept exactly per cell before switching to the histogram.
EXACT_CAP = 2048
#: HTTP statuses that mean a target was never reached (wrong key, no access, wrong path).
UNREACHABLE_STATUSES = frozenset({401, 403, 404})
_NEVER_REACHED = frozenset({"transport_error", "stall_before_headers"})
_HIST_MIN_S = 1e-4
_HIST_GROWTH = 1.01
_LOG_GROWTH = math.log(_HIST_GROWTH)
_HIST_MAX_BUCKET = 2400


class LatencySketch:
    """Latency samples in bounded memory: exact up to :data:`EXACT_CAP`, then a log histogram."""

    __slots__ = ("_buckets", "_exact", "count", "max", "min", "total")

    def __init__(self) -> None:
        self._exact: list[float] | None = []
        self._buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    @property
    def exact(self) -> bool:
        """True while every sample is still held exactly."""
        return self._exact is not None

    def add(self, value: float) -> None:
        """Add one sample (seconds; negative values are clamped to 0)."""
        if value < 0.0:
            value = 0.0
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        exact = self._exact
        if exact is not None:
            exact.append(value)
            if len(exact) > EXACT_CAP:
                for sample in exact:
                    self._bucket_add(sample)
                self._exact = None
        else:
            self._bucket_add(value)

    def _bucket_add(self, value: float) -> None:
        if value < _HIST_MIN_S:
            index = -1
        else:
            index = min(_HIST_MAX_BUCKET, int(math.log(value / _HIST_MIN_S) / _LOG_GROWTH))
        buckets = self._buckets
        buckets[index] = buckets.get(index, 0) + 1

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100): exact, or interpolated inside a 1%-wide bucket."""
        if self.count == 0:
            return None
        if self._exact is not None:
            return stats.percentile(sorted(self._exact), q)
        if q <= 0:
            return self.min
        if q >= 100:
            return self.max
        rank = (self.count - 1) * q / 100.0
        seen = 0
        for index in sorted(self._buckets):
            count = self._buckets[index]
            if rank < seen + count:
                fraction = (rank - seen + 0.5) / count
                if index < 0:
                    low, high = 0.0, _HIST_MIN_S
                else:
                    low = _HIST_MIN_S * _HIST_GROWTH**index
                    high = low * _HIST_GROWTH
                value = low + (high - low) * fraction
                return min(self.max, max(self.min, value))
            seen += count
        return self.max

    def describe(self) -> dict[str, float | int | None]:
        """``{p50, p90, p99, mean, n}`` for ``summary.json``."""
        return {
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p99": self.percentile(99),
            "mean": self.total / self.count if self.count else None,
            "n": self.count,
        }

    def samples(self) -> list[float] | None:
        """The exact samples (sorted), or ``None`` once the sketch became a histogram."""
        return sorted(self._exact) if self._exact is not None else None


class _Cell:
    """Running totals of one (target, scenario)."""

    __slots__ = (
        "api",
        "calls_with_fallback",
        "details",
        "first_event",
        "http_statuses",
        "model",
        "n",
        "outcomes",
        "passed",
        "provider",
        "requests",
        "route_attempts",
        "scenario",
        "served_by",
        "target",
        "total",
        "unreached",
    )

    def __init__(self, target: str, scenario: str) -> None:
        self.target = target
        self.scenario = scenario
        self.n = 0
        self.passed = 0
        self.outcomes: Counter[str] = Counter()
        self.details: dict[str, str] = {}
        self.first_event = LatencySketch()
        self.total = LatencySketch()
        self.requests = 0
        self.api: str | None = None
        self.model: str | None = None
        self.provider: str | None = None
        self.route_attempts: dict[str, Counter[str]] = {}
        self.served_by: Counter[str] = Counter()
        self.calls_with_fallback = 0
        self.http_statuses: Counter[str] = Counter()
        self.unreached = 0


class Aggregator:
    """Summarises results records one at a time; see the module docstring for memory bounds.

    ``targets`` and ``scenarios`` fix the order of entries in the summary (the run's order);
    anything not named comes after, plain targets before routes, alphabetically.
    """

    def __init__(
        self,
        *,
        targets: Sequence[str] = (),
        scenarios: Sequence[str] = (),
        compound_steps: int = 5,
        pass_k: int = 5,
        alpha: float = 0.05,
    ) -> None:
        self._target_order = {name: i for i, name in enumerate(targets)}
        self._scenario_order = {name: i for i, name in enumerate(scenarios)}
        self.compound_steps = compound_steps
        self.pass_k = pass_k
        self.alpha = alpha
        self._cells: dict[tuple[str, str], _Cell] = {}
        self.records = 0

    def add(self, record: AttemptRecord | Mapping[str, Any]) -> None:
        """Count one results record (its JSON form is read with
        :meth:`~callproof.record.AttemptRecord.from_json`)."""
        if not isinstance(record, AttemptRecord):
            record = AttemptRecord.from_json(record)
        key = (record.target, record.scenario)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = _Cell(*key)
            cell.api, cell.model, cell.provider = (
                record.api or None,
                record.model or None,
                record.provider or None,
            )
        self.records += 1
        cell.n += 1
        outcome = str(record.outcome)
        passed = record.passed
        cell.outcomes[outcome] += 1
        cell.requests += record.requests
        if passed:
            cell.passed += 1
            if record.timings.first_event_s is not None:
                cell.first_event.add(float(record.timings.first_event_s))
            if record.timings.total_s is not None:
                cell.total.add(float(record.timings.total_s))
        elif outcome not in cell.details and record.detail:
            cell.details[outcome] = record.detail
        if not passed:
            status = record.error.status if record.error is not None else None
            if outcome == "http_error" and status is not None:
                cell.http_statuses[str(status)] += 1
            if outcome in _NEVER_REACHED or (
                outcome == "http_error" and status in UNREACHABLE_STATUSES
            ):
                cell.unreached += 1
        if record.route_attempts:
            self._add_route(cell, record.route_attempts, passed=passed)

    @staticmethod
    def _add_route(cell: _Cell, attempts: Sequence[RouteAttemptRecord], *, passed: bool) -> None:
        if len(attempts) > 1:
            cell.calls_with_fallback += 1
        for attempt in attempts:
            cell.route_attempts.setdefault(attempt.target, Counter())[str(attempt.outcome)] += 1
        if passed:
            winners = [a for a in attempts if a.outcome is Outcome.OK]
            if winners:
                cell.served_by[winners[-1].target] += 1

    def add_all(self, records: Iterable[AttemptRecord | Mapping[str, Any]]) -> Aggregator:
        """Add every record; returns ``self`` for chaining."""
        for record in records:
            self.add(record)
        return self

    def _sort_key(self, cell: _Cell) -> tuple[int, str, int, int, str]:
        scenario_rank = self._scenario_order.get(cell.scenario, len(self._scenario_order))
        target_rank = self._target_order.get(cell.target, len(self._target_order))
        return (
            scenario_rank,
            cell.scenario,
            target_rank,
            1 if cell.target.startswith("route:") else 0,
            cell.target,
        )

    def _entry(self, cell: _Cell) -> dict[str, Any]:
        rate = cell.passed / cell.n if cell.n else 0.0
        ci = stats.wilson(cell.passed, cell.n)
        failures = Counter({k: v for k, v in cell.outcomes.items() if k != "ok"})
        worst = failures.most_common(1)[0][0] if failures else None
        entry: dict[str, Any] = {
            "target": cell.target,
            "scenario": cell.scenario,
            "n": cell.n,
            "passed": cell.passed,
            "failed": cell.n - cell.passed,
            "pass_rate": rate,
            "ci95": [ci[0], ci[1]],
            "outcomes": dict(cell.outcomes.most_common()),
            "latency_s": {
                "first_event": cell.first_event.describe(),
                "total": cell.total.describe(),
            },
            "compound": [
                {"steps": row.steps, "success": row.success, "ci95": list(row.ci95)}
                for row in stats.compound(rate, ci, self.compound_steps)
            ],
            "pass_hat_k": {
                str(k): stats.pass_hat_k(cell.passed, cell.n, k) for k in range(1, self.pass_k + 1)
            },
            "requests": cell.requests,
            "requests_per_call": cell.requests / cell.n if cell.n else None,
            "api": cell.api,
            "model": cell.model,
            "provider": cell.provider,
            "worst_failure": worst,
            "failure_details": dict(cell.details),
            "http_statuses": dict(cell.http_statuses.most_common()),
            # every attempt a transport error, no headers, or HTTP 401/403/404
            "unreachable": cell.n > 0 and cell.unreached == cell.n,
        }
        if cell.target.startswith("route:") or cell.route_attempts:
            entry["route"] = {
                "attempts_by_target": {
                    name: {"attempts": sum(c.values()), "outcomes": dict(c.most_common())}
                    for name, c in cell.route_attempts.items()
                },
                "served_by": dict(cell.served_by.most_common()),
                "calls_with_fallback": cell.calls_with_fallback,
            }
        return entry

    def summary(self) -> dict[str, Any]:
        """``{"results": [...], "comparisons": [...], "totals": {...}}`` (JSON-ready)."""
        cells = sorted(self._cells.values(), key=self._sort_key)
        results = [self._entry(cell) for cell in cells]
        comparisons: list[dict[str, Any]] = []
        for i, a in enumerate(cells):
            for b in cells[i + 1 :]:
                if a.scenario != b.scenario or not a.n or not b.n:
                    continue
                c = stats.compare(
                    a.target, b.target, a.scenario, a.passed, a.n, b.passed, b.n, alpha=self.alpha
                )
                comparisons.append(
                    {
                        "scenario": c.scenario,
                        "a": c.a,
                        "b": c.b,
                        "a_passed": c.a_passed,
                        "a_n": c.a_n,
                        "a_pass_rate": c.a_passed / c.a_n,
                        "b_passed": c.b_passed,
                        "b_n": c.b_n,
                        "b_pass_rate": c.b_passed / c.b_n,
                        "p_value": c.p_value,
                        "significant": c.significant,
                        "verdict": c.verdict,
                    }
                )
        passed = sum(cell.passed for cell in cells)
        return {
            "results": results,
            "comparisons": comparisons,
            "totals": {"attempts": self.records, "passed": passed, "failed": self.records - passed},
        }


@dataclass(frozen=True, slots=True)
class CorruptLine:
    """A ``results.jsonl`` line that is not a record: its 1-based number and what is wrong."""

    line: int
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "problem": self.problem}


def read_records(path: Path, corrupt: list[CorruptLine] | None = None) -> Iterator[dict[str, Any]]:
    """Stream the records of a ``results.jsonl`` (or a run directory holding one).

    Blank lines are skipped. A line that is not a JSON object is never fatal, and never silently
    lost: it is appended to ``corrupt`` (when given) with its line number, so the caller can warn
    (``callproof report`` does, and fails under ``--strict``).
    """
    if path.is_dir():
        path = path / "results.jsonl"
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            torn = not line.endswith("\n")
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                if corrupt is not None:
                    what = "a torn last line (an interrupted write)" if torn else "not JSON"
                    corrupt.append(CorruptLine(number, f"{what}: {exc}"))
                continue
            try:
                AttemptRecord.from_json(record)  # the class decides what a record is
            except RecordError as exc:
                if corrupt is not None:
                    corrupt.append(CorruptLine(number, str(exc)))
                continue
            yield record


def summarize_records(records: Iterable[dict[str, Any]], **options: Any) -> dict[str, Any]:
    """One-shot: aggregate ``records`` and return the summary (options as for Aggregator)."""
    return Aggregator(**options).add_all(records).summary()
