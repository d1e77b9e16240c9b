"""OpenTelemetry spans in the GenAI semantic conventions: one per call, one child per attempt.

Opt-in. Spans are emitted when the OpenTelemetry SDK is installed (``pip install
'callproof[otel]'``) and the standard variables say where to export (``OTEL_TRACES_EXPORTER``,
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``OTEL_SDK_DISABLED
=true`` turns it off), or when a program calls :func:`enable_tracing` with its own tracer
provider. Otherwise nothing is imported and nothing is recorded.

One call is one span named ``{operation} {model}`` (``chat moonshotai.kimi-k2.5``), kind
CLIENT, with ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.response.model``, ``gen_ai.usage.input_tokens``/``output_tokens``,
``gen_ai.response.finish_reasons`` and ``error.type``; plus ``callproof.route``,
``callproof.served_by``, ``callproof.outcome`` and ``callproof.attempts``. Each attempt is a
child span ``attempt {n} {target}`` with ``callproof.attempt.outcome``,
``callproof.attempt.time_to_first_event_s`` (``None``: no event came), ``callproof.attempt.
abandoned_reason`` (lost hedge race, call closed, circuit open ...), ``callproof.attempt.hedge``
and the breaker state it met. Spans are built when the call ended, with the times the router
recorded, so tracing adds nothing to a call's latency.

Prompt and answer content is off. ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``
(the GenAI instrumentations' variable) or ``enable_tracing(capture_content=True)`` adds
``gen_ai.input.messages`` and ``gen_ai.output.messages`` to the call span.

The library client emits the same spans for a call made directly on
:class:`callproof.client.Client` (:func:`client_trace`); inside a routed call (the gateway, which
emits the route's span itself) it stays quiet (:func:`routed`).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from callproof import redact
from callproof.outcomes import Outcome
from callproof.telemetry.summary import AttemptSummary, CallSummary, provider_name

if TYPE_CHECKING:
    from callproof.conversation import Conversation
    from callproof.events import Response
    from callproof.resilience.router import Router, RouteStream
    from callproof.targets import Target

__all__ = [
    "CAPTURE_ENV",
    "ClientTrace",
    "RouteTrace",
    "Tracing",
    "client_trace",
    "conversation_json",
    "current_tracing",
    "disable_tracing",
    "enable_tracing",
    "mark_routed",
    "route_trace",
    "routed",
    "tracing_from_env",
]

log = logging.getLogger("callproof.telemetry")

#: The variable that turns on prompt and answer content in spans.
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_EXPORT_ENV = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)
_ROUTED: contextvars.ContextVar[bool] = contextvars.ContextVar("callproof_routed", default=False)
_UNSET: Any = object()
_current: Any = _UNSET


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class Tracing:
    """Emits spans for finished calls through ``tracer_provider`` (default: the global one)."""

    def __init__(self, tracer_provider: Any = None, *, capture_content: bool | None = None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        from opentelemetry import trace

        try:
            ours = version("callproof")
        except PackageNotFoundError:
            ours = None
        self._trace = trace
        self.tracer = trace.get_tracer("callproof", ours, tracer_provider=tracer_provider)
        self.capture_content = (
            _truthy(os.environ.get(CAPTURE_ENV)) if capture_content is None else capture_content
        )

    def emit(self, call: CallSummary) -> None:
        """The call's span and a child span per attempt, with the recorded times."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        start = int(call.started_at * 1e9)
        end = start + int(call.duration_s * 1e9)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": call.operation,
            "gen_ai.provider.name": call.provider,
            "gen_ai.request.model": call.request_model,
            "callproof.route": call.route,
            "callproof.front": call.front,
            "callproof.outcome": call.outcome,
            "callproof.attempts": sum(1 for a in call.attempts if a.sent),
        }
        optional = {
            "gen_ai.response.model": call.response_model,
            "gen_ai.usage.input_tokens": call.input_tokens,
            "gen_ai.usage.output_tokens": call.output_tokens,
            "callproof.served_by": call.served_by,
            "callproof.time_to_first_chunk_s": call.time_to_first_chunk_s,
            "error.type": call.error_type,
        }
        attributes.update({k: v for k, v in optional.items() if v is not None})
        if call.finish_reason:
            attributes["gen_ai.response.finish_reasons"] = [call.finish_reason]
        if self.capture_content:
            if call.input_messages is not None:
                # Content leaves the process: no secret the process knows goes with it.
                attributes["gen_ai.input.messages"] = redact.scrub(json.dumps(call.input_messages))
            if call.output_text is not None:
                attributes["gen_ai.output.messages"] = redact.scrub(
                    json.dumps(
                        [
                            {
                                "role": "assistant",
                                "parts": [{"type": "text", "content": call.output_text}],
                            }
                        ]
                    )
                )
        span = self.tracer.start_span(
            f"{call.operation} {call.request_model}",
            kind=SpanKind.CLIENT,
            start_time=start,
            attributes=attributes,
        )
        context = self._trace.set_span_in_context(span)
        for attempt in call.attempts:
            self._attempt(attempt, call, start, context)
        if call.outcome != "ok":
            span.set_status(Status(StatusCode.ERROR, call.outcome))
        span.end(end_time=end)

    def _attempt(self, a: AttemptSummary, call: CallSummary, start: int, context: Any) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        attributes: dict[str, Any] = {
            "gen_ai.operation.name": call.operation,
            "gen_ai.provider.name": a.provider,
            "callproof.attempt.number": a.number,
            "callproof.attempt.target": a.target,
            "callproof.attempt.outcome": a.outcome,
            "callproof.attempt.hedge": a.hedge,
            "callproof.attempt.sent": a.sent,
        }
        optional = {
            "gen_ai.request.model": a.model,
            "callproof.attempt.time_to_first_event_s": a.first_event_s,
            "callproof.attempt.abandoned_reason": a.abandoned_reason,
            "callproof.attempt.breaker": a.breaker,
            "error.type": a.error_type,
        }
        attributes.update({k: v for k, v in optional.items() if v is not None})
        begin = start + int(a.started_s * 1e9)
        finish = start + int((a.ended_s if a.ended_s is not None else a.started_s) * 1e9)
        child = self.tracer.start_span(
            f"attempt {a.number} {a.target}",
            context=context,
            kind=SpanKind.CLIENT,
            start_time=begin,
            attributes=attributes,
        )
        if a.outcome not in ("ok", "abandoned"):
            child.set_status(Status(StatusCode.ERROR, a.outcome))
        child.end(end_time=max(begin, finish))


