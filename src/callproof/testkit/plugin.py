"""The pytest plugin (entry point ``callproof``): options, markers, fixtures and hooks.

Fixtures:

* ``callproof_emulator`` -> :class:`~callproof.testkit.emulator.CallproofEmulator`: the
  session's emulator for this test's preset, with a schedule and request log of its own.
* ``callproof_env`` -> the same emulator, with ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, placeholder
  AWS credentials, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``OPENAI_BASE_URL`` and
  ``OPENAI_API_KEY`` set for the test (``monkeypatch``), so unmodified boto3/openai code hits it.

Markers: ``callproof_preset(name)`` (the emulator preset; default ``healthy``, or
``--callproof-preset``) and ``callproof_repeat(n, min_pass_rate, gate="point")``
(:mod:`callproof.testkit.repeat`). Options: ``--callproof-preset`` (or the ini key
``callproof_preset``), ``--callproof-seed``.

Usage errors (unknown fault, rate outside [0, 1], n < 1, unknown gate, unknown preset) are one
line: marker and option errors stop the run before any test (exit code 4, pytest's usage error),
errors from a fixture method fail that test with the message and the test's line.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from callproof.testkit.emulator import CallproofEmulator, EmulatorPool
    from callproof.testkit.repeat import RepeatSpec  # noqa: F401 - named in a string

# The rest of callproof is imported inside the hooks: pytest loads entry-point plugins before
# pytest-cov starts measuring, and this keeps callproof's own coverage honest.

__all__ = [
    "RepeatSummary",
    "callproof_emulator",
    "callproof_env",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_runtest_makereport",
    "pytest_runtest_protocol",
    "pytest_unconfigure",
]

_POOL = pytest.StashKey["EmulatorPool"]()
_REPEAT = pytest.StashKey["RepeatSpec"]()
_PRESET = pytest.StashKey[str]()
_DEFAULT_PRESET = "healthy"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("callproof", "callproof test kit (emulator fixtures)")
    group.addoption(
        "--callproof-preset",
        default=None,
        help=f"Emulator preset for callproof_emulator (default {_DEFAULT_PRESET}).",
    )
    parser.addini(
        "callproof_preset",
        f"Emulator preset for callproof_emulator (default {_DEFAULT_PRESET}); "
        "--callproof-preset wins.",
        default=None,
    )
    group.addoption(
        "--callproof-seed",
        type=int,
        default=0,
        help="Seed of the emulator's own draws (latency jitter, preset faults); default 0.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "callproof_repeat(n, min_pass_rate, gate='point'): run the test n times; pass when the "
        "pass rate (gate='point') or its Wilson 95% lower bound (gate='lower') >= min_pass_rate",
    )
    config.addinivalue_line(
        "markers", "callproof_preset(name): the emulator preset for callproof_emulator"
    )
    preset = config.getoption("callproof_preset", None) or config.getini("callproof_preset")
    if preset:
        from callproof.testkit.usage import CallproofUsageError, check_preset

        try:
            check_preset(preset, "--callproof-preset / callproof_preset")
        except CallproofUsageError as exc:
            raise pytest.UsageError(f"callproof: {exc}") from None
    config.stash[_PRESET] = preset or _DEFAULT_PRESET
    config.pluginmanager.register(RepeatSummary(), "callproof-repeat-summary")


def pytest_unconfigure(config: pytest.Config) -> None:
    pool = config.stash.get(_POOL, None)
    if pool is not None:
        pool.close()


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Check every marker before any test runs (a bad one is a usage error, exit code 4)."""
    from callproof.testkit.usage import CallproofUsageError

    try:
        _check_markers(items)
    except CallproofUsageError as exc:
        raise pytest.UsageError(f"callproof: {exc}") from None


