"""100 tests, each with its own schedule, in one pytest run: one emulator server for all.

The figures (wall time of the run with the shared server, and of the same 100 tests each
starting a server of their own, measured in the same run) are printed and recorded as
properties; only the server count is asserted (timings on a shared machine are not).
"""

from __future__ import annotations

import re
import time

import pytest

pytestmark = pytest.mark.timeout(600)

INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"

COMMON = """
import boto3, botocore.config, botocore.exceptions, pytest

CONFIG = botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"})
MESSAGES = [{"role": "user", "content": [{"text": "hi"}]}]

CLIENTS = {}

def check(emulator, i):
    status = 400 + i % 100
    emulator.schedule(f"http_error:{status}", model="amazon.nova-pro-v1:0")
    # one client per server (building a boto3 client costs more than a request)
    client = CLIENTS.get(emulator.url)
    if client is None:
        client = CLIENTS[emulator.url] = boto3.client(
            "bedrock-runtime", endpoint_url=emulator.url, config=CONFIG,
            region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with pytest.raises(botocore.exceptions.ClientError) as err:
        client.converse(modelId="amazon.nova-pro-v1:0", messages=MESSAGES)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert [r["fault"] for r in emulator.requests] == [f"http_error:{status}"]
"""

SHARED = (
    COMMON
    + """
@pytest.mark.parametrize("i", range(100))
def test_own_schedule(callproof_emulator, i):
    check(callproof_emulator, i)
"""
)

# the baseline: what a suite does without the plugin, one server per test
PER_TEST = (
    COMMON
    + """
from callproof.emulator.app import create_app
from callproof.emulator.schedule import FaultSchedule
from callproof.emulator.server import EmulatorServer
from callproof.testkit.emulator import CallproofEmulator

@pytest.fixture
def own_emulator():
    schedule = FaultSchedule()
    with EmulatorServer(app=create_app(preset="healthy", seed=0, schedule=schedule)) as server:
        yield CallproofEmulator(server, schedule, "healthy", "x:0")

@pytest.mark.parametrize("i", range(100))
def test_own_server(own_emulator, i):
    check(own_emulator, i)
"""
)


def _timed(pytester: pytest.Pytester, body: str) -> tuple[float, pytest.RunResult]:
    pytester.makeini(INI)
    pytester.makepyfile(test_inner=body)
    start = time.perf_counter()
    result = pytester.runpytest("-p", "no:cacheprovider", "-q")
    return time.perf_counter() - start, result


def test_hundred_tests_share_one_server(
    pytester: pytest.Pytester, record_property: pytest.RecordProperty
) -> None:
    # warm-up (imports, first server start), then measure: the shared run primes the same
    # code paths as a per-test one at a hundredth of its server starts
    _timed(pytester, SHARED)
    shared_s, shared = _timed(pytester, SHARED)
    shared.assert_outcomes(passed=100)
    [line] = [line for line in shared.stdout.lines if "emulator server(s) started" in line]
    started = int(re.search(r"callproof: (\d+) emulator server", line).group(1))  # type: ignore[union-attr]
    assert started == 1
    baseline_s, baseline = _timed(pytester, PER_TEST)
    baseline.assert_outcomes(passed=100)
    record_property("shared_server_s", round(shared_s, 2))
    record_property("server_per_test_s", round(baseline_s, 2))
    record_property("servers_started", started)
    print(
        f"\n100 tests with their own schedules: {shared_s:.2f} s with {started} shared server; "
        f"{baseline_s:.2f} s with a server per test (ratio {shared_s / baseline_s:.2f})"
    )
