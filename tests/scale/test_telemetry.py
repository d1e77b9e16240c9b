"""Metrics scraped and parsed with prometheus_client's own parser; spans checked with the
OpenTelemetry SDK's in-memory exporter; both from real routed calls on the emulator."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from callproof.client import Client
from callproof.errors import AllAttemptsFailed, CallError, HTTPStatusError
from callproof.resilience import HedgePolicy, RoutePolicy, Router
from callproof.resilience.routes import final_error
from callproof.scenarios import tool_result
from callproof.targets import Auth, Target
from callproof.telemetry.metrics import Metrics, metrics_route
from callproof.telemetry.summary import CallSummary, provider_name
from callproof.telemetry.tracing import (
    CAPTURE_ENV,
    Tracing,
    disable_tracing,
    enable_tracing,
    routed,
    tracing_from_env,
)

CONV = tool_result().conversation
PROMPT = CONV.messages[0].content[0].text  # type: ignore[union-attr]
SECRET = "sk-test-DO-NOT-LEAK-1234567890"
MakeTarget = Callable[..., Target]


async def _routed_call(router: Router) -> CallSummary:
    started_at, t0 = time.time(), time.monotonic()
    targets = {t.name: t for t in router.targets}
    try:
        resp = await router.complete(CONV)
    except (AllAttemptsFailed, CallError) as failed:
        # a route that ran out of attempts, or a refusal that does not fall over
        err = final_error(failed) if isinstance(failed, AllAttemptsFailed) else failed
        records = getattr(failed, "attempts", None) or (
            err.response.attempts if err.response is not None else []
        )
        return CallSummary.of_response(
            None,
            request_model="my-model",
            route=router.name,
            targets=targets,
            started_at=started_at,
            duration_s=time.monotonic() - t0,
            outcome=err.outcome,
            error_type=type(err).__name__,
            served_by=None,
            records=records,
        )
    served = next(a["target"] for a in resp.attempts if a["outcome"] == "ok")
    return CallSummary.of_response(
        resp,
        request_model="my-model",
        route=router.name,
        targets=targets,
        started_at=started_at,
        duration_s=time.monotonic() - t0,
        outcome="ok",
        error_type=None,
        served_by=served,
        records=resp.attempts,
    )


def _secret_target(make_target: MakeTarget, name: str, fault: str | None = None) -> Target:
    from dataclasses import replace

    base = make_target(name, fault=fault)
    headers = {**base.endpoint.headers, "x-api-key": SECRET}
    return replace(base, endpoint=replace(base.endpoint, headers=headers, auth=Auth()))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    enable_tracing(provider)
    try:
        yield exporter
    finally:
        disable_tracing()
        provider.shutdown()


async def test_metrics_scraped_and_parsed(make_target: MakeTarget) -> None:
    primary = _secret_target(make_target, "bedrock-kimi", fault="http_error:500")
    backup = _secret_target(make_target, "openrouter-kimi")
    async with Client() as client:
        router = Router(
            "kimi",
            [primary, backup],
            client=client,
            policy=RoutePolicy(hedge=HedgePolicy(mode="off")),
        )
        failing = Router(
            "down",
            [_secret_target(make_target, "down-a", fault="http_error:400")],
            client=client,
        )
        metrics = Metrics(routers=lambda: [router, failing])
        metrics.in_flight.labels("converse-stream").inc()
        with routed():  # the route's call is counted once, not per client attempt
            ok = await _routed_call(router)
            bad = await _routed_call(failing)
    metrics.observe(ok)
    metrics.observe(bad)
    app = Starlette(routes=[metrics_route(metrics)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as http:
        scraped = await http.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "gen_ai_client_operation_duration_seconds",
        "gen_ai_client_operation_time_to_first_chunk_seconds",
        "gen_ai_client_token_usage",
        "callproof_attempts",
        "callproof_calls",
        "callproof_hedges",
        "callproof_fallbacks",
        "callproof_breaker_state",
        "callproof_in_flight",
    ):
        assert name in families, sorted(families)

    def samples(family: str, suffix: str = "") -> list[Any]:
        return [s for s in families[family].samples if s.name == family + suffix]

    duration = samples("gen_ai_client_operation_duration_seconds", "_count")
    by_model = {
        (s.labels["gen_ai_provider_name"], s.labels["error_type"]): s.value for s in duration
    }
    assert by_model == {("aws.bedrock", ""): 1.0, ("aws.bedrock", "HTTPStatusError"): 1.0}
    assert {s.labels["gen_ai_request_model"] for s in duration} == {"my-model"}
    assert {s.labels["gen_ai_operation_name"] for s in duration} == {"chat"}
    tokens = samples("gen_ai_client_token_usage", "_count")
    assert {s.labels["gen_ai_token_type"] for s in tokens} == {"input", "output"}
    attempts = {
        (s.labels["target"], s.labels["outcome"]): s.value
        for s in samples("callproof_attempts", "_total")
    }
    assert attempts[("bedrock-kimi", "http_error")] >= 1
    assert attempts[("openrouter-kimi", "ok")] == 1
    calls = {(s.labels["route"], s.labels["result"]) for s in samples("callproof_calls", "_total")}
    assert calls == {("kimi", "ok"), ("down", "http_error")}
    fallbacks = samples("callproof_fallbacks", "_total")
    assert [(s.labels["route"], s.labels["from"], s.labels["to"]) for s in fallbacks] == [
        ("kimi", "bedrock-kimi", "openrouter-kimi")
    ]
    breaker = {s.labels["target"]: s.value for s in samples("callproof_breaker_state")}
    assert breaker == {"bedrock-kimi": 0.0, "openrouter-kimi": 0.0, "down-a": 0.0}
    assert samples("callproof_in_flight")[0].labels == {"front": "converse-stream"}
    # no secret, no prompt, no request id in any label or value
    assert SECRET not in text
    assert PROMPT not in text
    assert "Tokyo" not in text
    # a per-app registry: the process-global one holds none of it
    from prometheus_client import REGISTRY, generate_latest

    assert b"callproof_attempts" not in generate_latest(REGISTRY)


async def test_hedge_metrics(make_target: MakeTarget) -> None:
    slow = make_target("slow", fault="latency:0.8")
    fast = make_target("fast")
    async with Client() as client:
        router = Router(
            "h",
            [slow, fast],
            client=client,
            policy=RoutePolicy(hedge=HedgePolicy(mode="fixed", delay_s=0.1)),
        )
        with routed():
            call = await _routed_call(router)
    metrics = Metrics()
    metrics.observe(call)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    hedges = {
        s.labels["result"]: s.value
        for s in families["callproof_hedges"].samples
        if s.name == "callproof_hedges_total"
    }
    assert hedges == {"won": 1.0}
    outcomes = {
        (s.labels["target"], s.labels["outcome"])
        for s in families["callproof_attempts"].samples
        if s.name == "callproof_attempts_total"
    }
    assert outcomes == {("slow", "abandoned"), ("fast", "ok")}


async def test_route_spans_in_memory_exporter(
    make_target: MakeTarget, spans: InMemorySpanExporter
) -> None:
    primary = _secret_target(make_target, "bedrock-kimi", fault="http_error:500")
    backup = _secret_target(make_target, "openrouter-kimi")
    async with Client() as client:
        router = Router(
            "kimi",
            [primary, backup],
            client=client,
            policy=RoutePolicy(hedge=HedgePolicy(mode="off")),
        )
        with routed():
            call = await _routed_call(router)
    assert spans.get_finished_spans() == ()  # the client stayed quiet inside the route
    tracer_provider = TracerProvider()
    exporter = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    Tracing(tracer_provider, capture_content=False).emit(call)
    finished: tuple[ReadableSpan, ...] = exporter.get_finished_spans()
    root = next(s for s in finished if s.parent is None)
    children = [s for s in finished if s.parent is not None]
    assert root.name == "chat my-model"
    attrs = dict(root.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "aws.bedrock"
    assert attrs["gen_ai.request.model"] == "my-model"
    assert attrs["gen_ai.response.model"] == backup.model
    assert attrs["callproof.served_by"] == "openrouter-kimi"
    assert isinstance(attrs["gen_ai.usage.input_tokens"], int)
    assert "gen_ai.input.messages" not in attrs  # content is off unless asked for
    assert [c.name for c in sorted(children, key=lambda s: s.start_time or 0)][-1] == (
        "attempt 2 openrouter-kimi"
    )
    for child in children:
        assert child.parent is not None
        assert child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id
    first = next(c for c in children if c.name.endswith("bedrock-kimi"))
    second = next(c for c in children if c.name.endswith("openrouter-kimi"))
    assert (first.attributes or {})["callproof.attempt.outcome"] == "http_error"
    assert (first.attributes or {})["error.type"] == "HTTPStatusError"
    assert first.status.status_code.name == "ERROR"
    assert (second.attributes or {})["callproof.attempt.outcome"] == "ok"
    assert (second.attributes or {})["callproof.attempt.time_to_first_event_s"] > 0
    assert (first.start_time or 0) <= (second.start_time or 0) <= (root.end_time or 0)
    for span in finished:
        blob = repr(dict(span.attributes or {}))
        assert SECRET not in blob
        assert PROMPT not in blob


async def test_abandoned_attempt_span_says_why(make_target: MakeTarget) -> None:
    async with Client() as client:
        router = Router(
            "h",
            [make_target("slow", fault="latency:0.8"), make_target("fast")],
            client=client,
            policy=RoutePolicy(hedge=HedgePolicy(mode="fixed", delay_s=0.1)),
        )
        with routed():
            call = await _routed_call(router)
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    Tracing(provider).emit(call)
    loser = next(s for s in exporter.get_finished_spans() if s.name.endswith(" slow"))
    attrs = dict(loser.attributes or {})
    assert attrs["callproof.attempt.outcome"] == "abandoned"
    assert attrs["callproof.attempt.abandoned_reason"] == "lost hedge race"
    assert "callproof.attempt.time_to_first_event_s" not in attrs  # no event came
    winner = next(s for s in exporter.get_finished_spans() if s.name.endswith(" fast"))
    assert (winner.attributes or {})["callproof.attempt.hedge"] is True


async def test_library_client_emits_the_same_spans(
    make_target: MakeTarget, spans: InMemorySpanExporter
) -> None:
    target = make_target("nova")
    async with Client() as client:
        response = await client.complete(target, CONV)
    assert "22" in response.text
    finished = spans.get_finished_spans()
    assert [s.name for s in finished if s.parent is None] == [f"chat {target.model}"]
    root = next(s for s in finished if s.parent is None)
    child = next(s for s in finished if s.parent is not None)
    assert (root.attributes or {})["gen_ai.provider.name"] == provider_name(target)
    assert (root.attributes or {})["callproof.outcome"] == "ok"
    assert (child.attributes or {})["callproof.attempt.outcome"] == "ok"
    assert "gen_ai.input.messages" not in (root.attributes or {})


async def test_library_client_span_of_a_failure_and_content_on_request(
    make_target: MakeTarget,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    enable_tracing(provider, capture_content=True)
    try:
        async with Client() as client:
            await client.complete(make_target("ok"), CONV)
            with pytest.raises(HTTPStatusError):
                await client.complete(make_target("bad", fault="http_error:500"), CONV)
    finally:
        disable_tracing()
    roots = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert len(roots) == 2
    ok, bad = roots
    assert PROMPT in str((ok.attributes or {})["gen_ai.input.messages"])
    assert "22" in str((ok.attributes or {})["gen_ai.output.messages"])
    assert (bad.attributes or {})["error.type"] == "HTTPStatusError"
    assert bad.status.status_code.name == "ERROR"


def test_tracing_from_env_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    assert tracing_from_env() is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing_from_env() is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    assert tracing_from_env() is None
    monkeypatch.setenv(CAPTURE_ENV, "true")
    assert Tracing(TracerProvider()).capture_content is True


async def test_library_router_emits_one_route_span(
    make_target: MakeTarget, spans: InMemorySpanExporter
) -> None:
    primary = make_target("primary", fault="http_error:500")
    backup = make_target("backup")
    async with Client() as client:
        router = Router(
            "kimi",
            [primary, backup],
            client=client,
            policy=RoutePolicy(hedge=HedgePolicy(mode="off")),
        )
        response = await router.complete(CONV)
    assert "22" in response.text
    finished = spans.get_finished_spans()
    roots = [s for s in finished if s.parent is None]
    # the route's span, not one client span per attempt
    assert [s.name for s in roots] == [f"chat {primary.model}"]
    root = roots[0]
    assert (root.attributes or {})["callproof.route"] == "kimi"
    assert (root.attributes or {})["callproof.served_by"] == "backup"
    children = sorted(
        (s for s in finished if s.parent is not None), key=lambda s: s.start_time or 0
    )
    assert [c.name for c in children] == ["attempt 1 primary", "attempt 2 backup"]
    assert [(c.attributes or {})["callproof.attempt.outcome"] for c in children] == [
        "http_error",
        "ok",
    ]
    # and after the call, a direct client call has its own span again
    async with Client() as client:
        await client.complete(backup, CONV)
    assert len([s for s in spans.get_finished_spans() if s.parent is None]) == 2
