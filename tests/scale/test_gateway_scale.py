"""The scale features through the real gateway (``GatewayServer`` on loopback, unmodified
boto3): ``GET /metrics`` and ``GET /routes``, spans, two replicas sharing a Redis through
``[serve] state``, and a route ordered by measurement."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from callproof.errors import ConfigError
from callproof.gateway.config import load_serve_config, parse_serve_config
from callproof.gateway.server import GatewayServer
from callproof.probe.store import HistoryStore, default_db_url
from callproof.state import RedisState
from callproof.telemetry.tracing import disable_tracing, enable_tracing
from tests.gateway.conftest import bedrock_client, read_evidence

from .conftest import RedisServer, gateway_toml

QUESTION = [{"role": "user", "content": [{"text": "What is the weather in Tokyo?"}]}]
PRIMARY = "bedrock-kimi-k2.5"
BACKUP = "openrouter-kimi-k2.5"


def _toml(tmp: Path, **kw: Any) -> str:
    return gateway_toml(tmp / "evidence", **kw)


Factory = Callable[..., GatewayServer]


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Factory]:
    """``replica(name, **toml)``: a gateway from ``tmp/NAME/callproof.toml`` (same file name
    for every replica, so they share one key namespace)."""
    started: list[GatewayServer] = []

    def make(name: str, *, app_options: dict[str, Any] | None = None, **kw: Any) -> GatewayServer:
        where = tmp_path / name
        where.mkdir()
        path = where / "callproof.toml"
        path.write_text(_toml(where, **kw), encoding="utf-8")
        gw = GatewayServer(load_serve_config(path), app_options=app_options).start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


def _routes(gw: GatewayServer) -> dict[str, Any]:
    response = httpx.get(gw.url + "/routes", timeout=10)
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


def test_metrics_routes_and_spans_through_the_gateway(replica: Factory) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    enable_tracing(provider)
    try:
        gw = replica("one")
        client = bedrock_client(gw.url)
        first = client.converse(modelId="moonshotai.kimi-k2.5", messages=QUESTION)
        assert first["output"]["message"]["content"]
        failing = bedrock_client(gw.url, fault="http_error:500")
        second = failing.converse(modelId="moonshotai.kimi-k2.5", messages=QUESTION)
        assert second["ResponseMetadata"]["HTTPHeaders"]["x-callproof-served-by"] == BACKUP
        scraped = httpx.get(gw.url + "/metrics", timeout=10)
    finally:
        disable_tracing()
    assert scraped.status_code == 200
    text = scraped.text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    duration = [
        s
        for s in families["gen_ai_client_operation_duration_seconds"].samples
        if s.name.endswith("_count")
    ]
    assert sum(s.value for s in duration) == 2
    assert {s.labels["gen_ai_request_model"] for s in duration} == {"moonshotai.kimi-k2.5"}
    assert {s.labels["gen_ai_provider_name"] for s in duration} == {"aws.bedrock", "openrouter"}
    ttfc = families["gen_ai_client_operation_time_to_first_chunk_seconds"].samples
    assert any(s.name.endswith("_count") and s.value >= 1 for s in ttfc)
    token_types = {
        s.labels["gen_ai_token_type"] for s in families["gen_ai_client_token_usage"].samples
    }
    assert token_types == {"input", "output"}
    attempts = {
        (s.labels["target"], s.labels["outcome"]): s.value
        for s in families["callproof_attempts"].samples
        if s.name == "callproof_attempts_total"
    }
    assert attempts == {(PRIMARY, "ok"): 1, (PRIMARY, "http_error"): 1, (BACKUP, "ok"): 1}
    fallbacks = [
        s.labels for s in families["callproof_fallbacks"].samples if s.name.endswith("_total")
    ]
    assert fallbacks == [{"route": "kimi", "from": PRIMARY, "to": BACKUP}]
    calls = {
        s.labels["result"]: s.value
        for s in families["callproof_calls"].samples
        if s.name.endswith("_total")
    }
    assert calls == {"ok": 2}
    in_flight = {s.labels["front"]: s.value for s in families["callproof_in_flight"].samples}
    assert in_flight == {"converse": 0.0}
    breaker = {s.labels["target"] for s in families["callproof_breaker_state"].samples}
    assert breaker == {PRIMARY, BACKUP}
    for secret in ("test-secret", "AKIDEXAMPLE", "Tokyo", "weather"):
        assert secret not in text

    # a target named by its id is served by a one-target router, listed under its own key
    direct = bedrock_client(gw.url).converse(modelId=BACKUP, messages=QUESTION)
    assert direct["output"]["message"]["content"]
    routes = _routes(gw)
    assert routes["routes"][f"target:{BACKUP}"]["order"] == [BACKUP]
    assert routes["routes"][f"target:{BACKUP}"]["mode"] == "configured"
    assert routes["state"]["kind"] == "in-process"
    kimi = routes["routes"]["route:kimi"]
    assert kimi["order"] == [PRIMARY, BACKUP]
    assert kimi["breakers"] == {PRIMARY: "closed", BACKUP: "closed"}
    assert kimi["mode"] == "configured"

    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.parent is None]
    # one span per call (the client's own spans stay quiet inside a routed call)
    assert [s.name for s in roots] == ["chat moonshotai.kimi-k2.5"] * 2 + [f"chat {BACKUP}"]
    children = [s for s in spans if s.parent is not None]
    assert len(children) == 4
    assert {c.parent.span_id for c in children if c.parent} <= {r.context.span_id for r in roots}
    assert (roots[1].attributes or {})["callproof.served_by"] == BACKUP
    assert (roots[1].attributes or {})["callproof.front"] == "converse"


@pytest.mark.slow
def test_two_gateway_replicas_share_a_breaker_through_redis(
    replica: Factory, redis_server: RedisServer
) -> None:
    extra = "breaker = { failures = 3, open_s = 30 }"
    state = f'state = "{redis_server.url}"'
    # a roomy op timeout: what is measured is staleness, not a loaded machine's slow round trip
    roomy = [
        {"scale_options": {"state": RedisState(redis_server.url, namespace="callproof:callproof",
                                               op_timeout_s=2.0)}}
        for _ in range(2)
    ]  # fmt: skip
    a = replica("a", route_extra=extra, serve_extra=state, first_event=0.5, app_options=roomy[0])
    b = replica("b", route_extra=extra, serve_extra=state, first_event=0.5, app_options=roomy[1])
    assert _routes(a)["state"]["namespace"] == "callproof:callproof"
    deadline = time.monotonic() + 10
    while not (_routes(a)["state"]["healthy"] and _routes(b)["state"]["healthy"]):
        assert time.monotonic() < deadline, "replicas never reached Redis"
        time.sleep(0.05)
    hanging = bedrock_client(a.url, fault="hang_no_events")
    for _ in range(3):  # the primary hangs for A: three stalls open A's circuit
        out = hanging.converse(modelId="moonshotai.kimi-k2.5", messages=QUESTION)
        assert out["ResponseMetadata"]["HTTPHeaders"]["x-callproof-served-by"] == BACKUP
    router_a = a.gateway.routers["route:kimi"]
    router_b = b.gateway.routers["route:kimi"]
    opened = [t for t in router_a.breaker_transitions() if t["to"] == "open"]
    assert opened, router_a.breaker_transitions()
    while router_b.breakers[PRIMARY].state != "open":
        assert time.monotonic() - opened[0]["at"] < 5, "B never saw A's open circuit"
        time.sleep(0.005)
    seen_after = time.monotonic() - opened[0]["at"]
    assert seen_after <= 1.0, seen_after
    assert _routes(b)["routes"]["route:kimi"]["breakers"][PRIMARY] == "open"
    # B never sent a request to the hung primary: its first call goes straight to the backup
    out = bedrock_client(b.url).converse(modelId="moonshotai.kimi-k2.5", messages=QUESTION)
    headers = out["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-callproof-served-by"] == BACKUP
    assert headers["x-callproof-attempts"] == "1"
    record = read_evidence(b)[-1]
    assert [(r["target"], r["outcome"]) for r in record["route_attempts"]] == [
        (PRIMARY, "skipped"),
        (BACKUP, "ok"),
    ]


def _history(url: str, results: dict[str, tuple[int, int]]) -> None:
    at = datetime.now(UTC) - timedelta(hours=1)
    records = []
    for target, (n, passed) in results.items():
        for i in range(n):
            records.append(
                {
                    "seq": len(records) + 1,
                    "target": target,
                    "scenario": "tool-result",
                    "outcome": "ok" if i < passed else "stall_no_events",
                    "passed": i < passed,
                    "started_at": (at + timedelta(seconds=i))
                    .isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
                }
            )
    with HistoryStore.open(url) as store:
        store.record_run({"run_id": "h1", "started_at": "2026-12-01T09:00:00Z"}, {"results": []})
        store.record_attempts("h1", iter(records))


def test_measured_route_through_the_gateway(replica: Factory) -> None:
    # callproof run's history (the default store): Bedrock Kimi hangs on 60% of tool results
    _history(default_db_url(), {PRIMARY: (30, 12), BACKUP: (30, 30)})
    gw = replica(
        "m",
        route_extra='order = "measured"\n'
        'measured = { window = "7d", scenario = "tool-result", min_attempts = 20 }',
    )
    kimi = _routes(gw)["routes"]["route:kimi"]
    assert kimi["mode"] == "measured"
    assert kimi["order"] == [BACKUP, PRIMARY]
    assert kimi["configured"] == [PRIMARY, BACKUP]
    figures = {f["target"]: f for f in kimi["figures"]}
    assert figures[PRIMARY]["pass_rate"] == 0.4
    assert figures[BACKUP]["wilson_low"] > figures[PRIMARY]["wilson_low"]
    out = bedrock_client(gw.url).converse(modelId="moonshotai.kimi-k2.5", messages=QUESTION)
    assert out["ResponseMetadata"]["HTTPHeaders"]["x-callproof-served-by"] == BACKUP
    record = read_evidence(gw)[-1]
    assert record["route_order"]["order"] == [BACKUP, PRIMARY]
    assert record["route_order"]["figures"][0]["attempts"] == 30


def test_serve_state_key_is_checked() -> None:
    with pytest.raises(ConfigError, match="unsupported state backend") as info:
        parse_serve_config(gateway_toml("e", serve_extra='state = "etcd://x"'))
    assert "serve.state" in str(info.value)
    ok = parse_serve_config(gateway_toml("e", serve_extra='state = "redis://127.0.0.1:1/0"'))
    assert ok.serve.state == "redis://127.0.0.1:1/0"


@pytest.mark.slow
def test_redis_killed_under_gateway_load(
    replica: Factory, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import threading

    caplog.set_level(logging.INFO, logger="callproof.state")
    state = f'state = "{redis_server.url}"'

    def roomy() -> dict[str, Any]:
        # what [serve] state makes, with a roomy op timeout: on a loaded machine a slow round
        # trip would be an outage too, and this test counts outages
        backend = RedisState(redis_server.url, namespace="callproof:callproof", op_timeout_s=2.0)
        return {"scale_options": {"state": backend}}

    gateways = [replica(name, serve_extra=state, app_options=roomy()) for name in ("a", "b")]
    deadline = time.monotonic() + 10
    while not all(_routes(gw)["state"]["healthy"] for gw in gateways):
        assert time.monotonic() < deadline, "replicas never reached Redis"
        time.sleep(0.05)
    results: list[str] = []
    stop = threading.Event()

    def load(gw: GatewayServer) -> None:
        client = bedrock_client(gw.url)
        while not stop.is_set():
            try:
                out = client.converse(modelId="moonshotai.kimi-k2.5", messages=QUESTION)
                results.append(out["ResponseMetadata"]["HTTPHeaders"]["x-callproof-served-by"])
            except Exception as exc:  # a failed request is what this test looks for
                results.append(f"FAILED {exc!r}")

    threads = [threading.Thread(target=load, args=(gw,)) for gw in gateways]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while len(results) < 4:  # the load is running
            assert time.monotonic() < deadline, results
            time.sleep(0.05)
        redis_server.stop()  # killed mid-load
        deadline = time.monotonic() + 10
        while any(_routes(gw)["state"]["healthy"] for gw in gateways):
            assert time.monotonic() < deadline, "the outage was never noticed"
            time.sleep(0.05)
        during = len(results)
        time.sleep(1.0)
        redis_server.start()
        deadline = time.monotonic() + 15
        while not all(_routes(gw)["state"]["healthy"] for gw in gateways):
            assert time.monotonic() < deadline, "the replicas never reconnected"
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    failed = [r for r in results if r.startswith("FAILED")]
    assert not failed, failed[:3]
    assert len(results) > during >= 4
    assert all(_routes(gw)["state"]["outages"] == 1 for gw in gateways)
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and r.name == "callproof.state"
    ]
    assert len(warnings) == 2, [r.getMessage() for r in warnings]  # one per replica
    assert sum("is back" in r.getMessage() for r in caplog.records) == 2
