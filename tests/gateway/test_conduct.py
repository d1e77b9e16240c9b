"""Conduct rules the catalogue does not already hold: stop reasons passed through as
themselves (raw value in ``x-callproof-raw-stop-reason``), a long Retry-After falls over at
once, ``buffered = true`` on the route, one router per route across calls and fronts, and
Bedrock metadata on a stream served by an OpenAI upstream."""

from __future__ import annotations

import pytest

from tests.gateway.clients import call
from tests.gateway.conftest import GatewayFactory, bedrock_client, read_evidence
from tests.gateway.test_catalogue import FAKE, FALLBACK, PACED, PRIMARY, _model


@pytest.mark.parametrize("front", ["bedrock", "openai"])
def test_unknown_stop_reason_passes_through_as_itself(
    make_gateway: GatewayFactory, front: str
) -> None:
    gw = make_gateway()
    r = call(gw.url, front, model=_model(front), fault="stop_reason:sleepy_model")
    assert r.kind == "ok", r
    assert r.stop == "sleepy_model"  # never coerced to end_turn / stop


def test_raw_stop_reason_header_on_a_buffered_stream(make_gateway: GatewayFactory) -> None:
    gw = make_gateway()
    r = call(gw.url, "bedrock", model=_model("bedrock"), mode="buffered", fault="http_error:500")
    assert r.kind == "ok", r
    # served by OpenRouter: its own word for the stop, while the front says end_turn
    assert r.headers["x-callproof-raw-stop-reason"] == "stop"
    assert r.stop == "end_turn"


def test_tool_use_turn_from_an_openai_upstream_says_tool_use(make_gateway: GatewayFactory) -> None:
    gw = make_gateway()
    r = call(gw.url, "bedrock", model=_model("bedrock"), fault="http_error:500", after_tool=False)
    assert r.kind == "ok", r
    assert r.stop == "tool_use"
    assert r.tool_calls
    assert r.tool_calls[0]["name"] == "get_weather"


@pytest.mark.parametrize("front", ["bedrock", "openai"])
def test_long_retry_after_falls_over_at_once(
    make_gateway: GatewayFactory, fake_provider: str, front: str
) -> None:
    extra = FAKE.format(url=fake_provider) + (
        '\n[targets.fake-throttle-long]\nprovider = "fake"\nmodel = "throttle-long"\n'
        '\n[routes.slowdown]\ntargets = ["fake-throttle-long", "openrouter-kimi-k2.5"]\n'
        'hedge = "off"\n'
    )
    gw = make_gateway(extra=extra)
    r = call(gw.url, front, model="slowdown")
    assert r.kind == "ok", r
    assert r.headers["x-callproof-served-by"] == FALLBACK
    assert r.elapsed_s < 10, "a 30 s Retry-After is not waited out"


def test_route_key_buffered_makes_a_cut_invisible(make_gateway: GatewayFactory) -> None:
    gw = make_gateway(route_extra="buffered = true", plan=PACED)
    r = call(gw.url, "bedrock", model=_model("bedrock"), fault="reset_mid_body")
    assert r.kind == "ok", r
    assert r.headers["x-callproof-served-by"] == FALLBACK
    assert read_evidence(gw)[-1]["buffered"] is True


def test_one_router_per_route_across_fronts(make_gateway: GatewayFactory) -> None:
    gw = make_gateway()
    call(gw.url, "bedrock", model=_model("bedrock"))
    call(gw.url, "openai", model=_model("openai"))
    routers = gw.gateway.routers
    assert list(routers) == ["route:kimi"]
    assert routers["route:kimi"].calls == 2


def test_converse_non_stream_falls_over_invisibly(make_gateway: GatewayFactory) -> None:
    gw = make_gateway(plan=PACED)
    client = bedrock_client(gw.url, fault="reset_mid_body")
    response = client.converse(
        modelId="moonshotai.kimi-k2.5", messages=[{"role": "user", "content": [{"text": "hi"}]}]
    )
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-callproof-served-by"] == FALLBACK
    assert response["stopReason"] == "end_turn"
    assert response["metrics"]["latencyMs"] >= 0
    assert PRIMARY in [a["target"] for a in read_evidence(gw)[-1]["route_attempts"]]


@pytest.mark.parametrize("fault", ["tool_call_in_text", "empty_response"])
@pytest.mark.parametrize("front", ["bedrock", "openai"])
def test_buffered_judges_the_answer_before_sending_it(
    make_gateway: GatewayFactory, front: str, fault: str
) -> None:
    gw = make_gateway()
    r = call(gw.url, front, model=_model(front), mode="buffered", fault=fault, after_tool=False)
    assert r.kind == "ok", r
    assert r.headers["x-callproof-served-by"] == FALLBACK
    assert r.stop == ("tool_use" if front == "bedrock" else "tool_calls")
    assert r.tool_calls


def test_responses_stream_failure_after_commit_is_in_band(make_gateway: GatewayFactory) -> None:
    import openai

    gw = make_gateway(plan=PACED)
    client = openai.OpenAI(
        base_url=gw.url + "/v1",
        api_key="sk-test",
        max_retries=0,
        default_headers={"x-callproof-fault": "reset_mid_body"},
    )
    kinds: list[str] = []
    with pytest.raises(openai.APIError) as info:
        stream = client.responses.create(
            model="moonshotai/kimi-k2.5", input="Weather for Tokyo?", stream=True
        )
        kinds.extend(event.type for event in stream)
    assert "response.created" in kinds
    assert "response.completed" not in kinds
    assert "transport_error" in info.value.message or "stream" in info.value.message


@pytest.mark.parametrize("front", ["bedrock", "openai"])
def test_a_client_that_goes_away_closes_the_upstream(
    make_gateway: GatewayFactory, front: str
) -> None:
    import time

    import httpx

    # An answer that takes about 8 s (2 tokens/s) under idle and first-event timeouts of
    # 30 s: it cannot end, stall or fall over between the client's first bytes and its
    # going away, however loaded the machine, and only the gateway closing it ends it
    # within 15 s.
    slow = PACED.replace("tokens_per_s = 40", "tokens_per_s = 2")
    gw = make_gateway(plan=slow, idle=30.0, first_event=30.0)
    state = gw.emulator.state
    if front == "bedrock":
        url = gw.url + "/model/moonshotai.kimi-k2.5/converse-stream"
        body: dict[str, object] = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    else:
        url = gw.url + "/v1/chat/completions"
        body = {
            "model": "moonshotai/kimi-k2.5",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        }
    with httpx.stream("POST", url, json=body, timeout=30) as response:
        assert response.status_code == 200
        # The iterator is kept: a bare ``next(response.iter_raw())`` drops its generator at
        # once, and closing it closes the connection, so the gateway could see the client go
        # away (and close the upstream) before the count below was read.
        chunks = response.iter_raw()
        next(chunks)  # the stream is running
        assert state.active_streams == 1
        chunks.close()  # the client goes away
    deadline = time.monotonic() + 15
    while state.active_streams and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state.active_streams == 0, "the upstream connection was closed"
    record = read_evidence(gw)[-1]
    assert record["committed"] is True
    assert record["outcome"] != "ok"