def _check_markers(items: list[pytest.Item]) -> None:
    from callproof.testkit.repeat import parse_repeat
    from callproof.testkit.usage import CallproofUsageError, check_preset

    for item in items:
        mark = item.get_closest_marker("callproof_repeat")
        if mark is not None:
            item.stash[_REPEAT] = parse_repeat(mark, item.nodeid)
        preset = item.get_closest_marker("callproof_preset")
        if preset is not None:
            if len(preset.args) != 1 or preset.kwargs:
                raise CallproofUsageError(
                    "callproof_preset takes one preset name", where=item.nodeid
                )
            check_preset(preset.args[0], f"{item.nodeid}: callproof_preset")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    spec = item.stash.get(_REPEAT, None)
    if spec is None:
        return None
    from callproof.testkit.repeat import run_repeated

    run_repeated(item, nextitem, spec)
    return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A :class:`CallproofUsageError` is shown as one line with the test's file and line."""
    report = yield
    excinfo = call.excinfo
    if excinfo is None:
        return report
    from callproof.testkit.usage import CallproofUsageError

    if excinfo.errisinstance(CallproofUsageError):
        where = ""
        ours = Path(__file__).parent
        for entry in reversed(excinfo.traceback):  # the innermost line outside the test kit
            if ours not in Path(entry.path).parents:
                where = f"{entry.path}:{entry.lineno + 1}: "
                break
        report.longrepr = f"{where}callproof usage error: {excinfo.value}"
    return report


class RepeatSummary:
    """Collects repeated tests' figures from their reports (so it works under xdist too) and
    writes the ``callproof repeat`` section of the terminal summary."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" and not (report.when == "setup" and report.failed):
            return
        props = dict(report.user_properties)
        if "callproof_repeat_n" not in props:
            return
        line = (
            f"passed {props['callproof_repeat_passed']}/{props['callproof_repeat_n']} "
            f"({_pct(props['callproof_repeat_pass_rate'])}, Wilson 95% CI "
            f"{_pct(props['callproof_repeat_ci_low'])}-{_pct(props['callproof_repeat_ci_high'])})"
            f"; gate {props['callproof_repeat_gate']} >= "
            f"{_pct(props['callproof_repeat_min_pass_rate'])}"
        )
        verdict = "PASSED" if report.passed else ("ERROR" if report.when == "setup" else "FAILED")
        self.rows.append((verdict, report.nodeid, line))

    def pytest_terminal_summary(
        self, terminalreporter: pytest.TerminalReporter, config: pytest.Config
    ) -> None:
        if self.rows:
            terminalreporter.section("callproof repeat")
            for verdict, nodeid, line in self.rows:
                terminalreporter.line(f"{verdict} {nodeid}: {line}")
        pool = config.stash.get(_POOL, None)
        if pool is not None and pool.started:
            servers = ", ".join(f"{p} at {s.url}" for p, s in pool.servers.items())
            terminalreporter.line(
                f"callproof: {pool.started} emulator server(s) started ({servers})"
            )


def _pct(value: object) -> str:
    return f"{float(str(value)):.1%}"


def _preset_for(request: pytest.FixtureRequest) -> str:
    from callproof.testkit.usage import check_preset

    mark = request.node.get_closest_marker("callproof_preset")
    if mark is not None:
        return check_preset(mark.args[0] if mark.args else None, "callproof_preset")
    return request.config.stash[_PRESET]


def _pool(config: pytest.Config) -> EmulatorPool:
    """The session's pool, made on first use (so a run without the fixtures imports nothing)."""
    pool = config.stash.get(_POOL, None)
    if pool is None:
        from callproof.testkit.emulator import EmulatorPool

        pool = config.stash[_POOL] = EmulatorPool(seed=config.getoption("callproof_seed", 0) or 0)
    return pool


@pytest.fixture
def callproof_emulator(request: pytest.FixtureRequest) -> Iterator[CallproofEmulator]:
    """The session's emulator for this test's preset; its schedule and log are this test's."""
    from callproof.testkit.emulator import CallproofEmulator
    from callproof.testkit.repeat import REPETITION

    preset = _preset_for(request)
    server, schedule = _pool(request.config).get(preset)
    repetition = request.node.stash.get(REPETITION, 0)
    emulator = CallproofEmulator(server, schedule, preset, f"{request.node.nodeid}:{repetition}")
    emulator.reset()
    try:
        yield emulator
    finally:
        emulator.reset()


@pytest.fixture
def callproof_env(
    callproof_emulator: CallproofEmulator, monkeypatch: pytest.MonkeyPatch
) -> CallproofEmulator:
    """Point unmodified boto3/openai code at the emulator for this test; returns the emulator."""
    from callproof.testkit.env import CLEARED

    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in callproof_emulator.env.items():
        monkeypatch.setenv(name, value)
    return callproof_emulator
