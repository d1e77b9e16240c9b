"""The typed attempt record: its committed JSON Schema, and byte-exact JSON round trips."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from callproof.errors import RecordError
from callproof.outcomes import Outcome
from callproof.probe.config import load_config
from callproof.probe.runner import RunOptions, run_probe
from callproof.record import AttemptRecord, RouteAttemptRecord, schema_json
from tests.probe.conftest import MakeConfig
from tests.probe.synthetic import record as synthetic_record
from tests.record_schema import checking_records

SCHEMA_PATH = Path(__file__).parents[2] / "docs" / "attempt.schema.json"
FAULTS = (
    '[[rules]]\nmodel = "amazon.nova-pro-v1:0"\nfault = "hang_no_events"\nprobability = 0.4\n'
    '[[rules]]\nmodel = "moonshotai/kimi-k2.5"\nfault = "http_error:429"\nprobability = 0.4\n'
)


def test_the_committed_schema_is_the_generated_one() -> None:
    committed = SCHEMA_PATH.read_text(encoding="utf-8")
    assert committed == schema_json(), (
        "docs/attempt.schema.json is stale: python -m callproof.record > docs/attempt.schema.json"
    )
    jsonschema.Draft202012Validator.check_schema(json.loads(committed))


async def test_a_run_reads_back_byte_for_byte_and_follows_the_schema(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    config = load_config(make_config(n=3, first_event=0.5, faults=FAULTS))
    out = tmp_path / "run"
    options = RunOptions(
        out=out,
        n=3,
        targets=["nova", "mistral", "or-kimi"],
        routes=["pair"],
        scenarios=["tool-result", "parallel-tools", "multi-step"],
        concurrency=4,
        seed=11,
        capture_failures=True,
    )
    await run_probe(config, options)
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) == 4 * 3 * 3
    outcomes = set()
    for line in lines:
        record = AttemptRecord.from_line(line)
        assert record.to_line() == line
        validator.validate(json.loads(line))
        outcomes.add(record.outcome)
        for attempt in record.route_attempts:
            assert RouteAttemptRecord.from_json(attempt.to_json()) == attempt
    assert Outcome.OK in outcomes
    assert len(outcomes) > 1, outcomes  # failures were written too


def test_unknown_keys_stay_in_place_after_the_known_ones() -> None:
    data = {**synthetic_record("t", 1), "front": "openai", "served_by": "t"}
    record = AttemptRecord.from_json(data)
    assert record.extra == {"front": "openai", "served_by": "t"}
    assert json.dumps(record.to_json()) == json.dumps(data)


def test_a_plain_targets_key_order_is_kept() -> None:
    # a plain target's records have always written route_attempts before requests
    data = synthetic_record("t", 1)
    data = {k: data[k] for k in data if k != "requests"}
    data["requests"] = 1
    data = {**{k: v for k, v in data.items() if k not in ("started_at", "capture")},
            "started_at": data["started_at"], "capture": data["capture"]}  # fmt: skip
    line = json.dumps(data, ensure_ascii=False) + "\n"
    assert AttemptRecord.from_line(line).to_line() == line


def test_missing_keys_take_their_defaults() -> None:
    record = AttemptRecord.from_json({"outcome": "stall_no_events", "target": "t"})
    assert record.passed is False
    assert record.requests == 1
    assert record.route_attempts == ()
    assert record.timings.total_s is None


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"target": "t"}, "outcome None"),
        ({"outcome": "fine"}, "'fine'"),
        ([1], "a JSON list, not a record"),
    ],
)
def test_what_is_not_a_record_raises_record_error(data: object, match: str) -> None:
    with pytest.raises(RecordError, match=match):
        AttemptRecord.from_json(data)  # type: ignore[arg-type]


def test_a_torn_line_raises_record_error() -> None:
    with pytest.raises(RecordError, match="not JSON"):
        AttemptRecord.from_line('{"outcome": "ok", "te')


def test_the_suite_wide_check_catches_a_record_off_the_schema() -> None:
    # tests/conftest.py validates every record the suite writes through this wrapper
    with checking_records() as problems:
        AttemptRecord(outcome="bogus", passed=True).to_json()  # type: ignore[arg-type]
        AttemptRecord(outcome=Outcome.OK, passed=True).to_json()
    assert len(problems) == 1
    assert "'bogus'" in problems[0]
