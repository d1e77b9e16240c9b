"""The callproof_repeat marker: both gates, fresh fixtures per repetition, one JUnit case."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from callproof.probe.stats import wilson

pytestmark = pytest.mark.timeout(300)

INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"

# the first k repetitions pass; a module-level list proves that the function-scoped fixture
# is fresh each time while the module stays imported
BODY = """
import pytest

SEEN = []

@pytest.fixture
def fresh():
    return []

@pytest.mark.callproof_repeat(10, {rate}, gate="{gate}")
def test_flaky(request, fresh, callproof_emulator):
    assert fresh == [] and callproof_emulator.requests == []
    fresh.append(1)
    callproof_emulator.schedule("http_error:500")
    SEEN.append(id(fresh))
    assert len(SEEN) <= {k}  # the first k repetitions pass

def test_after():
    assert len(SEEN) == 10 and len(set(SEEN)) >= 2
"""


def _run(pytester: pytest.Pytester, k: int, rate: float, gate: str, *args: str):
    pytester.makeini(INI)
    pytester.makepyfile(test_inner=BODY.format(k=k, rate=rate, gate=gate))
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def _pct(x: float) -> str:
    return f"{x:.1%}"


def test_point_gate_passes_at_the_rate(pytester: pytest.Pytester) -> None:
    result = _run(pytester, 8, 0.8, "point")
    result.assert_outcomes(passed=2)
    low, high = wilson(8, 10)
    result.stdout.fnmatch_lines(
        [
            "*callproof repeat*",
            f"PASSED test_inner.py::test_flaky: passed 8/10 (80.0%, Wilson 95% CI "
            f"{_pct(low)}-{_pct(high)}); gate point >= 80.0%",
        ]
    )


def test_point_gate_fails_below_the_rate_and_reports_k_of_n(pytester: pytest.Pytester) -> None:
    result = _run(pytester, 7, 0.8, "point")
    result.assert_outcomes(passed=1, failed=1)
    low, high = wilson(7, 10)
    interval = f"Wilson 95% CI {_pct(low)}-{_pct(high)}"
    out = result.stdout.str()
    assert f"passed 7/10 (70.0%, {interval}); gate point (pass rate) >= 80.0%: FAIL" in out
    assert "first failure:" in out
    assert f"FAILED test_inner.py::test_flaky: passed 7/10 (70.0%, {interval})" in out


def test_lower_gate_uses_the_wilson_lower_bound(pytester: pytest.Pytester) -> None:
    # 9/10 is 90%, but the lower bound is ~59.6%: a 0.8 lower gate fails, a 0.5 one passes
    assert wilson(9, 10)[0] < 0.8
    failing = _run(pytester, 9, 0.8, "lower")
    failing.assert_outcomes(passed=1, failed=1)
    failing.stdout.fnmatch_lines(["*passed 9/10 (90.0%*gate lower (CI lower bound) >= 80.0%: FAIL"])
    passing = _run(pytester, 9, 0.5, "lower")
    passing.assert_outcomes(passed=2)


def test_one_junit_case_with_the_figures(pytester: pytest.Pytester, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    _run(pytester, 7, 0.8, "point", f"--junitxml={junit}")
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == ["test_flaky", "test_after"]
    flaky = cases[0]
    props = {p.get("name"): p.get("value") for p in flaky.findall("properties/property")}
    low, high = wilson(7, 10)
    assert props["callproof_repeat_n"] == "10"
    assert props["callproof_repeat_passed"] == "7"
    assert props["callproof_repeat_gate"] == "point"
    assert props["callproof_repeat_verdict"] == "fail"
    assert abs(float(props["callproof_repeat_ci_low"]) - low) < 1e-6
    assert abs(float(props["callproof_repeat_ci_high"]) - high) < 1e-6
    [failure] = flaky.findall("failure")
    assert "passed 7/10" in (failure.get("message") or "") + (failure.text or "")


def test_all_pass_and_n_of_one(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_inner="""
import pytest

@pytest.mark.callproof_repeat(1, 1.0)
def test_once(callproof_emulator):
    pass

@pytest.mark.callproof_repeat(3, 0.0, gate="lower")
def test_never(callproof_emulator):
    assert False
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_once: passed 1/1 (100.0%*", "*test_never: passed 0/3*"])


def test_setup_error_and_skips(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_inner="""
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")

@pytest.mark.callproof_repeat(3, 0.5)
def test_error(broken):
    pass

@pytest.mark.callproof_repeat(3, 0.5)
def test_skip():
    pytest.skip("not today")
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(errors=1, skipped=1)
    result.stdout.fnmatch_lines(["*fixture broke*", "*not today*"])


def test_async_tests_repeat_with_a_fresh_loop(pytester: pytest.Pytester) -> None:
    """Agents are often async: each repetition of an async test runs on its own event loop."""
    pytester.makeini(INI + "asyncio_mode = auto\n")
    pytester.makepyfile(
        test_inner="""
import asyncio
import openai
import pytest

LOOPS = []

@pytest.mark.callproof_repeat(4, 0.5)
async def test_async_agent(callproof_env):
    LOOPS.append(id(asyncio.get_running_loop()))
    if len(LOOPS) % 2:
        callproof_env.schedule("http_error:503")
    # closed on its own loop: a client left to the garbage collector closes its pool on a
    # loop that an earlier repetition already closed ("Event loop is closed")
    async with openai.AsyncOpenAI(max_retries=0) as client:
        await client.chat.completions.create(
            model="moonshotai/kimi-k2.5", messages=[{"role": "user", "content": "hi"}])

def test_loops():
    assert len(LOOPS) == 4
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_async_agent: passed 2/4 (50.0%*"])
