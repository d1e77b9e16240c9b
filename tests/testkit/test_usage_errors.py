"""Bad input is a clear pytest usage error with the reason, never a traceback."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(300)

INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


def _run(pytester: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    pytester.makeini(INI)
    pytester.makepyfile(test_inner=body)
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def _no_traceback(result: pytest.RunResult) -> None:
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text
    assert "site-packages" not in text
    assert "callproof/testkit" not in text


FIXTURE_METHOD_CASES = [
    ("schedule('hang')", "unknown fault 'hang'; known faults: hang_before_headers"),
    ("schedule('http_error:99')", "http_error needs a status from 400 to 599"),
    ("schedule('stall_after')", "fault 'stall_after' needs an argument"),
    ("schedule('empty_response', times=0)", "times must be a whole number of at least 1"),
    ("schedule('empty_response', api='bedrock-chat')", "unknown api 'bedrock-chat'"),
    ("schedule('empty_response', turn='second')", "turn must be 'first' or 'tool_result'"),
    ("fault_rate('nope', 0.5)", "unknown fault 'nope'"),
    ("fault_rate('empty_response', 1.5)", "rate must be a number from 0 to 1, got 1.5"),
    ("fault_rate('empty_response', -0.1)", "rate must be a number from 0 to 1, got -0.1"),
]


def test_fixture_methods(pytester: pytest.Pytester) -> None:
    """Each bad call fails its own test with one line naming the test's file and line."""
    body = "".join(
        f"def test_{i}(callproof_emulator):\n    callproof_emulator.{call}\n\n"
        for i, (call, _) in enumerate(FIXTURE_METHOD_CASES)
    )
    result = _run(pytester, body)
    result.assert_outcomes(failed=len(FIXTURE_METHOD_CASES))
    lines = [line for line in result.stdout.lines if "callproof usage error" in line]
    for i, (_, message) in enumerate(FIXTURE_METHOD_CASES):
        line_no = 3 * i + 2  # the call's line in the generated file
        found = [
            line for line in lines if f"test_inner.py:{line_no}: callproof usage error:" in line
        ]
        assert found, (i, result.stdout.str())
        assert message in found[0]
    _no_traceback(result)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("callproof_repeat(0, 0.9)", "n must be a whole number of at least 1, got 0"),
        ("callproof_repeat(-3, 0.9)", "n must be a whole number of at least 1, got -3"),
        ("callproof_repeat(10, 1.2)", "min_pass_rate must be a number from 0 to 1, got 1.2"),
        ("callproof_repeat(10, 0.9, gate='upper')", "gate must be 'point' or 'lower', got 'upper'"),
        ("callproof_repeat(10)", "use callproof_repeat(n, min_pass_rate, gate='point')"),
        ("callproof_preset('sed')", "unknown emulator preset 'sed'; known: seed"),
    ],
)
def test_markers_stop_the_run_as_usage_errors(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    body = f"import pytest\n\n@pytest.mark.{marker}\ndef test_it():\n    pass\n"
    result = _run(pytester, body)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "ERROR: callproof: test_inner.py::test_it" in err
    assert message in err
    _no_traceback(result)


def test_unknown_preset_option(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "def test_it():\n    pass\n", "--callproof-preset", "nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--callproof-preset / callproof_preset: unknown emulator preset 'nope'" in (
        result.stderr.str()
    )
    _no_traceback(result)
