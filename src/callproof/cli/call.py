"""``callproof call``: one request, fully explained.

With no ``--endpoint`` (and no ``--target``) the embedded emulator is started with the seed
preset and called, so the command works offline. ``--json`` prints one object: outcome,
stop_reason, raw_stop_reason, text, thinking, tool_calls, usage, timings, error, request_id,
first_content_s, served_by (the target that answered) and attempts (one per request sent; a
route's attempts in order). Exit code 0 when the outcome is ``ok``, 1 for any other outcome, 2
for a usage or configuration error. The call itself is :func:`callproof.single_call.make_call`'s;
this module parses flags and prints.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from callproof.dialects import API_NAMES
from callproof.errors import ConfigError
from callproof.events import Event, Response
from callproof.record import RouteAttemptRecord
from callproof.redact import scrub, scrub_pieces
from callproof.scenarios import BUILTIN

if TYPE_CHECKING:
    # annotations only: the attempt module brings the record schema (jsonschema), and
    # `callproof --help` loads every command module
    from callproof.attempt import Attempt

__all__ = [
    "ConfigUsageError",
    "attempt_json",
    "call",
    "explain_attempt",
]


class ConfigUsageError(click.ClickException):
    """A configuration or usage error: message on stderr, exit code 2, no traceback."""

    exit_code = 2


def attempt_json(attempt: Attempt, served_by: str | None = None) -> dict[str, Any]:
    """The ``--json`` object of ``call`` and ``replay`` (exactly these keys), from the
    attempt's :class:`~callproof.record.AttemptRecord`."""
    record = attempt.record()
    timings = record.timings.to_json()
    attempts: list[dict[str, Any]] = (
        [_attempt_summary(a) for a in record.route_attempts]
        if record.route_attempts
        else [
            {
                "target": served_by,
                "outcome": str(record.outcome),
                "request_id": record.request_id,
                "first_event_s": record.timings.first_event_s,
                "total_s": record.timings.total_s,
                "served": attempt.passed,
            }
        ]
    )
    if record.route_attempts:
        served = [a["target"] for a in attempts if a["served"]]
        served_by = served[-1] if served else None
    elif not attempt.passed:
        served_by = None
    return {
        "outcome": str(record.outcome),
        "stop_reason": record.stop_reason,
        "raw_stop_reason": record.raw_stop_reason,
        "text": record.text,
        "thinking": record.thinking,
        "tool_calls": [c.to_json() for c in record.tool_calls],
        "usage": record.usage,
        "timings": timings,
        "error": record.error.to_json() if record.error is not None else None,
        "request_id": record.request_id,
        "first_content_s": record.timings.first_content_s,
        "served_by": served_by,
        "attempts": attempts,
    }


def _attempt_summary(a: RouteAttemptRecord) -> dict[str, Any]:
    return {
        "target": a.target,
        "outcome": str(a.outcome),
        "request_id": a.request_id,
        "first_event_s": a.timings.first_event_s if a.timings is not None else None,
        "total_s": a.timings.total_s if a.timings is not None else None,
        "served": a.served,
    }


def _headers(pairs: tuple[str, ...], fault: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"--header wants NAME:VALUE, got {pair!r}")
        out[name.strip()] = value.strip()
    if fault:
        out["x-callproof-fault"] = fault
    return out


