"""Docs that cannot drift: the CLI reference is generated from --help."""

from __future__ import annotations

from pathlib import Path

from callproof.docgen import render

ROOT = Path(__file__).parent.parent


def test_cli_reference_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "cli.md").read_text()
    assert committed == render(), "docs/cli.md is stale: run `make docs`"


def test_readme_names_the_two_commands_and_ci_calls_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme
    assert "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
