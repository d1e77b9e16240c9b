"""``@pytest.mark.callproof_repeat(n, min_pass_rate, gate="point")``: a verdict over n runs.

The test runs ``n`` times as one test item; each repetition gets fresh function-scoped fixtures
(so a fresh ``callproof_emulator`` schedule and request log) while module and session fixtures
stay up. It passes when the pass rate (``gate="point"``) or the lower bound of its Wilson 95%
interval (``gate="lower"``) is at least ``min_pass_rate``. One report goes out: one line in the
terminal, one JUnit test case with the figures as properties (:data:`PROPERTY_NAMES`), and a
``passed k/n`` line with the interval in the terminal summary.

A repetition that skips is not counted; when all skip, the test is skipped. When a fixture
fails to set up in any repetition, the test is an error (the first setup failure is shown).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from _pytest.runner import runtestprotocol  # what pytest-rerunfailures uses too

from callproof.probe.stats import wilson
from callproof.testkit.usage import CallproofUsageError

__all__ = [
    "GATES",
    "PROPERTY_NAMES",
    "REPETITION",
    "RepeatResult",
    "RepeatSpec",
    "parse_repeat",
    "run_repeated",
]

GATES = ("point", "lower")
#: The JUnit properties of a repeated test (``callproof_repeat_*``).
PROPERTY_NAMES = (
    "callproof_repeat_n",
    "callproof_repeat_passed",
    "callproof_repeat_pass_rate",
    "callproof_repeat_ci_low",
    "callproof_repeat_ci_high",
    "callproof_repeat_gate",
    "callproof_repeat_min_pass_rate",
    "callproof_repeat_verdict",
)
#: The current repetition's number (0 when the test is not repeated), on the item's stash.
REPETITION = pytest.StashKey[int]()


@dataclass(frozen=True, slots=True)
class RepeatSpec:
    """The marker's arguments, checked."""

    n: int
    min_pass_rate: float
    gate: Literal["point", "lower"] = "point"


def parse_repeat(mark: pytest.Mark, where: str) -> RepeatSpec:
    """The marker's arguments; :class:`CallproofUsageError` naming the test when they are wrong."""

    def bad(message: str) -> CallproofUsageError:
        return CallproofUsageError(f"callproof_repeat: {message}", where=where)

    try:
        bound = _bind(*mark.args, **mark.kwargs)
    except TypeError as exc:
        raise bad(f"{exc}; use callproof_repeat(n, min_pass_rate, gate='point')") from None
    n, rate, gate = bound
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise bad(f"n must be a whole number of at least 1, got {n!r}")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise bad(f"min_pass_rate must be a number from 0 to 1, got {rate!r}")
    if gate not in GATES:
        raise bad(f"gate must be 'point' or 'lower', got {gate!r}")
    return RepeatSpec(n, float(rate), gate)


def _bind(n: Any, min_pass_rate: Any, gate: Any = "point") -> tuple[Any, Any, Any]:
    return n, min_pass_rate, gate


@dataclass(frozen=True, slots=True)
class RepeatResult:
    """k passes of n counted runs, the Wilson 95% interval and the gate's verdict."""

    spec: RepeatSpec
    passed: int
    n: int

    @property
    def rate(self) -> float:
        return self.passed / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.passed, self.n)

    @property
    def ok(self) -> bool:
        if self.n == 0:
            return False
        figure = self.rate if self.spec.gate == "point" else self.interval[0]
        return figure >= self.spec.min_pass_rate - 1e-12

    def summary(self) -> str:
        """``passed 9/10 (90.0%, Wilson 95% CI 59.6%-98.2%); gate point >= 80.0%: pass``."""
        low, high = self.interval
        figure = "pass rate" if self.spec.gate == "point" else "CI lower bound"
        return (
            f"passed {self.passed}/{self.n} ({self.rate:.1%}, Wilson 95% CI "
            f"{low:.1%}-{high:.1%}); gate {self.spec.gate} ({figure}) >= "
            f"{self.spec.min_pass_rate:.1%}: {'pass' if self.ok else 'FAIL'}"
        )

    def properties(self) -> list[tuple[str, object]]:
        low, high = self.interval
        values: Sequence[object] = (
            self.n,
            self.passed,
            round(self.rate, 6),
            round(low, 6),
            round(high, 6),
            self.spec.gate,
            self.spec.min_pass_rate,
            "pass" if self.ok else "fail",
        )
        return list(zip(PROPERTY_NAMES, values, strict=True))


