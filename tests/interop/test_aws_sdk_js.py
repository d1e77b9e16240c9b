"""The AWS SDK for JavaScript v3 with its default handler (NodeHttp2Handler) against the
emulator, over h2c (prior knowledge on http://) and TLS with ALPN h2.

Source for what the real service makes the client do: the SDK's own source
(@aws-sdk/client-bedrock-runtime 3.1164.0 in tests/node: the default ``requestHandler`` is
``NodeHttp2Handler`` since 3.798, @smithy/node-http-handler; the event-stream codec
@smithy/eventstream-codec throws "The message checksum (...) did not match the expected value
of ..." on a bad message CRC; modeled stream exceptions are thrown by name from the stream
iterator; the standard retry strategy makes 3 attempts on a throttling error). Wire shapes
are those of the recordings in tests/fixtures/recorded (bedrock_*).
"""

from __future__ import annotations

from typing import Any

import pytest

from callproof.emulator import EmulatorServer

from .conftest import NodeRunner

COMPLETE = ["messageStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"]


def names(result: dict[str, Any]) -> list[str]:
    """Event names with repeats folded (deltas come many at a time)."""
    out: list[str] = []
    for name in result["events"]:
        if not out or out[-1] != name:
            out.append(name)
    return out


@pytest.mark.parametrize("secure", [False, True], ids=["h2c", "tls-alpn-h2"])
def test_converse_stream_healthy_over_http2(
    node: NodeRunner, emulator: EmulatorServer, tls_emulator: EmulatorServer, secure: bool
) -> None:
    server = tls_emulator if secure else emulator
    result = node("bedrock.mjs", server.url, {"op": "converse-stream"}, ca=server.ca_path)
    # the default handler is the HTTP/2 one, so this proves HTTP/2 (HTTP/1.1 would fail with
    # "Protocol error" in this handler, as issue 9 G1 reports for the old server)
    assert result["handler"] == "NodeHttp2Handler"
    assert result["error"] is None
    assert names(result) == COMPLETE
    assert result["stopReason"] == "end_turn"
    assert "Weather for Tokyo?" in result["text"]


@pytest.mark.parametrize("secure", [False, True], ids=["h2c", "tls-alpn-h2"])
def test_converse_healthy_over_http2(
    node: NodeRunner, emulator: EmulatorServer, tls_emulator: EmulatorServer, secure: bool
) -> None:
    server = tls_emulator if secure else emulator
    result = node("bedrock.mjs", server.url, {"op": "converse"}, ca=server.ca_path)
    assert result["error"] is None
    assert result["stopReason"] == "end_turn"
    assert result["attempts"] == 1


def test_tool_use_round_trip(node: NodeRunner, emulator: EmulatorServer) -> None:
    tools = [
        {
            "toolSpec": {
                "name": "get_weather",
                "description": "Get the current weather for a city.",
                "inputSchema": {
                    "json": {"type": "object", "properties": {"city": {"type": "string"}}}
                },
            }
        }
    ]
    result = node("bedrock.mjs", emulator.url, {"op": "converse", "tools": tools})
    assert result["stopReason"] == "tool_use"
    assert result["toolUses"][0]["name"] == "get_weather"
    assert result["toolUses"][0]["input"] == {"city": "Tokyo"}


def test_mid_stream_throttling_exception_is_thrown_by_name(
    node: NodeRunner, emulator: EmulatorServer
) -> None:
    # Bedrock sends a modeled `throttlingException` frame mid-stream; the SDK deserialises it
    # and throws ThrottlingException from the async iterator after the events before it
    spec = {"op": "converse-stream", "fault": "stream_exception:throttlingException"}
    result = node("bedrock.mjs", emulator.url, spec)
    assert result["error"]["name"] == "ThrottlingException"
    assert result["events"][0] == "messageStart"
    assert "messageStop" not in result["events"]


def test_http_429_is_retried_then_thrown(node: NodeRunner, emulator: EmulatorServer) -> None:
    # the standard retry strategy retries throttling: 3 attempts, then ThrottlingException
    result = node("bedrock.mjs", emulator.url, {"op": "converse", "fault": "http_error:429"})
    assert result["error"]["name"] == "ThrottlingException"
    assert result["error"]["status"] == 429
    assert result["error"]["attempts"] == 3


def test_corrupted_crc_is_a_checksum_error(node: NodeRunner, emulator: EmulatorServer) -> None:
    result = node("bedrock.mjs", emulator.url, {"op": "converse-stream", "fault": "corrupt_crc"})
    assert "checksum" in result["error"]["message"]
    assert "did not match" in result["error"]["message"]
    assert "messageStop" not in result["events"]


def test_close_without_message_stop_ends_the_iterator_silently(
    node: NodeRunner, emulator: EmulatorServer
) -> None:
    # a stream that ends cleanly without messageStop/metadata: the SDK raises nothing, so the
    # caller must notice the missing messageStop itself (the seed's "silent" failure class)
    spec = {"op": "converse-stream", "fault": "close_without_stop"}
    result = node("bedrock.mjs", emulator.url, spec)
    assert result["error"] is None
    assert result["events"][0] == "messageStart"
    assert "messageStop" not in result["events"]
    assert "metadata" not in result["events"]


