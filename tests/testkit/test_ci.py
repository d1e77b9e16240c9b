"""CI outputs of ``callproof run``: JUnit XML (checked against the schema pytest's own output
also passes), the step summary (parsed as Markdown) and GitHub annotations (their format)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from markdown_it import MarkdownIt

from callproof.cli import main
from callproof.probe.stats import wilson
from callproof.report.ci import (
    Gate,
    escape_data,
    escape_property,
    github_annotations,
    junit_xml,
    step_summary,
)

pytestmark = pytest.mark.timeout(300)
SCHEMA = xmlschema.XMLSchema(Path(__file__).with_name("junit.xsd"))
# a workflow command: ::name key=value,key=value::message, one line, escaped
ANNOTATION = re.compile(r"^::error title=(?P<title>[^:,\r\n]*)::(?P<message>[^\r\n]*)$")


def _entry(target: str, passed: int, n: int, outcomes: dict[str, int]) -> dict[str, Any]:
    from callproof.probe.stats import compound, pass_hat_k

    rows = compound(passed / n, wilson(passed, n))
    return {
        "target": target,
        "scenario": "tool-result",
        "n": n,
        "passed": passed,
        "failed": n - passed,
        "pass_rate": passed / n,
        "ci95": list(wilson(passed, n)),
        "outcomes": outcomes,
        "compound": [{"steps": r.steps, "success": r.success, "ci95": list(r.ci95)} for r in rows],
        "pass_hat_k": {str(k): pass_hat_k(passed, n, k) for k in range(1, 6)},
        "latency_s": {"total": {"mean": 0.5, "n": passed}},
    }


SUMMARY = {
    "results": [
        _entry("bedrock-kimi-k2.5", 6, 10, {"ok": 6, "stall_no_events": 4}),
        _entry("bedrock-nova-pro", 10, 10, {"ok": 10}),
        _entry("openrouter-kimi-k2.5", 9, 10, {"ok": 9, "http_error": 1}),
    ],
    "comparisons": [],
    "totals": {"attempts": 30},
}


def _unescape(text: str) -> str:
    for code, char in (("%3A", ":"), ("%2C", ","), ("%0D", "\r"), ("%0A", "\n"), ("%25", "%")):
        text = text.replace(code, char)
    return text


def test_pytest_own_junit_passes_the_schema(pytester: pytest.Pytester) -> None:
    """The schema is pytest's format: pytest's own file (pass, fail, error, skip, suite
    properties, captured output) validates; a testcase property (not xunit2) or a bad count
    does not."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_inner="""
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("no")

def test_pass(record_testsuite_property):
    record_testsuite_property("answer", 42)
    print("out")

def test_fail():
    assert 1 == 2

def test_error(broken):
    pass

def test_skip():
    pytest.skip("later")
