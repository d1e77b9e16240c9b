"""Raw capture: redaction (planted secrets never reach the file), byte-exact chunks with
timestamps, offline decoding to the same conclusion, and replay with the original timing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from callproof.capture import decode_capture, read_capture
from callproof.client import Client
from callproof.conversation import Conversation, UserMessage
from callproof.emulator.replay import replay_app
from callproof.errors import HTTPStatusError, StallMidStream, StallNoEvents
from callproof.events import Response
from callproof.redact import Redactor
from callproof.scenarios import tool_result
from callproof.targets import Auth, Endpoint, Target, Timeouts
from tests.client.conftest import FAST, awkward, emulator_target, make_target
from tests.client.streams import bedrock_frames

CONV = Conversation(messages=(UserMessage.text("hi"),))

SECRETS = {
    "bearer": "sk-or-v1-PLANTEDSECRETbearer0123456789",
    "api_key": "PLANTEDxapikey9876543210",
    "token": "FwoGZXIvYXdzPLANTEDsessiontoken",
    "url_key": "PLANTEDurlkey555",
    "url_sig": "PLANTEDsignature777",
    "custom": "PLANTEDcustombearer4242",
    "aws_secret": "PLANTEDawsSecretKey/abc+def",
    "cookie": "PLANTEDcookie31337",
}


async def test_planted_secrets_never_reach_the_capture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", SECRETS["bearer"])
    body = b"".join(bedrock_frames())

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {SECRETS['bearer']}"
        return httpx.Response(
            200,
            headers={
                "content-type": "application/vnd.amazon.eventstream",
                "set-cookie": f"session={SECRETS['cookie']}",
                "x-echo": f"Bearer {SECRETS['custom']}",
            },
            content=body,
        )

    target = Target(
        name="secret",
        api="bedrock-converse-stream",
        model="m",
        endpoint=Endpoint(
            base_url=f"http://mock/base?key={SECRETS['url_key']}&X-Amz-Signature={SECRETS['url_sig']}&keep=1",
            auth=Auth(kind="bearer", env="OPENROUTER_API_KEY"),
            headers={
                "x-api-key": SECRETS["api_key"],
                "X-Amz-Security-Token": SECRETS["token"],
                "X-Custom-Auth-Header": f"Bearer {SECRETS['custom']}",
            },
        ),
        timeouts=FAST,
    )
    path = tmp_path / "cap.jsonl"
    async with Client(transport=httpx.MockTransport(handler)) as client:
        await client.complete(target, CONV, capture=path)
    text = path.read_text()
    for name, secret in SECRETS.items():
        assert secret not in text, name
    cap = read_capture(path)
    assert cap.request is not None
    assert "[REDACTED]" in cap.request["url"]
    assert "keep=1" in cap.request["url"]
    headers = dict(cap.request["headers"])
    assert headers["authorization"] == "Bearer [REDACTED]"
    assert headers["x-api-key"] == "[REDACTED]"
    assert b"".join(d for _, d in cap.chunks) == body  # bytes kept exactly


def test_sigv4_authorization_is_redacted() -> None:
    r = Redactor()
    auth = (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, Signature=" + "a" * 64
    )
    assert r.header("Authorization", auth) == "AWS4-HMAC-SHA256 [REDACTED]"
    assert "AKIDEXAMPLE" not in r.scrub(f"echo {auth}")
    assert r.header("content-type", "application/json") == "application/json"
    assert (
        r.url("https://u:p4ssword@h/x?api_key=abcdefg&a=1")
        == "https://REDACTED@h/x?api_key=[REDACTED]&a=1"
    )


async def test_capture_records_chunks_with_timestamps_and_decodes_offline(tmp_path: Path) -> None:
    body = b"".join(bedrock_frames())

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={
                "content-type": "application/vnd.amazon.eventstream",
                "x-amzn-requestid": "rid-c",
            },
            content=awkward(body),
        )

    path = tmp_path / "ok.jsonl"
    async with Client(transport=httpx.MockTransport(handler), keep_events=True) as client:
        live = await client.complete(make_target("bedrock-converse-stream"), CONV, capture=path)
    cap = read_capture(path)
    times = [t for t, _ in cap.chunks]
    assert times == sorted(times)
    assert len(times) > 10
    assert cap.eof
    assert cap.end is not None
    assert cap.end["error"] is None
    assert any(r["kind"] for r in cap.raw)  # readable frames too
    result, events = decode_capture(path)
    assert isinstance(result, Response)
    assert result.text == live.text
    assert result.stop_reason == live.stop_reason
    assert result.request_id == "rid-c"
    assert live.events
    assert events == live.events


async def test_http_error_capture_decodes_to_the_same_error(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429,
            headers={"x-amzn-ErrorType": "ThrottlingException:http://x/"},
            content=b'{"message":"Too many requests"}',
        )

    path = tmp_path / "429.jsonl"
    async with Client(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(HTTPStatusError):
            await client.complete(make_target("bedrock-converse-stream"), CONV, capture=path)
    result, _ = decode_capture(path)
    assert isinstance(result, HTTPStatusError)
    assert result.status == 429
    assert result.error_type == "ThrottlingException"


async def _capture_from_emulator(
    server: Any, tmp_path: Path, fault: str | None, timeouts: Timeouts
) -> tuple[Path, object]:
    path = tmp_path / f"{fault or 'ok'}.jsonl".replace(":", "_")
    target = emulator_target(
        server, "bedrock-converse-stream", "amazon.nova-pro-v1:0", fault=fault, timeouts=timeouts
    )
    async with Client() as client:
        try:
            result: object = await client.complete(target, tool_result().conversation, capture=path)
        except Exception as exc:
            result = exc
    return path, result


async def test_stall_capture_decodes_offline_as_the_same_stall(
    emulator: Any, tmp_path: Path
) -> None:
    clocks = Timeouts(first_event=3, idle=0.4, deadline=10)
    path, live = await _capture_from_emulator(emulator, tmp_path, "stall_after:3", clocks)
    assert isinstance(live, StallMidStream)
    start = time.monotonic()
    result, events = decode_capture(path)
    assert time.monotonic() - start < 0.5  # offline: no waiting
    assert isinstance(result, StallMidStream)
    assert result.response is not None
    assert live.response is not None
    assert result.response.text == live.response.text
    assert len(events) == 3
    assert read_capture(path).eof is False


async def test_replay_serves_original_bytes_and_timing(emulator: Any, tmp_path: Path) -> None:
    from callproof.emulator import EmulatorServer

    path, live = await _capture_from_emulator(
        emulator, tmp_path, None, Timeouts(first_event=3, idle=3, deadline=10)
    )
    assert isinstance(live, Response)
    with EmulatorServer(app=replay_app(path)) as server:
        target = emulator_target(
            server,
            "bedrock-converse-stream",
            "whatever",
            timeouts=Timeouts(first_event=3, idle=3, deadline=10),
        )
        async with Client() as client:
            again = await client.complete(target, CONV, capture=tmp_path / "again.jsonl")
    assert again.text == live.text
    assert again.stop_reason == live.stop_reason
    assert again.usage == live.usage
    # the first event comes when it came originally (the scripted latency), not at once
    assert again.timings.first_event_s is not None
    assert live.timings.first_event_s is not None
    assert live.timings.first_event_s - 0.05 <= again.timings.first_event_s
    assert again.timings.first_event_s <= live.timings.first_event_s + 0.3
    original = b"".join(d for _, d in read_capture(path).chunks)
    replayed = b"".join(d for _, d in read_capture(tmp_path / "again.jsonl").chunks)
    assert replayed == original


async def test_replay_of_a_hang_hangs_again(emulator: Any, tmp_path: Path) -> None:
    from callproof.emulator import EmulatorServer

    clocks = Timeouts(first_event=2.0, idle=2.0, deadline=10)  # headers fit on a loaded machine
    path, live = await _capture_from_emulator(emulator, tmp_path, "hang_no_events", clocks)
    assert isinstance(live, StallNoEvents)
    offline, _ = decode_capture(path)
    assert isinstance(offline, StallNoEvents)
    with EmulatorServer(app=replay_app(path)) as server:
        target = emulator_target(server, "bedrock-converse-stream", "m", timeouts=clocks)
        async with Client() as client:
            with pytest.raises(StallNoEvents):
                await client.complete(target, CONV)


def test_capture_lines_are_json_with_types(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "request"}\n')
    from callproof.errors import ConfigError

    with pytest.raises(ConfigError, match="not a callproof capture"):
        read_capture(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        read_capture(tmp_path / "missing.jsonl")
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("{nope\n")
    with pytest.raises(ConfigError, match="not a JSON line"):
        read_capture(garbage)


async def test_replay_app_does_not_swallow_its_own_cancellation(tmp_path: Path) -> None:
    import asyncio

    from tests.client.conftest import Paced

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Paced([(0, b"\x00\x00")], hang=True))

    path = tmp_path / "hang.jsonl"
    async with Client(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(StallNoEvents):
            await client.complete(make_target("bedrock-converse-stream"), CONV, capture=path)
    assert read_capture(path).eof is False  # so the replay holds the body open
    app = replay_app(path)
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> dict[str, Any]:
        message = next(messages, None)
        if message is None:
            await asyncio.Event().wait()  # the client never disconnects
        assert message is not None
        return message

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/"}
    task = asyncio.create_task(app(scope, receive, send))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert sent[0]["type"] == "http.response.start"


def test_a_secret_that_contains_another_is_scrubbed_whole() -> None:
    # Many pairs, so that whatever order a set gives, some short secret comes up first.
    for i in range(40):
        short = f"PLANTED-{i}-short"
        long = f"{short}-and-a-longer-tail"
        r = Redactor()
        r.header("x-api-key", short)
        r.header("authorization", f"Bearer {long}")
        text = r.scrub(f"echo {long} and {short}")
        assert text == "echo [REDACTED] and [REDACTED]", i
        assert r.scrub_bytes(long.encode()) == b"[REDACTED]", i