def run_repeated(item: pytest.Item, nextitem: pytest.Item | None, spec: RepeatSpec) -> None:
    """Run ``item`` ``spec.n`` times and log one set of reports (setup, call, teardown)."""
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    own_properties = list(item.user_properties)
    passed = counted = 0
    first_failure: pytest.TestReport | None = None
    setup_error: pytest.TestReport | None = None
    teardown_error: pytest.TestReport | None = None
    skipped: pytest.TestReport | None = None
    last_call: pytest.TestReport | None = None
    duration = 0.0
    start = stop = None
    for i in range(spec.n):
        item.stash[REPETITION] = i
        item.user_properties[:] = own_properties
        # the parent as "next item" tears down this function's fixtures only; the last
        # repetition tears down for the real next item
        upto: Any = nextitem if i == spec.n - 1 else item.parent
        for report in runtestprotocol(item, log=False, nextitem=upto):
            start = report.start if start is None else start
            stop = report.stop
            if report.when == "setup" and report.failed:
                setup_error = setup_error or report
            elif report.when == "teardown" and report.failed:
                teardown_error = teardown_error or report
            elif report.when == "call":
                last_call = report
                duration += report.duration
                if report.skipped:
                    skipped = skipped or report
                    continue
                counted += 1
                if report.passed:
                    passed += 1
                else:
                    first_failure = first_failure or report
    result = RepeatResult(spec, passed, counted)
    extra = [p for p in item.user_properties if p not in own_properties]
    item.user_properties[:] = [*own_properties, *result.properties(), *_unique(extra)]
    reports = _reports(item, result, setup_error, teardown_error, skipped, first_failure, last_call)
    for report in reports:
        report.start, report.stop = start or 0.0, stop or 0.0
        if report.when == "call":
            report.duration = duration
        ihook.pytest_runtest_logreport(report=report)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


def _unique(pairs: list[tuple[str, object]]) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []
    for pair in pairs:
        if pair not in seen:
            seen.append(pair)
    return seen


def _reports(
    item: pytest.Item,
    result: RepeatResult,
    setup_error: pytest.TestReport | None,
    teardown_error: pytest.TestReport | None,
    skipped: pytest.TestReport | None,
    first_failure: pytest.TestReport | None,
    last_call: pytest.TestReport | None,
) -> list[pytest.TestReport]:
    def report(
        when: Literal["setup", "call", "teardown"],
        outcome: Literal["passed", "failed", "skipped"],
        longrepr: Any = None,
        sections: Any = (),
    ) -> pytest.TestReport:
        return pytest.TestReport(
            item.nodeid,
            item.location,
            dict.fromkeys(item.keywords, 1),
            outcome,
            longrepr,
            when,
            sections=list(sections),
            user_properties=list(item.user_properties),
        )

    if setup_error is not None:
        message = f"{result.summary()}\n\nsetup failed:\n{setup_error.longreprtext}"
        return [
            report("setup", "failed", message, setup_error.sections),
            report("teardown", "passed"),
        ]
    reports = [report("setup", "passed")]
    if result.n == 0 and skipped is not None:
        reports.append(report("call", "skipped", skipped.longrepr))
    elif result.ok:
        reports.append(report("call", "passed", None, last_call.sections if last_call else ()))
    else:
        message = result.summary()
        if first_failure is not None:
            message += f"\n\nfirst failure:\n{first_failure.longreprtext}"
        sections = first_failure.sections if first_failure is not None else ()
        reports.append(report("call", "failed", message, sections))
    if teardown_error is not None:
        reports.append(report("teardown", "failed", teardown_error.longrepr))
    else:
        reports.append(report("teardown", "passed"))
    return reports