"""
    )
    junit = pytester.path / "pytest.xml"
    pytester.runpytest("-p", "no:cacheprovider", f"--junitxml={junit}")
    SCHEMA.validate(str(junit))
    text = junit.read_text()
    assert len(ET.fromstring(text).findall(".//testcase")) == 4
    assert not SCHEMA.is_valid(text.replace('failures="1"', 'failures="one"'))
    case_property = '<testcase \\1><properties><property name="a" value="1"/></properties>'
    assert not SCHEMA.is_valid(re.sub(r"<testcase ([^>]*[^/])>", case_property, text, count=1))


def test_junit_cases_failures_and_properties() -> None:
    xml = junit_xml(SUMMARY, Gate(0.9, "point"))
    SCHEMA.validate(xml)
    suite = ET.fromstring(xml).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("3", "1")
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("bedrock-kimi-k2.5", "tool-result"),
        ("bedrock-nova-pro", "tool-result"),
        ("openrouter-kimi-k2.5", "tool-result"),
    ]
    kimi = cases[0]
    [failure] = kimi.findall("failure")
    low, high = wilson(6, 10)
    message = failure.get("message") or ""
    assert message.startswith("6/10 passed (60%")
    assert f"Wilson 95% CI {low:.0%}" in message or "Wilson 95% CI 31" in message
    assert "stall_no_events 4" in message
    assert "gate: pass rate >= 90%" in message
    assert "Failed: 4/10 (40% STALL_NO_EVENTS)" in (failure.text or "")
    assert "6/10 passed" in (kimi.findtext("system-out") or "")
    assert "10/10 passed" in (cases[1].findtext("system-out") or "")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    key = "bedrock-kimi-k2.5/tool-result"
    assert props[f"{key}.passed"] == "6"
    assert props[f"{key}.n"] == "10"
    assert props[f"{key}.outcome.stall_no_events"] == "4"
    assert abs(float(props[f"{key}.ci95_low"]) - low) < 1e-6
    assert abs(float(props[f"{key}.ci95_high"]) - high) < 1e-6
    assert not cases[1].findall("failure")
    assert not cases[2].findall("failure")


def test_lower_gate_and_no_gate() -> None:
    lower = ET.fromstring(junit_xml(SUMMARY, Gate(0.6, "lower")))
    # 9/10 has a lower bound of ~59.6%: under 60%; 10/10 is ~72%
    failed = [c.get("classname") for c in lower.iter("testcase") if c.find("failure") is not None]
    assert failed == ["bedrock-kimi-k2.5", "openrouter-kimi-k2.5"]
    none = ET.fromstring(junit_xml(SUMMARY, Gate(None)))
    failed = [c.get("classname") for c in none.iter("testcase") if c.find("failure") is not None]
    assert failed == ["bedrock-kimi-k2.5", "openrouter-kimi-k2.5"]


def test_annotations_are_github_workflow_commands() -> None:
    lines = github_annotations(SUMMARY, Gate(0.9, "point"))
    assert len(lines) == 1
    match = ANNOTATION.match(lines[0])
    assert match is not None, lines[0]
    assert _unescape(match["title"]) == "callproof: bedrock-kimi-k2.5 · tool-result fails the gate"
    assert _unescape(match["message"]).startswith("6/10 passed (60%, Wilson 95% CI ")
    assert escape_data("50%\nnext") == "50%25%0Anext"
    assert escape_property("a:b,c") == "a%3Ab%2Cc"
    assert github_annotations(SUMMARY, Gate(0.5, "point")) == []


def _tables(markdown: str) -> list[list[list[str]]]:
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    tables: list[list[list[str]]] = []
    row: list[str] = []
    for i, token in enumerate(tokens):
        if token.type == "table_open":
            tables.append([])
        elif token.type == "tr_open":
            row = []
        elif token.type in ("th_open", "td_open"):
            row.append(tokens[i + 1].content)
        elif token.type == "tr_close":
            tables[-1].append(row)
    return tables


def test_step_summary_is_markdown_with_verdicts_table_and_compound_table() -> None:
    text = step_summary(SUMMARY, Gate(0.9, "point"))
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings[0] == "callproof run: FAIL"
    assert "Why It Compounds" in headings
    assert "Passed: 6/10 (60%)" in text
    assert "Failed: 4/10 (40% STALL_NO_EVENTS)" in text
    main_table, *compound = _tables(text)
    assert main_table[0] == [
        "Target", "Scenario", "Passed", "Pass rate", "95% CI", "Outcomes", "Gate",
    ]  # fmt: skip
    assert [r[0] for r in main_table[1:]] == [e["target"] for e in SUMMARY["results"]]
    assert [r[-1] for r in main_table[1:]] == ["fail", "pass", "pass"]
    assert compound
    assert compound[0][0] == ["Tool Uses", "Success Probability", "95% CI"]


def test_callproof_run_writes_all_three(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    step = tmp_path / "step-summary.md"
    step.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    junit = tmp_path / "out" / "junit.xml"
    args = ["run", "--seed", "11", "--fail-under", "90", "--junit", str(junit)]
    try:
        main([*args, "--format", "github", "--no-history"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert code == 1, err  # Kimi on Bedrock hangs on 40% of tool-result turns
    SCHEMA.validate(str(junit))
    cases = ET.parse(junit).getroot().findall(".//testcase")
    failing = [c.get("classname") for c in cases if c.find("failure") is not None]
    assert "bedrock-kimi-k2.5" in failing
    assert "bedrock-nova-pro" not in failing
    annotations = [line for line in out.splitlines() if line.startswith("::")]
    assert annotations
    assert all(ANNOTATION.match(line) for line in annotations)
    assert len(annotations) == len(failing)
    summary_text = step.read_text()
    assert summary_text.startswith("earlier step\n## callproof run: FAIL")
    assert _tables(summary_text)


def test_unwritable_junit_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from callproof.report.ci import write_junit

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(Exception, match="--junit") as err:
        write_junit(blocker / "junit.xml", SUMMARY, Gate())
    assert type(err.value).__name__ == "ConfigError"
