"""CI outputs of ``callproof run``: JUnit XML, the GitHub step summary, GitHub annotations.

* :func:`junit_xml(summary, gate) <junit_xml>`: one ``<testcase>`` per target and scenario
  (``classname`` the target, ``name`` the scenario), in the JUnit format pytest writes
  (``xunit2``). A case fails when it fails the gate; its ``<failure>`` carries the outcome
  counts and the Wilson 95% interval, every case has them in ``<system-out>``, and the suite's
  ``<properties>`` hold the figures as ``TARGET/SCENARIO.passed`` etc. (xunit2 allows
  properties on the suite only).
* :func:`step_summary(summary, gate) <step_summary>`: Markdown for ``$GITHUB_STEP_SUMMARY``: the
  seeds' verdict lines (``Passed: 6/10 (60%)`` / ``Failed: 4/10 (40% STALL_NO_EVENTS)``), the
  table of pass rates and intervals, and the compound table (from :mod:`.markdown`).
* :func:`github_annotations(summary, gate) <github_annotations>`: ``::error title=...::...``
  workflow commands, one per target and scenario that fails the gate, escaped as the runner
  expects (``%``, CR, LF in messages; also ``:`` and ``,`` in properties).
* :func:`emit_ci_outputs` does all three for the CLI (``--junit``, ``GITHUB_STEP_SUMMARY``,
  ``--format github``).

:class:`Gate` is the run's ``--fail-under``/``--gate``. With no ``--fail-under`` the gate is
"every attempt passes", so JUnit and annotations still name what failed; the exit code is
unchanged (only ``--fail-under`` sets it).
"""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callproof import redact
from callproof.errors import ConfigError
from callproof.probe.stats import format_pct
from callproof.report.common import failed_line, passed_line
from callproof.report.markdown import _cell, _compound_tables  # the report's own pieces

__all__ = [
    "Gate",
    "emit_ci_outputs",
    "escape_data",
    "escape_property",
    "github_annotations",
    "junit_xml",
    "step_summary",
    "write_junit",
]


@dataclass(frozen=True, slots=True)
class Gate:
    """``--fail-under`` (a fraction, or None) and ``--gate`` (``point`` or ``lower``)."""

    fail_under: float | None = None
    mode: str = "point"

    @property
    def threshold(self) -> float:
        return 1.0 if self.fail_under is None else self.fail_under

    def figure(self, entry: dict[str, Any]) -> float:
        """What the gate compares: the pass rate, or its Wilson lower bound."""
        return float(entry["ci95"][0] if self.mode == "lower" else entry["pass_rate"])

    def fails(self, entry: dict[str, Any]) -> bool:
        if self.fail_under is None:
            return int(entry["passed"]) < int(entry["n"])
        return self.figure(entry) < self.threshold

    def describe(self) -> str:
        if self.fail_under is None:
            return "every attempt passes (no --fail-under)"
        what = "Wilson 95% lower bound" if self.mode == "lower" else "pass rate"
        return f"{what} >= {format_pct(self.threshold)}"


def _interval(entry: dict[str, Any]) -> str:
    low, high = entry["ci95"]
    return f"Wilson 95% CI {format_pct(low)}-{format_pct(high)}"


def _outcomes(entry: dict[str, Any]) -> str:
    return ", ".join(f"{name} {count}" for name, count in entry["outcomes"].items() if count)


def _verdict(entry: dict[str, Any], gate: Gate) -> str:
    """``6/10 passed (60%, Wilson 95% CI 31%-83%); outcomes: ok 6, stall_no_events 4``."""
    return (
        f"{entry['passed']}/{entry['n']} passed ({format_pct(entry['pass_rate'])}, "
        f"{_interval(entry)}); outcomes: {_outcomes(entry) or 'none'}; gate: {gate.describe()}"
    )


def junit_xml(summary: dict[str, Any], gate: Gate, *, meta: dict[str, Any] | None = None) -> str:
    """The run as JUnit XML (see the module docstring)."""
    results = summary.get("results", [])
    failures = sum(1 for e in results if gate.fails(e))
    seconds = _run_seconds(summary, meta or {})
    root = ET.Element("testsuites", name="callproof run")
    suite = ET.SubElement(
        root,
        "testsuite",
        name="callproof",
        errors="0",
        failures=str(failures),
        skipped="0",
        tests=str(len(results)),
        time=f"{seconds:.3f}",
        timestamp=str((meta or {}).get("started_at") or datetime.now(UTC).isoformat()),
        hostname=socket.gethostname(),
    )
    # the figures as suite properties: pytest's xunit2 schema has no properties on a testcase
    props = ET.SubElement(suite, "properties")
    for entry in results:
        key = f"{entry['target']}/{entry['scenario']}"
        low, high = entry["ci95"]
        values: list[tuple[str, object]] = [
            ("n", entry["n"]),
            ("passed", entry["passed"]),
            ("pass_rate", round(float(entry["pass_rate"]), 6)),
            ("ci95_low", round(float(low), 6)),
            ("ci95_high", round(float(high), 6)),
            *((f"outcome.{name}", count) for name, count in entry["outcomes"].items()),
        ]
        for name, value in values:
            ET.SubElement(props, "property", name=f"{key}.{name}", value=str(value))
    ET.SubElement(props, "property", name="gate", value=gate.describe())
    for entry in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=str(entry["target"]),
            name=str(entry["scenario"]),
            time=f"{_entry_seconds(entry):.3f}",
        )
        lines = f"{passed_line(entry)}\n{failed_line(entry)}\n{_verdict(entry, gate)}"
        if gate.fails(entry):
            failure = ET.SubElement(
                case, "failure", type="callproof.gate", message=_verdict(entry, gate)
            )
            failure.text = lines
        ET.SubElement(case, "system-out").text = lines
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


