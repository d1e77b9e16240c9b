"""Reports of a probe run: ``report.md`` (the seeds' evidence form), ``report.html``
(self-contained, inline SVG charts) and the terminal tables (:mod:`callproof.report.terminal`).

All of them read the run's ``summary`` (from :class:`callproof.probe.summary.Aggregator`), its
``run.json`` meta, and stream per-attempt lines from ``run_dir/results.jsonl`` themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_reports"]


def write_reports(run_dir: Path, summary: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write ``report.md`` and ``report.html`` into ``run_dir``."""
    from callproof.report.common import gather_evidence
    from callproof.report.html import write_html
    from callproof.report.markdown import write_markdown

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    evidence = gather_evidence(run_dir, summary)  # one pass over results.jsonl for both
    write_markdown(run_dir, summary, meta, evidence)
    write_html(run_dir, summary, meta, evidence)
