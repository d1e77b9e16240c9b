"""Synthetic results records (contract 5) and run directories for the stats/report/store tests."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

SEED_TEXTS = [
    "Tokyo's temperature is: 22°C",
    "It's 22°C in Tokyo right now.",
    "Currently Tokyo is at 22 degrees.",
]

#: The seed's Kimi run: attempts 1, 2, 3 and 5 hung.
SEED_FAILS = frozenset({1, 2, 3, 5})


def record(
    target: str,
    attempt: int,
    *,
    seq: int | None = None,
    outcome: str = "ok",
    scenario: str = "tool-result",
    run_id: str = "run-1",
    api: str | None = "bedrock-converse-stream",
    model: str | None = "moonshotai.kimi-k2.5",
    total_s: float = 0.5,
    first_event_s: float = 0.2,
    route_attempts: Sequence[dict[str, Any]] = (),
    capture: str | None = None,
) -> dict[str, Any]:
    """One results record as the runner writes it."""
    ok = outcome == "ok"
    return {
        "run_id": run_id,
        "seq": seq if seq is not None else attempt,
        "target": target,
        "scenario": scenario,
        "attempt": attempt,
        "api": api,
        "model": model,
        "provider": None,
        "outcome": outcome,
        "passed": ok,
        "detail": "" if ok else "headers, then no stream event within 2.0 s",
        "stop_reason": "end_turn" if ok else None,
        "raw_stop_reason": "end_turn" if ok else None,
        "text": SEED_TEXTS[attempt % len(SEED_TEXTS)] if ok else "",
        "thinking": "",
        "tool_calls": [],
        "usage": {"input_tokens": 60, "output_tokens": 12} if ok else None,
        "timings": {
            "headers_s": 0.05,
            "first_event_s": first_event_s if ok else None,
            "first_content_s": first_event_s if ok else None,
            "total_s": total_s,
            "max_gap_s": 0.05 if ok else None,
        },
        "error": None
        if ok
        else {"kind": "stall", "type": "StallNoEvents", "message": "no event", "status": None},
        "request_id": f"req-{target}-{attempt}",
        "requests": max(1, len(route_attempts)),
        "route_attempts": list(route_attempts),
        "started_at": "2026-02-10T10:00:00+00:00",
        "capture": capture,
    }


def seed_records(run_id: str = "run-1", n: int = 10) -> Iterator[dict[str, Any]]:
    """The seed's matrix: Kimi on Bedrock 6/10 (stall_no_events), the others 10/10."""
    seq = 0
    matrix = [
        ("bedrock-kimi-k2.5", "bedrock-converse-stream", "moonshotai.kimi-k2.5", SEED_FAILS),
        (
            "bedrock-mistral-large-3",
            "bedrock-converse-stream",
            "mistral.mistral-large-3-675b-instruct",
            frozenset(),
        ),
        ("openrouter-kimi-k2.5", "openai-chat", "moonshotai/kimi-k2.5", frozenset()),
    ]
    for target, api, model, fails in matrix:
        for attempt in range(1, n + 1):
            seq += 1
            yield record(
                target,
                attempt,
                seq=seq,
                run_id=run_id,
                api=api,
                model=model,
                outcome="stall_no_events" if attempt in fails else "ok",
                total_s=2.0 if attempt in fails else 0.3 + attempt / 100,
                first_event_s=0.1 + attempt / 100,
            )


def route_records(run_id: str = "run-1", n: int = 10, start_seq: int = 100) -> list[dict[str, Any]]:
    """route:kimi: every third call falls back from Bedrock to OpenRouter."""
    out = []
    for attempt in range(1, n + 1):
        tried = [{"target": "bedrock-kimi-k2.5", "attempt": 1, "outcome": "ok", "timings": {}}]
        if attempt % 3 == 0:
            tried[0]["outcome"] = "stall_no_events"
            tried.append({"target": "openrouter-kimi-k2.5", "attempt": 2, "outcome": "ok"})
        out.append(
            record(
                "route:kimi",
                attempt,
                seq=start_seq + attempt,
                run_id=run_id,
                api=None,
                model=None,
                route_attempts=tried,
                total_s=0.4 if attempt % 3 else 2.4,
            )
        )
    return out


def seed_meta(run_id: str = "run-1") -> dict[str, Any]:
    """run.json as the runner writes it (the parts reports read)."""
    return {
        "run_id": run_id,
        "started_at": "2026-02-10T10:00:00+00:00",
        "finished_at": "2026-02-10T10:00:05+00:00",
        "argv": ["callproof", "run", "-n", "10"],
        "n": 10,
        "config": None,
        "targets": [
            {
                "name": "bedrock-kimi-k2.5",
                "api": "bedrock-converse-stream",
                "model": "moonshotai.kimi-k2.5",
                "provider": None,
                "endpoint": "http://127.0.0.1:40000",
                "timeouts": {"connect": 1.0, "first_event": 2.0, "idle": 2.0, "deadline": 10.0},
            },
            {
                "name": "openrouter-kimi-k2.5",
                "api": "openai-chat",
                "model": "moonshotai/kimi-k2.5",
                "provider": None,
                "endpoint": "http://127.0.0.1:40000/v1",
                "timeouts": {"connect": 1.0, "first_event": 2.0, "idle": 2.0, "deadline": 10.0},
            },
            {
                "name": "route:kimi",
                "route": "kimi",
                "members": [{"name": "bedrock-kimi-k2.5"}, {"name": "openrouter-kimi-k2.5"}],
            },
        ],
        "scenarios": [
            {
                "name": "tool-result",
                "description": "A tool result, then the model's answer (the seed's request).",
                "requests": {
                    "bedrock-kimi-k2.5": {
                        "messages": [
                            {"role": "user", "content": [{"text": "Weather for Tokyo?"}]},
                        ],
                        "inferenceConfig": {"maxTokens": 100},
                    }
                },
            }
        ],
        "environment": {"callproof": "0.1.0", "python": "3.11.7"},
    }


def write_run(run_dir: Path, records: Sequence[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """A run directory with results.jsonl and run.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "results.jsonl").open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    (run_dir / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    return run_dir