def _entry_seconds(entry: dict[str, Any]) -> float:
    total = (entry.get("latency_s") or {}).get("total") or {}
    mean, n = total.get("mean"), total.get("n")
    return float(mean) * int(n) if mean is not None and n else 0.0


def _run_seconds(summary: dict[str, Any], meta: dict[str, Any]) -> float:
    for source in (summary.get("run") or {}, meta):
        value = source.get("duration_s") if isinstance(source, dict) else None
        if isinstance(value, int | float):
            return float(value)
    return sum(_entry_seconds(e) for e in summary.get("results", []))


def write_junit(path: Path, summary: dict[str, Any], gate: Gate, **kwargs: Any) -> None:
    """Write :func:`junit_xml` to ``path``; ``ConfigError`` when it cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(redact.scrub(junit_xml(summary, gate, **kwargs)), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", where=f"--junit {path}") from None


def step_summary(summary: dict[str, Any], gate: Gate) -> str:
    """The Markdown appended to ``$GITHUB_STEP_SUMMARY``."""
    results = summary.get("results", [])
    failing = [e for e in results if gate.fails(e)]
    head = "FAIL" if failing else "PASS"
    out = [f"## callproof run: {head}", "", f"Gate: {gate.describe()}.", ""]
    for e in results:
        mark = ":x:" if gate.fails(e) else ":white_check_mark:"
        out += [
            f"{mark} **{_cell(str(e['target']))} · {_cell(str(e['scenario']))}**  ",
            f"{passed_line(e)}  ",
            failed_line(e),
            "",
        ]
    if results:
        out += [
            "| Target | Scenario | Passed | Pass rate | 95% CI | Outcomes | Gate |",
            "|---|---|---|---|---|---|---|",
        ]
        for e in results:
            low, high = e["ci95"]
            out.append(
                f"| {_cell(str(e['target']))} | {_cell(str(e['scenario']))} | "
                f"{e['passed']}/{e['n']} | {format_pct(e['pass_rate'])} | "
                f"{format_pct(low)}–{format_pct(high)} | {_cell(_outcomes(e)) or '-'} | "
                f"{'fail' if gate.fails(e) else 'pass'} |"
            )
        out.append("")
        out += _compound_tables(summary)
    return "\n".join(out) + "\n"


def escape_data(text: str) -> str:
    """A workflow command's message: ``%``, CR and LF escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: as :func:`escape_data`, plus ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(summary: dict[str, Any], gate: Gate) -> list[str]:
    """``::error title=...::message`` for each target and scenario that fails the gate."""
    lines = []
    for e in summary.get("results", []):
        if not gate.fails(e):
            continue
        title = f"callproof: {e['target']} · {e['scenario']} fails the gate"
        lines.append(f"::error title={escape_property(title)}::{escape_data(_verdict(e, gate))}")
    return lines


def emit_ci_outputs(
    summary: dict[str, Any],
    gate: Gate,
    *,
    junit: Path | None = None,
    annotations: bool = False,
    meta: dict[str, Any] | None = None,
    echo: Callable[[str], None] = print,
    environ: dict[str, str] | None = None,
) -> None:
    """``--junit FILE``, the step summary when ``GITHUB_STEP_SUMMARY`` is set, and
    ``--format github`` annotations (printed with ``echo``)."""
    env = os.environ if environ is None else environ
    if junit is not None:
        write_junit(junit, summary, gate, meta=meta)
    target = env.get("GITHUB_STEP_SUMMARY")
    if target:
        try:
            with Path(target).open("a", encoding="utf-8") as handle:
                handle.write(redact.scrub(step_summary(summary, gate)))
        except OSError as exc:
            raise ConfigError(
                f"cannot append: {exc.strerror or exc}", where=f"GITHUB_STEP_SUMMARY {target}"
            ) from None
    if annotations:
        for line in github_annotations(summary, gate):
            echo(line)
