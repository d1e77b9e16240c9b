"""docs/testing.md shows each example the suite runs, verbatim, and names every fixture,
method, marker and option of the plugin's contract."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "testing.md"
BLOCK = re.compile(r"<!-- example: (?P<path>\S+) -->\n```\w*\n(?P<code>.*?)```\n", re.S)


def test_every_example_on_the_page_is_the_file_the_suite_runs() -> None:
    text = DOC.read_text()
    shown = {m["path"]: m["code"] for m in BLOCK.finditer(text)}
    examples = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests" / "testkit" / "examples").rglob("*")
        if p.suffix in (".py", ".mjs") and p.name != "__init__.py"
    )
    assert sorted(shown) == examples
    for path, code in shown.items():
        assert code == (ROOT / path).read_text(), f"{path} differs from docs/testing.md"


@pytest.mark.parametrize(
    "name",
    [
        "callproof_emulator",
        "callproof_env",
        "schedule(fault, *, times=1, model=None, api=None, turn=None)",
        "fault_rate(fault, rate, *, model=None, api=None, turn=None, seed=None)",
        'callproof_repeat(20, 0.8, gate="lower")',
        "callproof_preset",
        "--callproof-preset",
        "--env-file",
        "--junit FILE",
        "--format github",
        "GITHUB_STEP_SUMMARY",
        "-p no:callproof",
    ],
)
def test_contract_names_are_documented(name: str) -> None:
    assert name in DOC.read_text()
