"""ConverseStream decoding against real recordings and every failure the wire can show."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callproof.dialects import get_dialect
from callproof.dialects.bedrock_events import ConverseStreamDecoder
from callproof.errors import (
    ChecksumMismatch,
    IncompleteFrame,
    IncompleteStreamError,
    InvalidEventError,
    ProtocolError,
    StreamExceptionError,
)
from callproof.events import STOP_REASONS, StreamStart, StreamStop, TextDelta
from callproof.wire.eventstream import EventStreamDecoder, encode_message
from tests.dialects._helpers import CHUNKINGS, decode, summarise
from tests.recordings import (
    BEDROCK_STREAM_CASSETTES,
    RECORDED,
    binary_bodies,
    chunks,
    live_sonnet_stream,
)


def event(name: str, payload: dict[str, Any] | bytes) -> bytes:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        ":event-type": name,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return encode_message(headers, body)


def exception(kind: str, message: str, **fields: Any) -> bytes:
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, json.dumps({"message": message, **fields}).encode())


def reencode(name: str) -> bytes:
    """A vercel ``.chunks.txt`` file (decoded events) as the eventstream Bedrock sent."""
    return b"".join(
        event(event_name, payload) for line in chunks(name) for event_name, payload in line.items()
    )


def frames_of(body: bytes) -> list[bytes]:
    """The raw bytes of each frame of ``body``."""
    out, pos = [], 0
    while pos < len(body):
        total = int.from_bytes(body[pos : pos + 4], "big")
        out.append(body[pos : pos + total])
        pos += total
    return out


def run(body: bytes, sizes: list[int] | None = None) -> Any:
    return summarise(decode(ConverseStreamDecoder(), body, sizes))


HELLO = [
    event("messageStart", {"role": "assistant", "p": "abc"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}, "p": "ab"}),
    event("contentBlockStop", {"contentBlockIndex": 0}),
]
STOP = event("messageStop", {"stopReason": "end_turn", "p": "abcdef"})
METADATA = event(
    "metadata",
    {"usage": {"inputTokens": 5, "outputTokens": 1, "totalTokens": 6}, "metrics": {}, "p": "a"},
)


# -- real recordings ------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_nova_text_then_tool_call(sizes: list[int]) -> None:
    first, second = binary_bodies("pa_test_bedrock_model_iter_stream.yaml")
    s = run(first, sizes)
    assert s.text.startswith("<thinking> To find the temperature of the capital of France,")
    assert s.text.endswith("in Paris.</thinking>\n")
    assert s.calls == [
        {
            "id": "tooluse_lAG_zP8QRHmSYOwZzzaCqA",
            "name": "get_temperature",
            "arguments": {"city": "Paris"},
        }
    ]
    assert (s.stop_reason, s.raw_stop_reason) == ("tool_use", "tool_use")
    assert s.usage is not None
    assert (s.usage.input_tokens, s.usage.output_tokens, s.usage.total_tokens) == (471, 91, 562)
    assert (s.starts, s.stops) == (1, 1)
    assert s.kinds[0] == "start"
    assert s.kinds[-1] == "stop"

    s = run(second, sizes)
    assert s.text == "The current temperature in Paris, the capital of France, is 30°C."
    assert (s.stop_reason, s.tool_calls) == ("end_turn", [])
    assert s.usage is not None
    assert s.usage.total_tokens == 595


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
@pytest.mark.parametrize(
    ("name", "usage"),
    [
        ("pa_test_bedrock_model_stream.yaml", (13, 82, 95)),
        ("pa_test_stream_cancel.yaml", (13, 85, 98)),
    ],
)
def test_nova_text_streams(name: str, usage: tuple[int, int, int], sizes: list[int]) -> None:
    (body,) = binary_bodies(name)
    s = run(body, sizes)
    assert s.text.startswith("The capital of France is Paris. Paris is not only the capital city")
    assert "City of Light" in s.text
    assert s.stop_reason == "end_turn"
    assert s.usage is not None
    assert (s.usage.input_tokens, s.usage.output_tokens, s.usage.total_tokens) == usage


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_claude_reasoning_with_signature(sizes: list[int]) -> None:
    (body,) = binary_bodies("pa_test_bedrock_model_thinking_part_stream.yaml")
    s = run(body, sizes)
    assert s.thinking.startswith('The user has greeted me with a simple "Hello".')
    assert s.thinking.endswith("ask how I can help them today.")
    assert s.signature is not None
    assert s.signature.startswith("Eu0CCkgIBxABGAIqQJDccbDQkr81n7Q")
    assert s.text == "Hello! It's nice to meet you. How can I help you today?"
    assert s.stop_reason == "end_turn"
    assert s.usage is not None
    assert s.usage.total_tokens == 109


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_claude_redacted_reasoning(sizes: list[int]) -> None:
    (body,) = binary_bodies("pa_test_bedrock_model_thinking_part_redacted_stream.yaml")
    s = run(body, sizes)
    assert len(s.redacted) == 2
    # the wire carries base64; the event carries the decoded bytes ("RXRrRUNr" -> "EtkECk")
    assert s.redacted[0].startswith(b"EtkECk")
    assert s.thinking == ""
    assert s.text.startswith("I notice you've sent what appears to be some kind of command")
    assert s.usage is not None
    assert s.usage.total_tokens == 345


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_gpt_oss_empty_text_block_is_not_content(sizes: list[int]) -> None:
    (body,) = binary_bodies("pa_test_bedrock_model_stream_empty_text_delta.yaml")
    events = decode(ConverseStreamDecoder(), body, sizes)
    assert all(ev.text for ev in events if isinstance(ev, TextDelta))
    s = summarise(events)
    assert s.thinking.startswith('The user just says "Hi".')
    assert s.text == "Hello! How can I help you today?"
    assert s.usage is not None
    assert (s.usage.input_tokens, s.usage.output_tokens) == (70, 43)


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_nova_server_tool_is_not_a_tool_call(sizes: list[int]) -> None:
    (body,) = binary_bodies("pa_test_bedrock_model_code_execution_tool_stream.yaml")
    s = run(body, sizes)
    assert s.calls == [
        {
            "id": "tooluse_ptgCcZ0uQu-UUMz0abqoWw",
            "name": "final_result",
            "arguments": {"result": 7006652.0},
        }
    ]
    assert s.stop_reason == "tool_use"
    assert s.usage is not None
    assert s.usage.total_tokens == 1061


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_live_sonnet_stream(sizes: list[int]) -> None:
    body, observed = live_sonnet_stream()
    s = run(body, sizes)
    assert s.text == observed["text"] == "OK."
    assert s.stop_reason == "end_turn"  # the recorder's "stop"
    assert s.usage is not None
    assert (s.usage.input_tokens, s.usage.output_tokens) == (
        observed["inputTokens"],
        observed["outputTokens"],
    )


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_kimi_tool_call_with_reasoning_and_empty_blocks(sizes: list[int]) -> None:
    s = run(reencode("vercel_kimi_glob_search.chunks.txt"), sizes)
    assert s.text == ""
    assert s.thinking.startswith(" The user wants me to:\n1. Call glob_search")
    assert s.calls == [
        {
            "id": "functions.glob_search:0",
            "name": "glob_search",
            "arguments": {"pattern": "**/*cursor*"},
        }
    ]
    assert s.stop_reason == "tool_use"
    assert s.usage is not None
    assert s.usage.total_tokens == 292


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_kimi_tool_call_written_as_text(sizes: list[int]) -> None:
    s = run(reencode("vercel_kimi_read_file.chunks.txt"), sizes)
    assert "<function=read_file>\n<parameter=target_file>FILE1</parameter>\n</function>" in s.text
    assert s.tool_calls == []
    assert s.stop_reason == "end_turn"


def test_kimi_inline_think_text_is_kept_verbatim() -> None:
    s = run(reencode("vercel_kimi_final.chunks.txt"))
    assert s.text.startswith(" <think> The user wants me to check")
    assert s.text.endswith("</think> FOUND ISSUE_11409_CONTENT")
    assert (s.stop_reason, s.usage.output_tokens if s.usage else None) == ("end_turn", 143)


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_claude_reasoning_chunks(sizes: list[int]) -> None:
    s = run(reencode("vercel_reasoning.chunks.txt"), sizes)
    assert s.thinking.startswith('Let me count the r\'s in "strawberry":')
    assert s.thinking.endswith("So there are 3 r's.")
    assert s.signature is not None
    assert s.signature.startswith("Ep0CCkgICxABGAIqQOWPB6")
    assert s.text == 'There are **3** r\'s in "strawberry":\n\n1. st**r**awbe**r****r**y'
    assert s.stop_reason == "end_turn"
    assert s.usage is not None
    assert s.usage.total_tokens == 145


def test_recorded_model_stream_error_exception_frame() -> None:
    frame = (RECORDED / "vercel_msee.bin").read_bytes()
    decoder = ConverseStreamDecoder()
    with pytest.raises(StreamExceptionError) as info:
        decoder.feed(b"".join(HELLO) + frame)
        decoder.close()
    err = info.value
    assert err.error_type == "modelStreamErrorException"
    assert err.status == 424
    assert "Model Stream Error" in err.message
    assert "The model stream failed." in err.message
    assert err.outcome == "stream_exception"
    assert err.retryable
    assert err.to_dict()["type"] == "modelStreamErrorException"


# -- events and their order -----------------------------------------------------------------


def test_metadata_before_message_stop_still_gives_one_stop_with_usage() -> None:
    events = decode(ConverseStreamDecoder(), b"".join([*HELLO, METADATA, STOP]))
    stops = [ev for ev in events if isinstance(ev, StreamStop)]
    assert len(stops) == 1
    assert stops[0].usage is not None
    assert stops[0].usage.total_tokens == 6
    assert events[-1] is stops[0]


def test_stop_waits_for_metadata_and_is_emitted_at_close_without_it() -> None:
    decoder = ConverseStreamDecoder()
    events = decoder.feed(b"".join([*HELLO, STOP]))
    assert not any(isinstance(ev, StreamStop) for ev in events)
    (stop,) = decoder.close()
    assert isinstance(stop, StreamStop)
    assert stop.usage is None
    assert stop.stop_reason == "end_turn"


def test_stop_comes_with_metadata() -> None:
    decoder = ConverseStreamDecoder()
    decoder.feed(b"".join([*HELLO, STOP]))
    (stop,) = decoder.feed(METADATA)
    assert isinstance(stop, StreamStop)
    assert stop.usage is not None
    assert decoder.close() == []


def test_unknown_events_fields_and_message_types_are_ignored() -> None:
    weird = [
        event("fooBarUnknown", {"anything": [1, 2]}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"citation": {"x": 1}}}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "!"}, "newField": 1}),
        encode_message({":message-type": "future", ":event-type": "x"}, b"not json"),
    ]
    s = run(b"".join([*HELLO, *weird, STOP, METADATA]))
    assert s.text == "Hi!"
    assert s.stops == 1


def test_tool_input_fragments_concatenate_per_block() -> None:
    body = b"".join(
        [
            event("messageStart", {"role": "assistant"}),
            event(
                "contentBlockStart",
                {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "a", "name": "f"}}},
            ),
            event(
                "contentBlockStart",
                {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "b", "name": "g"}}},
            ),
            event(
                "contentBlockDelta",
                {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"x"'}}},
            ),
            event(
                "contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": ""}}}
            ),
            event(
                "contentBlockDelta",
                {"contentBlockIndex": 1, "delta": {"toolUse": {"input": ": 1}"}}},
            ),
            event("contentBlockStop", {"contentBlockIndex": 1}),
            # block 2 is never stopped: messageStop ends it
            event("messageStop", {"stopReason": "tool_use"}),
        ]
    )
    s = run(body)
    assert s.calls == [
        {"id": "a", "name": "f", "arguments": {"x": 1}},
        {"id": "b", "name": "g", "arguments": {}},  # "" input means no arguments
    ]


@pytest.mark.parametrize("raw", [*(r for r in STOP_REASONS if r != "unknown"), "brand_new_reason"])
def test_every_stop_reason(raw: str) -> None:
    body = b"".join([*HELLO, event("messageStop", {"stopReason": raw}), METADATA])
    (stop,) = [ev for ev in decode(ConverseStreamDecoder(), body) if isinstance(ev, StreamStop)]
    assert stop.raw_stop_reason == raw
    assert stop.stop_reason == (raw if raw in STOP_REASONS else "unknown")


# -- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("throttlingException", 429),
        ("modelStreamErrorException", 424),
        ("internalServerException", 500),
        ("serviceUnavailableException", 503),
        ("validationException", 400),
    ],
)
def test_exception_frames_are_typed(kind: str, status: int) -> None:
    decoder = ConverseStreamDecoder()
    with pytest.raises(StreamExceptionError) as info:
        for frame in [
            *HELLO,
            exception(kind, "Too many requests, please wait before trying again."),
        ]:
            decoder.feed(frame)
    assert info.value.error_type == kind
    assert info.value.status == status
    assert info.value.message == "Too many requests, please wait before trying again."


def test_error_frame_is_typed_from_its_headers() -> None:
    frame = encode_message(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}
    )
    with pytest.raises(StreamExceptionError) as info:
        ConverseStreamDecoder().feed(frame)
    assert (info.value.error_type, info.value.message) == ("InternalFailure", "boom")


def test_events_before_an_error_in_the_same_chunk_are_not_lost() -> None:
    decoder = ConverseStreamDecoder()
    events = decoder.feed(b"".join([*HELLO, exception("throttlingException", "slow down")]))
    assert [ev.text for ev in events if isinstance(ev, TextDelta)] == ["Hi"]
    with pytest.raises(StreamExceptionError):
        decoder.feed(b"")
    with pytest.raises(StreamExceptionError):
        decoder.close()


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b'"text"'])
def test_invalid_payload_is_a_protocol_error(payload: bytes) -> None:
    decoder = ConverseStreamDecoder()
    with pytest.raises(InvalidEventError):
        decoder.feed(HELLO[0] + event("contentBlockDelta", payload))
        decoder.close()


def test_bad_redacted_content_is_a_protocol_error() -> None:
    bad = event(
        "contentBlockDelta",
        {"contentBlockIndex": 0, "delta": {"reasoningContent": {"redactedContent": "@@@"}}},
    )
    decoder = ConverseStreamDecoder()
    assert decoder.feed(HELLO[0] + bad) == [StreamStart()]  # the error waits for the next call
    with pytest.raises(InvalidEventError, match="base64"):
        decoder.close()


def test_crc_mismatch_passes_through_as_protocol_error() -> None:
    frame = bytearray(HELLO[1])
    frame[-8] ^= 0xFF  # a payload byte
    decoder = ConverseStreamDecoder()
    with pytest.raises(ChecksumMismatch) as info:
        decoder.feed(HELLO[0] + bytes(frame))
    assert isinstance(info.value, ProtocolError)


def test_empty_body_is_incomplete() -> None:
    with pytest.raises(IncompleteStreamError, match="empty body"):
        ConverseStreamDecoder().close()


@pytest.mark.parametrize("sizes", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_truncation_at_every_frame_boundary_before_message_stop(sizes: list[int]) -> None:
    (body,) = binary_bodies("pa_test_bedrock_model_stream.yaml")
    frames = frames_of(body)
    assert EventStreamDecoder().feed(frames[-2])[0].event_type == "messageStop"
    for cut in range(len(frames) - 1):
        with pytest.raises(IncompleteStreamError):
            decode(ConverseStreamDecoder(), b"".join(frames[:cut]), sizes)
    # cut after messageStop: complete, but without usage
    s = run(b"".join(frames[:-1]), sizes)
    assert s.stop_reason == "end_turn"
    assert s.usage is None


def test_truncation_inside_a_frame_is_an_incomplete_frame() -> None:
    body, _ = live_sonnet_stream()
    with pytest.raises(IncompleteFrame):
        decode(ConverseStreamDecoder(), body[:-5])


# -- raw items and the registry -------------------------------------------------------------


def test_raw_items_are_frames_as_json_dicts() -> None:
    body, _ = live_sonnet_stream()
    decoder = get_dialect("bedrock-converse-stream").stream_decoder()
    decoder.feed(body)
    items = decoder.raw_items()
    assert len(items) == 6
    assert {i.kind for i in items} == {"frame"}
    assert items[0].data["headers"][":event-type"] == "messageStart"
    assert json.loads(items[0].data["payload"])["role"] == "assistant"
    json.dumps([i.data for i in items])  # capture-ready
    assert decoder.raw_items() == []  # drained
    # the raw frame re-encodes to the bytes that came
    first = items[0].data
    assert encode_message(first["headers"], first["payload"].encode()) == frames_of(body)[0]
    assert decoder.keepalives == 0


def test_stream_start_comes_first() -> None:
    events = decode(ConverseStreamDecoder(), b"".join([*HELLO, STOP]))
    assert isinstance(events[0], StreamStart)


# -- property: chunking never changes the result --------------------------------------------

_BODIES = [
    live_sonnet_stream()[0],
    binary_bodies("pa_test_bedrock_model_iter_stream.yaml")[0],
    reencode("vercel_reasoning.chunks.txt"),
    binary_bodies("pa_test_bedrock_model_thinking_part_redacted_stream.yaml")[0],
]
_EXPECTED = [decode(ConverseStreamDecoder(), b) for b in _BODIES]


@settings(max_examples=40, deadline=None)
@given(which=st.integers(0, len(_BODIES) - 1), cuts=st.lists(st.integers(0, 20_000), max_size=30))
def test_random_splits_decode_identically(which: int, cuts: list[int]) -> None:
    body = _BODIES[which]
    points = sorted({c % (len(body) + 1) for c in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    decoder = ConverseStreamDecoder()
    events = [ev for piece in pieces for ev in decoder.feed(piece)] + decoder.close()
    assert events == _EXPECTED[which]


def test_redacted_event_bytes_match_the_wire_base64() -> None:
    (body,) = binary_bodies("pa_test_bedrock_model_thinking_part_redacted_stream.yaml")
    wire = [
        json.loads(m.payload)["delta"]["reasoningContent"]["redactedContent"]
        for m in EventStreamDecoder().feed(body)
        if b"redactedContent" in m.payload
    ]
    assert run(body).redacted == [base64.b64decode(w) for w in wire]


# -- oracle: botocore's own eventstream parser agrees on every recording --------------------


def botocore_view(body: bytes) -> dict[str, Any]:
    """What boto3's ``converse_stream`` would hand its caller for ``body``."""
    import botocore.session
    from botocore.eventstream import EventStreamBuffer
    from botocore.parsers import EventStreamJSONParser

    service = botocore.session.get_session().get_service_model("bedrock-runtime")
    shape = service.operation_model("ConverseStream").output_shape.members["stream"]
    parser = EventStreamJSONParser()
    buffer = EventStreamBuffer()
    buffer.add_data(body)
    view: dict[str, Any] = {"text": "", "thinking": "", "signature": None, "redacted": []}
    tools: dict[int, list[str]] = {}
    for message in buffer:
        event = parser.parse(message.to_response_dict(), shape)
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            tool = start["start"].get("toolUse")
            if tool and tool.get("type") != "server_tool_use":
                tools[start["contentBlockIndex"]] = [tool["toolUseId"], tool["name"], ""]
        elif "contentBlockDelta" in event:
            index = event["contentBlockDelta"]["contentBlockIndex"]
            delta = event["contentBlockDelta"]["delta"]
            view["text"] += delta.get("text", "")
            if "toolUse" in delta and index in tools:
                tools[index][2] += delta["toolUse"]["input"]
            rc = delta.get("reasoningContent", {})
            view["thinking"] += rc.get("text", "")
            view["signature"] = rc.get("signature", view["signature"])
            if "redactedContent" in rc:
                view["redacted"].append(rc["redactedContent"])
        elif "messageStop" in event:
            view["stop"] = event["messageStop"]["stopReason"]
        elif "metadata" in event:
            view["usage"] = event["metadata"]["usage"]
    view["tools"] = [tuple(t) for t in tools.values()]
    return view


@pytest.mark.parametrize(
    "body",
    [
        *(b for name in BEDROCK_STREAM_CASSETTES for b in binary_bodies(name)),
        live_sonnet_stream()[0],
        *(
            reencode(n)
            for n in ("vercel_kimi_glob_search.chunks.txt", "vercel_reasoning.chunks.txt")
        ),
    ],
)
def test_decoding_agrees_with_botocore(body: bytes) -> None:
    expected = botocore_view(body)
    s = run(body, [7, 3, 11])
    assert (s.text, s.thinking, s.signature, s.redacted) == (
        expected["text"],
        expected["thinking"],
        expected["signature"],
        expected["redacted"],
    )
    assert [(c.id, c.name, c.arguments_raw) for c in s.tool_calls] == expected["tools"]
    assert s.raw_stop_reason == expected["stop"]
    assert s.usage is not None
    assert (s.usage.input_tokens, s.usage.output_tokens, s.usage.total_tokens) == (
        expected["usage"]["inputTokens"],
        expected["usage"]["outputTokens"],
        expected["usage"]["totalTokens"],
    )
