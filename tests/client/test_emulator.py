"""Every API x fault x outcome against the real emulator on loopback, plus the auth paths the
emulator verifies with botocore's own signer."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from callproof.attempt import Attempt, run_attempt
from callproof.client import Client
from callproof.scenarios import tool_call, tool_result
from callproof.targets import Auth, Endpoint, Target, Timeouts
from tests.client.conftest import emulator_target

APIS = {
    "bedrock-converse-stream": "amazon.nova-pro-v1:0",
    "bedrock-converse": "amazon.nova-pro-v1:0",
    "openai-completions": "moonshotai/kimi-k2.5",
    "openai-responses": "moonshotai/kimi-k2.5",
}

#: fault -> outcome, the same on every API unless overridden below.
EXPECTED = {
    None: "ok",
    "hang_before_headers": "stall_before_headers",
    "hang_no_events": "stall_no_events",
    "stall_after:3": "stall_mid_stream",
    "close_without_stop": "incomplete_stream",
    "truncate_frame": "protocol_error",
    "corrupt_crc": "protocol_error",
    "stream_exception:throttlingException": "stream_exception",
    "stream_exception:modelStreamErrorException": "stream_exception",
    "http_error:429": "http_error",
    "http_error:500": "http_error",
    "http_error:503": "http_error",
    "http_error:400": "http_error",
    "http_error:424": "http_error",
    "empty_response": "empty_response",
    "stop_reason:max_tokens": "abnormal_stop",
    "stop_reason:malformed_model_output": "abnormal_stop",
    "stop_reason:content_filtered": "abnormal_stop",
    "stop_reason:some_new_reason": "abnormal_stop",
    "malformed_tool_args": "tool_call_malformed",
    "tool_call_in_text": "tool_call_in_text",
    "latency:0.05": "ok",
}
OVERRIDES: dict[str, dict[str | None, str]] = {
    # One JSON body: nothing decodes until it is whole, and a cut body is invalid JSON.
    "bedrock-converse": {
        "stall_after:3": "stall_no_events",
        "truncate_frame": "incomplete_stream",
        "stream_exception:throttlingException": "http_error",
        "stream_exception:modelStreamErrorException": "http_error",
    },
    # SSE has no frames: a cut line is a stream that never finished.
    "openai-completions": {"truncate_frame": "incomplete_stream"},
    "openai-responses": {"truncate_frame": "incomplete_stream"},
}


#: Faults run concurrently, so the clocks are generous except where a stall is the point.
RELAXED = Timeouts(connect=5, first_event=5, idle=5, deadline=20)
#: A stall budget must still hold for the headers and events of a healthy answer on a loaded
#: machine (the seed preset's own first-event latency reaches 0.4 s): 2 s, not 0.4 s.
STALL = {
    "hang_before_headers": Timeouts(first_event=2.0, idle=5, deadline=20),
    "hang_no_events": Timeouts(first_event=2.0, idle=5, deadline=20),
    "stall_after:3": Timeouts(first_event=5, idle=1.5, deadline=20),
}


async def _one(client: Client, server: Any, api: str, fault: str | None) -> Attempt:
    scenario = tool_call() if fault == "malformed_tool_args" else tool_result()
    clocks = STALL.get(fault or "", RELAXED)
    if api == "bedrock-converse" and fault == "stall_after:3":
        clocks = Timeouts(first_event=2.0, idle=5, deadline=20)  # no event until the body ends
    target = emulator_target(server, api, APIS[api], fault=fault, timeouts=clocks)
    return await run_attempt(client, target, scenario)


@pytest.mark.parametrize("api", list(APIS))
async def test_every_fault_has_its_outcome(emulator: Any, api: str) -> None:
    expected = {**EXPECTED, **OVERRIDES.get(api, {})}
    async with Client() as client:
        attempts = await asyncio.gather(*(_one(client, emulator, api, f) for f in expected))
    got = {f: a.outcome.value for f, a in zip(expected, attempts, strict=True)}
    assert got == expected
    for fault, attempt in zip(expected, attempts, strict=True):
        record = attempt.to_record()
        assert record["timings"]["total_s"] is not None, fault
        if attempt.outcome == "ok":
            assert "22" in attempt.response.text  # type: ignore[union-attr]
            assert record["error"] is None
        if attempt.error is not None:
            assert attempt.error.target == f"t-{api}"
            assert attempt.error.model == APIS[api]
            assert attempt.error.response is attempt.response
            assert record["error"]["kind"] == attempt.error.kind
        if fault and fault.startswith("http_error:"):
            assert record["error"]["status"] == int(fault.split(":")[1])
        if fault and fault.startswith("stop_reason:"):
            assert record["raw_stop_reason"]  # the raw value is kept


async def test_stall_error_carries_partial_response(emulator: Any) -> None:
    target = emulator_target(
        emulator,
        "bedrock-converse-stream",
        APIS["bedrock-converse-stream"],
        fault="stall_after:4",
        timeouts=Timeouts(first_event=5, idle=0.4, deadline=20),
    )
    async with Client(keep_events=True) as client:
        attempt = await run_attempt(client, target, tool_result())
    assert attempt.outcome == "stall_mid_stream"
    assert attempt.response is not None
    assert len(attempt.response.events) == 4
    assert attempt.response.timings.first_event_s is not None
    assert attempt.response.timings.max_gap_s >= 0.4  # type: ignore[operator]


async def test_sigv4_verified_by_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    from callproof.emulator.app import create_app
    from callproof.emulator.bedrock_auth import BedrockAuth

    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    app = create_app(bedrock_auth=BedrockAuth(credentials={"AKIDEXAMPLE": secret}, required=True))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    target = Target(
        name="signed",
        api="bedrock-converse",
        model="amazon.nova-pro-v1:0",
        endpoint=Endpoint(base_url="http://emulator", region="us-west-2", auth=Auth(kind="sigv4")),
        timeouts=RELAXED,  # ASGITransport gives headers only once the body is complete
    )
    async with Client(transport=httpx.ASGITransport(app=app)) as client:
        resp = await client.complete(target, tool_result().conversation)
        assert "22" in resp.text
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-at-all")
    async with Client(transport=httpx.ASGITransport(app=app)) as client:
        from callproof.errors import HTTPStatusError

        with pytest.raises(HTTPStatusError) as info:
            await client.complete(target, tool_result().conversation)
    assert info.value.status == 403


async def test_bedrock_api_key_over_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    from callproof.emulator import EmulatorServer
    from callproof.emulator.app import create_app
    from callproof.emulator.bedrock_auth import BedrockAuth

    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSKtest-key-0123456789")
    app = create_app(bedrock_auth=BedrockAuth(api_keys=["ABSKtest-key-0123456789"], required=True))
    with EmulatorServer(app=app, tls=True) as server:
        assert server.ca_path is not None
        target = Target(
            name="apikey",
            api="bedrock-converse-stream",
            model="amazon.nova-pro-v1:0",
            endpoint=Endpoint(
                base_url=server.url, auth=Auth(kind="bedrock-api-key"), verify=str(server.ca_path)
            ),
            timeouts=Timeouts(first_event=2, idle=2, deadline=10),
        )
        async with Client() as client:
            resp = await client.complete(target, tool_result().conversation)
    assert resp.stop_reason == "end_turn"
    assert "22" in resp.text