# -- faults over HTTP/2: a hang holds the stream open, a cut or reset is an RST_STREAM ----------


def test_hang_holds_the_http2_stream_open_until_the_sdk_gives_up(
    node: NodeRunner, emulator: EmulatorServer
) -> None:
    # NodeHttp2Handler's requestTimeout is the only clock that fires on a stream with headers
    # and no events (wire-facts §6: "JS SDK uses NodeHttp2Handler -> only requestTimeout
    # works"); it closes the stream and the iterator ends with no events and no error: the
    # seed's hang as a JS user sees it, a silent empty answer
    spec = {"op": "converse-stream", "fault": "hang_no_events", "requestTimeout": 1000,
            "maxAttempts": 1}  # fmt: skip
    result = node("bedrock.mjs", emulator.url, spec)
    assert result["events"] == []
    assert result["elapsedMs"] >= 900  # held open until the timeout, not ended early


def test_reset_before_headers_is_an_http2_stream_error(
    node: NodeRunner, emulator: EmulatorServer
) -> None:
    spec = {"op": "converse-stream", "fault": "reset_before_headers", "maxAttempts": 1}
    result = node("bedrock.mjs", emulator.url, spec)
    assert result["error"]["code"] == "ERR_HTTP2_STREAM_ERROR"
    assert "NGHTTP2_INTERNAL_ERROR" in result["error"]["message"]


def test_cut_converse_body_is_an_http2_stream_error(
    node: NodeRunner, emulator: EmulatorServer
) -> None:
    # issue 9 G6: a cut, not a complete body of broken JSON (which would be a SyntaxError)
    spec = {"op": "converse", "fault": "truncate_frame", "maxAttempts": 1}
    result = node("bedrock.mjs", emulator.url, spec)
    assert result["error"]["code"] == "ERR_HTTP2_STREAM_ERROR"


def test_truncated_frame_is_a_truncated_event_message(
    node: NodeRunner, emulator: EmulatorServer
) -> None:
    # @smithy/eventstream-serde: half a frame, then the end: "Truncated event message received."
    spec = {"op": "converse-stream", "fault": "truncate_frame", "maxAttempts": 1}
    result = node("bedrock.mjs", emulator.url, spec)
    assert result["error"]["message"] == "Truncated event message received."
    assert "messageStop" not in result["events"]


def test_reset_mid_stream_is_an_http2_stream_error(
    node: NodeRunner, emulator: EmulatorServer
) -> None:
    spec = {"op": "converse-stream", "fault": "reset_mid_body", "maxAttempts": 1}
    result = node("bedrock.mjs", emulator.url, spec)
    assert result["events"][0] == "messageStart"
    assert "messageStop" not in result["events"]
    assert result["error"]["code"] == "ERR_HTTP2_STREAM_ERROR"


@pytest.mark.parametrize("secure", [False, True], ids=["h2c", "tls-alpn-h2"])
@pytest.mark.parametrize("fault", ["latency:0.5", "slow_body:3000"])
def test_events_after_a_pause_still_arrive(
    node: NodeRunner,
    emulator: EmulatorServer,
    tls_emulator: EmulatorServer,
    fault: str,
    secure: bool,
) -> None:
    # The SDK sends GOAWAY right after the headers of every event stream (its isolated
    # session, @smithy/node-http-handler 4.14 NodeHttp2Handler); RFC 9113 §6.8 lets the open
    # stream finish. hypercorn + h2 as shipped closed the connection instead, so every stream
    # whose first event came after the headers (all of them, on a real model) arrived empty.
    server = tls_emulator if secure else emulator
    spec = {"op": "converse-stream", "fault": fault, "maxAttempts": 1}
    result = node("bedrock.mjs", server.url, spec, ca=server.ca_path)
    assert result["error"] is None
    assert names(result) == COMPLETE


def test_stall_after_events_ends_at_the_request_timeout(
    node: NodeRunner, emulator: EmulatorServer
) -> None:
    spec = {"op": "converse-stream", "fault": "stall_after:3", "requestTimeout": 1000,
            "maxAttempts": 1}  # fmt: skip
    result = node("bedrock.mjs", emulator.url, spec)
    assert len(result["events"]) == 3
    assert result["elapsedMs"] >= 900


def test_default_js_sdk_against_callproof_emulate(node: NodeRunner) -> None:
    # `callproof emulate` as a user runs it (the seed preset: real first-event latency), and
    # the founding report's own client, unchanged
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "callproof", "emulate", "--port", "0", "--preset", "seed"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        result = node("bedrock.mjs", url, {"op": "converse-stream"})
    finally:
        process.terminate()
        process.communicate(timeout=15)
    assert result["handler"] == "NodeHttp2Handler"
    assert result["error"] is None
    assert names(result) == COMPLETE
