"""The gateway's evidence: every call appended to a run directory in the probe's record schema.

The directory holds ``run.json`` (targets, routes and the fronts as scenarios, endpoint URLs
with credentials removed) and ``results.jsonl``, one record per call as ``callproof run`` writes
them (``outcome``, ``passed``, ``stop_reason``, ``usage``, ``timings``, ``error``,
``requests``, ``route_attempts`` ...) plus the gateway's own fields: ``front``,
``requested_model``, ``served_by`` and ``committed``. ``callproof report DIR`` renders it.

The record's ``target`` is what served the id (``route:NAME`` or a target), its ``scenario``
the front operation (``serve:converse-stream``, ``serve:chat``, ``serve:responses-stream`` ...).
No request header is recorded, so no client credential can reach the log.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callproof import redact
from callproof.attempt import attempt_from
from callproof.errors import AllAttemptsFailed, CallError
from callproof.probe.config import Config
from callproof.probe.rundir import RESULTS, Unit, environment, now_utc, target_meta, write_json
from callproof.probe.store import data_dir
from callproof.record import RouteAttemptRecord
from callproof.resilience.routes import final_error

if TYPE_CHECKING:
    from callproof.gateway.core import GatewayCall

__all__ = ["FRONTS", "EvidenceLog", "default_evidence_dir"]

#: The front operations, as the records' ``scenario`` names them (without ``serve:``).
FRONTS: dict[str, str] = {
    "converse": "Bedrock Converse through the gateway",
    "converse-stream": "Bedrock ConverseStream through the gateway",
    "chat": "OpenAI chat completions through the gateway",
    "chat-stream": "OpenAI chat completions (streamed) through the gateway",
    "responses": "OpenAI Responses through the gateway",
    "responses-stream": "OpenAI Responses (streamed) through the gateway",
}


def default_evidence_dir() -> Path:
    """``<data dir>/serve/<UTC stamp>`` (the data dir is ``$CALLPROOF_DATA_DIR`` or the
    platform's user data directory)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return data_dir() / "serve" / stamp


class EvidenceLog:
    """Appends call records to ``run_dir/results.jsonl`` (thread-safe, flushed per call)."""

    def __init__(self, run_dir: Path, config: Config, *, argv: list[str] | None = None) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = uuid.uuid4().hex[:12]
        self.seq = 0
        self._lock = threading.Lock()
        self._fh = (run_dir / RESULTS).open("a", encoding="utf-8")
        units = [
            Unit(
                name=f"route:{name}",
                route=route,
                members=tuple(config.targets[t] for t in route.targets),
            )
            for name, route in config.routes.items()
        ]
        units += [Unit(name=name, target=t) for name, t in config.targets.items()]
        self.meta: dict[str, Any] = {
            "run_id": self.run_id,
            "kind": "serve",
            "started_at": now_utc(),
            "finished_at": None,
            "interrupted": False,
            "argv": argv or [],
            "config": str(config.path) if config.path else None,
            "targets": [target_meta(u) for u in units],
            "scenarios": [
                {"name": f"serve:{k}", "description": v, "builtin": False}
                for k, v in FRONTS.items()
            ],
            "environment": environment(None),
        }
        write_json(run_dir / "run.json", self.meta)

    def append(self, call: GatewayCall, error: BaseException | None) -> None:
        """One record for ``call`` (its response, or the error it ended with)."""
        record = self.record(call, error)
        with self._lock:
            self.seq += 1
            record["seq"] = self.seq
            line = redact.scrub(json.dumps(record, ensure_ascii=False, default=str)) + "\n"
            self._fh.write(line)
            self._fh.flush()

    def record(self, call: GatewayCall, error: BaseException | None) -> dict[str, Any]:
        """The record of ``call`` (without ``seq``)."""
        route_attempts: list[dict[str, Any]]
        committed = call.committed
        if isinstance(error, AllAttemptsFailed):
            last = final_error(error)
            route_attempts = list(getattr(error, "attempts", []))
            result: Any = last
        elif isinstance(error, CallError):
            result = error
            route_attempts = call.route_attempts
        elif call.response is not None:
            result = call.response
            route_attempts = list(call.response.attempts)
        else:  # closed by the client before an answer
            result = CallError("the client closed the call before it ended")
            route_attempts = call.route_attempts
        attempt = attempt_from(result, None)
        target = call.winner
        extra: dict[str, Any] = {
            "front": call.front,
            "requested_model": call.requested,
            "served_by": call.served_by,
            "buffered": call.buffered,
            "committed": committed,
            "gateway_ms": call.elapsed_ms(),
        }
        scale = getattr(call.gateway, "scale", None)
        if scale is not None:  # the measured order in force (callproof.telemetry.gateway)
            extra.update(scale.evidence_fields(call))
        started_at = (
            datetime.fromtimestamp(call.started_at, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        routed = tuple(RouteAttemptRecord.from_json(a) for a in route_attempts)
        return attempt.record(
            run_id=self.run_id,
            target=call.resolved.label,
            scenario=f"serve:{call.front}",
            attempt=1,
            api=target.api if target else None,
            model=target.model if target else None,
            provider=target.provider if target else None,
            requests=sum(1 for a in routed if a.sent),
            route_attempts=routed,
            started_at=started_at,
            capture=None,
            extra=extra,
        ).to_json()

    def close(self) -> None:
        with self._lock:
            self.meta["finished_at"] = now_utc()
            write_json(self.run_dir / "run.json", self.meta)
            self._fh.close()
