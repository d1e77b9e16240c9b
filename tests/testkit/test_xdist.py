"""The plugin under pytest-xdist: each worker has its own server; schedules stay per test and
the repeat summary reaches the controller (it is built from the reports)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(300)

BODY = """
import httpx
import pytest

FIRST = [{"role": "user", "content": [{"text": "hi"}]}]

@pytest.mark.parametrize("status", [418, 429, 500, 503, 504, 507])
def test_own_schedule(callproof_emulator, status):
    callproof_emulator.schedule(f"http_error:{status}")
    url = callproof_emulator.url + "/model/amazon.nova-pro-v1:0/converse"
    assert httpx.post(url, json={"messages": FIRST}, timeout=30).status_code == status
    assert httpx.post(url, json={"messages": FIRST}, timeout=30).status_code == 200
    assert [r["fault"] for r in callproof_emulator.requests] == [f"http_error:{status}", None]

@pytest.mark.callproof_repeat(5, 1.0)
def test_repeated(callproof_emulator):
    assert callproof_emulator.requests == []
"""


def test_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=BODY)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(
        ["*callproof repeat*", "PASSED test_inner.py::test_repeated: passed 5/5 (100.0%*"]
    )