def _positive(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise click.BadParameter("must be a positive number of seconds")
    return value


@click.command("call")
@click.option(
    "--api",
    type=click.Choice(API_NAMES),
    envvar="CALLPROOF_API",
    show_envvar=True,
    help="Wire API.",
)
@click.option(
    "--model",
    "model",
    envvar="CALLPROOF_MODEL",
    show_envvar=True,
    help="Model id (e.g. moonshotai.kimi-k2.5).",
)
@click.option(
    "--endpoint",
    envvar="CALLPROOF_ENDPOINT",
    show_envvar=True,
    help="Base URL (ends in /v1 for OpenAI-compatible APIs). Default: the embedded emulator.",
)
@click.option(
    "--region",
    envvar="CALLPROOF_REGION",
    show_envvar=True,
    help="AWS region for SigV4 (else AWS_REGION).",
)
@click.option(
    "--api-key-env",
    envvar="CALLPROOF_API_KEY_ENV",
    show_envvar=True,
    help="Environment variable holding the API key (bearer; or a Bedrock API key).",
)
@click.option(
    "--auth",
    type=click.Choice(["auto", "sigv4", "bedrock-api-key", "bearer", "none"]),
    default="auto",
    show_default=True,
    help="auto: for Bedrock a Bedrock API key when --api-key-env is given (or "
    "AWS_BEARER_TOKEN_BEDROCK is set and the endpoint is HTTPS), else SigV4 (unsigned for a "
    "loopback endpoint when no AWS credentials exist); for OpenAI-compatible APIs bearer when "
    "--api-key-env is given, else none.",
)
@click.option("--profile", envvar="AWS_PROFILE", show_envvar=True, help="AWS profile for SigV4.")
@click.option(
    "--scenario",
    type=click.Choice(sorted(BUILTIN)),
    default="tool-result",
    show_default=True,
    help="tool-result: the seed's conversation after a tool result; tool-call: the first turn.",
)
@click.option("--target", "target_name", help="A target from the configuration file.")
@click.option("--route", "route_name", help="A route from the configuration file.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="CALLPROOF_CONFIG",
    show_envvar=True,
    help="Configuration file (default ./callproof.toml).",
)
@click.option(
    "--first-event-timeout",
    envvar="CALLPROOF_FIRST_EVENT_TIMEOUT",
    show_envvar=True,
    type=float,
    callback=_positive,
    help="Seconds to the first decoded event.",
)
@click.option(
    "--idle-timeout",
    envvar="CALLPROOF_IDLE_TIMEOUT",
    show_envvar=True,
    type=float,
    callback=_positive,
    help="Longest gap between events, seconds.",
)
@click.option("--deadline", type=float, callback=_positive, help="Whole-call deadline, seconds.")
@click.option(
    "--capture",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write a raw capture (JSONL, credentials redacted) for `callproof replay`.",
)
@click.option(
    "--ca-bundle",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    envvar="CALLPROOF_CA_BUNDLE",
    show_envvar=True,
    help="CA bundle to verify the endpoint's TLS certificate (e.g. `callproof emulate --tls`).",
)
@click.option("--insecure", is_flag=True, help="Do not verify the endpoint's TLS certificate.")
@click.option("--fault", help="Force an emulator fault on this request (x-callproof-fault).")
@click.option("--header", "header_pairs", multiple=True, help="Extra request header NAME:VALUE.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("-v", "--verbose", is_flag=True, help="Also print every decoded event.")
def call(
    api: str | None,
    model: str | None,
    endpoint: str | None,
    region: str | None,
    api_key_env: str | None,
    auth: str,
    profile: str | None,
    scenario: str,
    target_name: str | None,
    route_name: str | None,
    config_path: Path | None,
    first_event_timeout: float | None,
    idle_timeout: float | None,
    deadline: float | None,
    capture: Path | None,
    ca_bundle: Path | None,
    insecure: bool,
    fault: str | None,
    header_pairs: tuple[str, ...],
    as_json: bool,
    verbose: bool,
) -> None:
    """Send one request and explain exactly what came back."""
    # lazy, as in every command: `callproof --help` loads each command module, and the client,
    # the emulator and the configuration layer take over a second to import
    from callproof.single_call import CallSpec, make_call

    with tempfile.TemporaryDirectory(prefix="callproof-call-") as tmp:
        # -v shows the raw wire units too: they come from a capture, a temporary one if need be.
        wire_capture = capture
        if verbose and not as_json and capture is None and not route_name:
            wire_capture = Path(tmp) / "call.jsonl"
        spec = CallSpec(
            api=api,
            model=model,
            endpoint=endpoint,
            region=region,
            api_key_env=api_key_env,
            auth=auth,
            profile=profile,
            target_name=target_name,
            route_name=route_name,
            config_path=config_path,
            clocks=(first_event_timeout, idle_timeout, deadline),
            capture=wire_capture,
            verify=False if insecure else (str(ca_bundle) if ca_bundle else None),
        )
        try:
            spec.headers = _headers(header_pairs, fault)
            attempt, label = make_call(spec, BUILTIN[scenario](), keep_events=verbose)
        except ConfigError as exc:
            raise ConfigUsageError(str(exc)) from None
        raw = _raw_lines(wire_capture) if verbose and wire_capture is not None else []
    served_by = None if route_name else (target_name or label.split(" at ")[0])
    if as_json:
        click.echo(json.dumps(attempt_json(attempt, served_by), ensure_ascii=False))
    else:
        explain_attempt(
            attempt, label=label, verbose=verbose, capture=capture, raw=raw, served_by=served_by
        )
    sys.exit(0 if attempt.passed else 1)


#: ``-v`` prints at most this many decoded events and raw wire units (a keep-alive flood
#: holds millions); the capture keeps them all.
VERBOSE_ROWS = 500


def _raw_lines(path: Path, limit: int = VERBOSE_ROWS) -> list[dict[str, Any]]:
    """The first ``limit`` raw units of a capture, read line by line (the file may be large),
    then one ``{"kind": "more", "data": N}`` for the rest."""
    out: list[dict[str, Any]] = []
    more = 0
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if '"type":"raw"' not in line[:20]:
                    continue
                if len(out) >= limit:
                    more += 1
                    continue
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if isinstance(item, dict):
                    out.append(item)
    except OSError:
        return []  # the call failed before the capture was written
    if more:
        out.append({"kind": "more", "data": more})
    return out


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def explain_attempt(
    attempt: Attempt,
    *,
    label: str,
    verbose: bool,
    capture: Path | None = None,
    raw: list[dict[str, Any]] | None = None,
    served_by: str | None = None,
) -> None:
    """A readable account of one attempt (rich), with every event on ``verbose``: which
    target served and every attempt made (a route's in order), success or not."""
    from rich.console import Console  # lazy (see callproof.cli)

    console = Console(highlight=False, soft_wrap=True)
    colour = "green" if attempt.passed else "red"
    console.print(f"[bold]{label}[/bold]")
    console.print(
        f"outcome: [bold {colour}]{attempt.outcome}[/]"
        + (f"  ({attempt.detail})" if attempt.detail else "")
    )
    if attempt.error is not None:
        err = attempt.error
        extra = ", ".join(
            f"{k}={v}"
            for k, v in (("type", err.error_type), ("status", err.status))
            if v is not None
        )
        console.print(
            f"error: [red]{err.kind}[/red] {err.message}" + (f" ({extra})" if extra else "")
        )
    _print_served(console, attempt, served_by)
    resp = attempt.response
    if resp is not None:
        _print_response(console, resp)
        if verbose:
            _print_events(console, resp.events)
        if verbose and raw:
            _print_wire(console, raw)
    if capture is not None:
        console.print(f"capture: {capture}")


def _print_served(console: Any, attempt: Attempt, served_by: str | None) -> None:
    """Which target served, and every attempt made when there were several (or none served)."""
    from rich.markup import escape

    summary = attempt_json(attempt, served_by)
    who = summary["served_by"]
    routed = bool(attempt.record().route_attempts)
    if served_by is not None or routed:
        console.print(
            f"served by: {escape(who)}" if who else "served by: no target (the call failed)"
        )
    if routed or (served_by is not None and not who):
        for i, a in enumerate(summary["attempts"], 1):
            mark = "[green]served[/]" if a["served"] else f"[red]{escape(str(a['outcome']))}[/]"
            rid = f", request id {escape(str(a['request_id']))}" if a["request_id"] else ""
            console.print(
                f"  attempt {i}: {escape(str(a['target'] or '-'))} {mark}"
                f" after {_fmt_s(a['total_s'])}{rid}"
            )


def _print_response(console: Any, resp: Response) -> None:
    """Stop reason, thinking, text, tool calls, usage, ids and timings of a response."""
    from rich.markup import escape

    stop = resp.stop_reason or "none (the stream ended without one)"
    raw_stop = resp.raw_stop_reason
    console.print(
        f"stop reason: {escape(str(stop))}"
        + (f" (raw {escape(raw_stop)})" if raw_stop and raw_stop != resp.stop_reason else "")
    )
    if resp.thinking:
        console.print(f"thinking: [dim]{escape(resp.thinking.strip())}[/dim]")
    console.print("text: " + (json.dumps(resp.text, ensure_ascii=False) if resp.text else "(none)"))
    for tc in resp.tool_calls:
        args = (
            json.dumps(tc.arguments, ensure_ascii=False)
            if tc.arguments is not None
            else json.dumps(tc.arguments_raw, ensure_ascii=False)
        )
        console.print(f"tool call: {escape(tc.name)}({escape(args)})  id={escape(tc.id)}")
    if resp.usage is not None:
        usage = ", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in resp.usage.to_dict().items() if v is not None
        )
        console.print(f"usage: {usage or 'not reported'}")
    if resp.request_id:
        console.print(f"request id: {resp.request_id}")
    if resp.keepalives:
        console.print(f"keep-alive comments: {resp.keepalives}")
    t = resp.timings
    console.print(
        f"timings: headers {_fmt_s(t.headers_s)}, first event {_fmt_s(t.first_event_s)}, "
        f"first content {_fmt_s(t.first_content_s)}, total {_fmt_s(t.total_s)}, "
        f"longest gap {_fmt_s(t.max_gap_s)}"
    )


def _print_events(console: Any, events: list[Event]) -> None:
    """The decoded events (``-v``), at most :data:`VERBOSE_ROWS`, scrubbed."""
    from rich.table import Table

    table = Table("#", "event", title="decoded events")
    for i, event in enumerate(_displayed(events[:VERBOSE_ROWS]), 1):
        table.add_row(str(i), scrub(_event_text(event))[:2000])
    if len(events) > VERBOSE_ROWS:
        table.add_row("...", f"{len(events) - VERBOSE_ROWS} more events not shown")
    console.print(table)


def _print_wire(console: Any, raw: list[dict[str, Any]]) -> None:
    """The raw wire units of the capture (``-v``), scrubbed."""
    from rich.table import Table

    wire = Table("t (s)", "kind", "raw", title="raw wire units (frames, SSE lines)")
    for item in raw:
        if item.get("kind") == "more":
            wire.add_row("...", "", f"{item.get('data')} more raw units not shown")
            continue
        text = _wire_text(str(item.get("kind")), item.get("data"))
        wire.add_row(f"{item.get('t', 0):.3f}", str(item.get("kind")), scrub(text)[:240])
    console.print(wire)


def _wire_text(kind: str, data: Any) -> str:
    """One raw unit as a person reads it: ``eventType {payload}``, ``data: ...``, ``: comment``."""
    frame = data[0] if isinstance(data, list) and data else data
    if isinstance(frame, dict) and isinstance(frame.get("headers"), dict):
        h = frame["headers"]
        name = h.get(":event-type") or h.get(":exception-type") or h.get(":message-type")
        return f"{name} {frame.get('payload')}"
    if isinstance(data, dict) and "data" in data:
        event = data.get("event")
        prefix = f"event: {event} " if event and event != "message" else ""
        return f"{prefix}data: {data['data']}"
    if kind == "comment":
        return f": {data}"
    return json.dumps(data, ensure_ascii=False)


def _displayed(events: list[Event]) -> list[Event]:
    """``events`` with any secret the process knows removed from the streamed pieces, also
    one split across deltas (each row alone would show part of it)."""
    streams: dict[tuple[str, int, str], list[int]] = {}
    for i, event in enumerate(events):
        field = {"text_delta": "text", "thinking_delta": "text", "tool_call_delta": "arguments"}
        name = field.get(event.kind)
        if name is not None:
            streams.setdefault((event.kind, getattr(event, "index", 0), name), []).append(i)
    out = list(events)
    for (_, _, name), where in streams.items():
        texts = [getattr(events[i], name) or "" for i in where]
        for i, new in zip(where, scrub_pieces(texts), strict=True):
            if new != getattr(events[i], name):
                out[i] = replace(events[i], **{name: new})  # type: ignore[arg-type]
    return out


def _event_text(event: Event) -> str:
    """One decoded event as a person reads it (never a Python repr)."""
    fields = {
        k: v
        for k, v in (
            (name, getattr(event, name)) for name in event.__dataclass_fields__ if name != "kind"
        )
        if v is not None and v != ""
    }
    if isinstance(fields.get("redacted"), bytes):
        fields["redacted"] = f"{len(fields['redacted'])} bytes"
    if "usage" in fields and hasattr(fields["usage"], "to_dict"):
        fields["usage"] = fields["usage"].to_dict()
    body = json.dumps(fields, ensure_ascii=False, default=str)
    return f"{event.kind} {body}"