def conversation_json(conversation: Conversation) -> list[dict[str, Any]]:
    """The GenAI conventions' ``gen_ai.input.messages`` shape: role and parts (text, tool
    calls and tool results; images by media type only)."""
    from callproof.conversation import ImagePart, TextPart, ThinkingPart, ToolCall, ToolResult

    out: list[dict[str, Any]] = []
    if conversation.system:
        out.append({"role": "system", "parts": [{"type": "text", "content": conversation.system}]})
    for message in conversation.messages:
        parts: list[dict[str, Any]] = []
        for part in message.content:
            match part:
                case TextPart(text=text):
                    parts.append({"type": "text", "content": text})
                case ThinkingPart(text=text):
                    parts.append({"type": "reasoning", "content": text})
                case ToolCall():
                    parts.append(
                        {
                            "type": "tool_call",
                            "id": part.id,
                            "name": part.name,
                            "arguments": part.arguments
                            if part.arguments is not None
                            else part.arguments_raw,
                        }
                    )
                case ToolResult(tool_call_id=cid, content=content):
                    parts.append({"type": "tool_call_response", "id": cid, "response": content})
                case ImagePart(media_type=media):
                    parts.append({"type": "blob", "mime_type": media})
        out.append({"role": message.role, "parts": parts})
    return out


def tracing_from_env() -> Tracing | None:
    """A :class:`Tracing` when the SDK is installed and the ``OTEL_*`` variables ask for
    export, else ``None``. Uses an SDK tracer provider already set globally; otherwise sets
    one with the exporter named by ``OTEL_TRACES_EXPORTER`` (``otlp``, the default, or
    ``console``) in a batch processor."""
    if _truthy(os.environ.get("OTEL_SDK_DISABLED")):
        return None
    if not any(os.environ.get(name) for name in _EXPORT_ENV):
        return None
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning(
            "OTEL_* asks for traces but opentelemetry-sdk is missing: pip install 'callproof[otel]'"
        )
        return None
    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        return Tracing(existing)
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip().lower()
    exporter: Any
    if kind == "console":
        exporter = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError:
            log.warning(
                "OTEL_TRACES_EXPORTER=%s needs opentelemetry-exporter-otlp-proto-http: "
                "pip install 'callproof[otel]'",
                kind,
            )
            return None
        exporter = OTLPSpanExporter()
    defaults = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "callproof"}
    provider = TracerProvider(resource=Resource.create(defaults))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return Tracing(provider)


def current_tracing() -> Tracing | None:
    """The process's tracing: set by :func:`enable_tracing`, else from the environment
    (decided once)."""
    global _current
    if _current is _UNSET:
        _current = tracing_from_env()
    found: Tracing | None = _current
    return found


def enable_tracing(tracer_provider: Any = None, *, capture_content: bool | None = None) -> Tracing:
    """Turn spans on for this process (the library client's and the gateway's)."""
    global _current
    _current = Tracing(tracer_provider, capture_content=capture_content)
    return _current  # type: ignore[no-any-return]


def disable_tracing() -> None:
    """Turn spans off for this process (until :func:`enable_tracing`)."""
    global _current
    _current = None


@contextlib.contextmanager
def routed() -> Iterator[None]:
    """Inside: the client's own spans stay quiet (the route's span covers its attempts).
    Tasks started inside inherit it, as the router's attempt tasks do."""
    token = _ROUTED.set(True)
    try:
        yield
    finally:
        _ROUTED.reset(token)


