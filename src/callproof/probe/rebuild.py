"""A run's reports rendered again: from its directory, or rebuilt from the history database.

* :func:`locate_run` - a run directory, or a run id (or unique prefix) recorded in the history,
  whose records are written into a directory first (``callproof-runs/<run id>/`` by default);
* :func:`regenerate` - ``summary.json`` recomputed from ``results.jsonl``, and the reports;
* :func:`rerender` - both, under the run directory's lock (what ``callproof report`` does).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from callproof.errors import ConfigError
from callproof.probe.rundir import lock_run_dir, write_json
from callproof.probe.store import HistoryStore
from callproof.probe.summary import Aggregator, CorruptLine, read_records
from callproof.report import write_reports
from callproof.report.meta import meta_scenarios, meta_targets

__all__ = ["RunSource", "locate_run", "regenerate", "rerender"]

#: ``summary.json`` keys recomputed from the records; the runner's others (``run``, ``gate``)
#: are kept.
_SUMMARY_KEYS = frozenset({"results", "comparisons", "totals", "corrupt_lines"})

#: (run directory, run.json, the previous summary.json or ``None``)
RunSource = tuple[Path, dict[str, Any], dict[str, Any] | None]


def _aggregator(meta: dict[str, Any]) -> Aggregator:
    return Aggregator(
        targets=[str(t["name"]) for t in meta_targets(meta) if t.get("name")],
        scenarios=[str(s["name"]) for s in meta_scenarios(meta) if s.get("name")],
    )


def regenerate(
    run_dir: Path, meta: dict[str, Any], previous: dict[str, Any] | None
) -> dict[str, Any]:
    """Recompute ``summary.json`` from ``run_dir/results.jsonl`` and write the reports.

    Keys the runner added to the previous summary (``run``, ``gate``) are kept.
    """
    aggregator = _aggregator(meta)
    corrupt: list[CorruptLine] = []
    summary = aggregator.add_all(read_records(run_dir / "results.jsonl", corrupt)).summary()
    for key, value in (previous or {}).items():
        if key not in _SUMMARY_KEYS:
            summary[key] = value
    if corrupt:
        # never silently dropped: named in summary.json, the reports and on stderr
        summary["corrupt_lines"] = [c.to_dict() for c in corrupt]
    write_json(run_dir / "summary.json", summary)
    write_reports(run_dir, summary, meta)
    return summary


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}", where=str(path)) from exc
    return value if isinstance(value, dict) else None


def _from_dir(run_dir: Path) -> RunSource:
    if not (run_dir / "results.jsonl").is_file():
        raise ConfigError(f"{run_dir} holds no results.jsonl: not a callproof run directory")
    meta = _read_json(run_dir / "run.json") or {"run_id": run_dir.name}
    return run_dir, meta, _read_json(run_dir / "summary.json")


def _from_db(run_id: str, db_url: str | None, out: Path | None) -> RunSource:
    with HistoryStore.open(db_url) as store:
        found = store.run(run_id)
        if found is None:
            raise ConfigError(
                f"{run_id!r} is neither a run directory nor a run id recorded in {store.url}"
            )
        run_dir = out or Path("callproof-runs") / found["run_id"]
        run_dir.mkdir(parents=True, exist_ok=True)
        meta = found["meta"]
        with (run_dir / "results.jsonl").open("w", encoding="utf-8") as fh:
            for record in store.attempts(found["run_id"]):
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    (run_dir / "run.json").write_text(
        json.dumps(meta, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    _copy_captures(found["summary"], run_dir)
    return run_dir, meta, found["summary"]


def _copy_captures(summary: dict[str, Any] | None, run_dir: Path) -> None:
    """Bring the original run's captures along when its directory still exists."""
    original = ((summary or {}).get("run") or {}).get("run_dir")
    if not original:
        return
    source = Path(original) / "captures"
    target = run_dir / "captures"
    if source.is_dir() and source.resolve() != target.resolve():
        shutil.copytree(source, target, dirs_exist_ok=True)


def locate_run(source: str, *, db_url: str | None = None, out: Path | None = None) -> RunSource:
    """The run ``source`` names: a run directory, else a run id (or a unique prefix) in the
    history at ``db_url``, rebuilt into ``out``. Anything else is a ``ConfigError``."""
    path = Path(source)
    if path.is_dir():
        return _from_dir(path)
    if path.exists():
        raise ConfigError(f"{source} is a file; give a run directory or a run id")
    return _from_db(source, db_url, out)


def rerender(
    source: str, *, db_url: str | None = None, out: Path | None = None
) -> tuple[Path, dict[str, Any]]:
    """:func:`locate_run`, then :func:`regenerate` under the run directory's lock (a run still
    being written is not rewritten under it): the directory and the new summary. A path that
    cannot be written is a ``ConfigError`` naming it."""
    try:
        run_dir, meta, previous = locate_run(source, db_url=db_url, out=out)
        with lock_run_dir(run_dir):
            return run_dir, regenerate(run_dir, meta, previous)
    except OSError as exc:
        raise ConfigError(f"cannot write {exc.filename or source}: {exc.strerror or exc}") from None