def mark_routed() -> None:
    """Mark the current context (a gateway request's task) as a routed call: the client's
    own spans stay quiet in it and in the attempt tasks it starts."""
    _ROUTED.set(True)


class ClientTrace:
    """The span of one direct client call, emitted when the stream ends."""

    def __init__(self, tracing: Tracing, target: Target, conversation: Conversation) -> None:
        self.tracing = tracing
        self.target = target
        self.conversation = conversation
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self._done = False

    def end(self, response: Response | None, error: BaseException | None) -> None:
        """Emit the span (once): ``error`` is what ended the call, if anything did."""
        if self._done:
            return
        self._done = True
        try:
            self._emit(response, error)
        except Exception:  # telemetry must never break a call
            log.debug("could not emit a span", exc_info=True)

    def _emit(self, response: Response | None, error: BaseException | None) -> None:
        from callproof.errors import CallError

        took = time.monotonic() - self._t0
        if isinstance(error, CallError):
            outcome, kind = error.outcome, type(error).__name__
            response = response or error.response
        elif error is not None:
            outcome, kind = "abandoned", type(error).__name__
        else:
            outcome, kind = "ok", None
        target = self.target
        first = response.timings.first_event_s if response is not None else None
        attempt = AttemptSummary(
            number=1,
            target=target.name,
            model=target.model,
            provider=provider_name(target),
            outcome=outcome,
            hedge=False,
            sent=True,
            started_s=0.0,
            ended_s=took,
            first_event_s=first,
            abandoned_reason="closed by the caller" if outcome == "abandoned" else None,
            breaker=None,
            error_type=kind,
        )
        usage = response.usage if response is not None else None
        capture = self.tracing.capture_content
        call = CallSummary(
            operation="chat",
            request_model=target.model,
            response_model=(response.model if response is not None else None) or target.model,
            provider=provider_name(target),
            route=target.name,
            started_at=self.started_at,
            duration_s=took,
            time_to_first_chunk_s=first,
            input_tokens=usage.input_tokens if usage is not None else None,
            output_tokens=usage.output_tokens if usage is not None else None,
            outcome=outcome,
            error_type=kind,
            served_by=target.name if error is None else None,
            finish_reason=(
                str(response.stop_reason) if response is not None and response.stop_reason else None
            ),
            attempts=(attempt,),
            input_messages=conversation_json(self.conversation) if capture else None,
            output_text=response.text if capture and response is not None else None,
        )
        self.tracing.emit(call)


def client_trace(target: Target, conversation: Conversation) -> ClientTrace | None:
    """The hook :meth:`callproof.client.Client.stream` calls: a :class:`ClientTrace` when
    tracing is on and the call is not part of a routed call, else ``None``."""
    if _ROUTED.get():
        return None
    tracing = current_tracing()
    return ClientTrace(tracing, target, conversation) if tracing is not None else None


class RouteTrace:
    """The spans of one routed call made with the library's :class:`~callproof.resilience.
    Router` (the gateway emits its own): made when the call starts, emitted when it closes.
    While it is open, the client's per-attempt spans stay quiet."""

    def __init__(self, tracing: Tracing, router: Router, conversation: Conversation) -> None:
        self.tracing = tracing
        self.router = router
        self.conversation = conversation
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self._token: contextvars.Token[bool] | None = _ROUTED.set(True)
        self._done = False

    def end(self, stream: RouteStream) -> None:
        """Emit the spans (once), from the stream's records."""
        if self._token is not None:
            with contextlib.suppress(ValueError):  # closed from another context
                _ROUTED.reset(self._token)
            self._token = None
        if self._done:
            return
        self._done = True
        try:
            typed = stream.records
            response = stream.response
            if response is not None:
                served = next((r.target for r in typed if r.outcome is Outcome.OK), None)
                outcome, kind = "ok", None
            else:
                served = None
                last = next((r for r in reversed(typed) if r.sent), None)
                outcome = str(last.outcome) if last is not None else "abandoned"
                kind = last.error.kind if last is not None and last.error is not None else None
            capture = self.tracing.capture_content
            call = CallSummary.of_response(
                response,
                request_model=self.router.targets[0].model,
                route=self.router.name,
                targets={t.name: t for t in self.router.targets},
                started_at=self.started_at,
                duration_s=time.monotonic() - self._t0,
                outcome=outcome,
                error_type=kind,
                served_by=served,
                records=typed,
            )
            if capture:
                from dataclasses import replace

                call = replace(
                    call,
                    input_messages=conversation_json(self.conversation),
                    output_text=response.text if response is not None else None,
                )
            self.tracing.emit(call)
        except Exception:  # telemetry must never break a call
            log.debug("could not emit a route span", exc_info=True)


def route_trace(router: Router, conversation: Conversation) -> RouteTrace | None:
    """The hook a :class:`~callproof.resilience.router.RouteStream` calls when it starts: a
    :class:`RouteTrace` when tracing is on and no outer routed call (the gateway) covers it."""
    if _ROUTED.get():
        return None
    tracing = current_tracing()
    return RouteTrace(tracing, router, conversation) if tracing is not None else None
