"""Regressions for hostile bytes found by fuzzing and review (issue 10, items 7-9): each
reproducer ends in one of callproof's typed errors, or decodes, and never raises anything else."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from callproof.dialects import API_NAMES, get_dialect
from callproof.errors import CallproofError, InvalidEventError
from callproof.events import StreamStop, TextDelta
from callproof.wire.eventstream import (
    EventStreamDecoder,
    Timestamp,
    encode_message,
)
from callproof.wire.sse import SSEDecoder, SSEEvent, encode_event
from tests.dialects._helpers import decode

DEEP = "[" * 1000 + "]" * 1000


def _chat_chunk(**fields: object) -> dict[str, object]:
    return {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [], **fields}


def _sse(*payloads: object) -> bytes:
    return b"".join(
        encode_event(p if isinstance(p, str) else json.dumps(p)) for p in payloads
    ) + encode_event("[DONE]")


def _bedrock(*events: tuple[str, object]) -> bytes:
    return b"".join(
        encode_message(
            {":message-type": "event", ":event-type": name, ":content-type": "application/json"},
            (p if isinstance(p, bytes) else json.dumps(p).encode()),
        )
        for name, p in events
    )


def _typed_or_ok(api: str, body: bytes) -> list[object]:
    """Decode ``body`` as ``api``; only callproof's errors may come out."""
    try:
        return list(decode(get_dialect(api).stream_decoder(), body, [7, 3, 11]))
    except CallproofError as err:
        return [err]


# -- D7: RecursionError and OverflowError ---------------------------------------------------


@pytest.mark.parametrize("api", API_NAMES)
def test_thousand_deep_json_is_a_typed_error(api: str) -> None:
    if api == "bedrock-converse-stream":
        body = _bedrock(("messageStart", {"role": "assistant"})) + encode_message(
            {":message-type": "event", ":event-type": "contentBlockDelta"}, DEEP.encode()
        )
    elif api in ("openai-completions", "openai-responses"):
        body = encode_event(DEEP)
    else:
        body = ('{"output": ' + DEEP + "}").encode()
    (result,) = [r for r in _typed_or_ok(api, body) if isinstance(r, CallproofError)]
    assert isinstance(result, InvalidEventError)


def test_deep_json_in_an_error_body_is_still_an_http_error() -> None:
    for api in API_NAMES:
        err = get_dialect(api).decode_error(500, {}, DEEP.encode())
        assert err.status == 500


def test_usage_of_1e999_decodes_without_overflow() -> None:
    usage = '{"prompt_tokens": 1e999, "completion_tokens": 2, "total_tokens": 1e999}'
    body = (
        _sse(_chat_chunk(choices=[{"index": 0, "delta": {"content": "hi"}}]))[
            : -len(b"data: [DONE]\n\n")
        ]
        + encode_event(
            '{"id":"c1","object":"chat.completion.chunk","model":"m","choices":'
            '[{"index":0,"delta":{},"finish_reason":"stop"}]}'
        )
        + encode_event(
            '{"id":"c1","object":"chat.completion.chunk","choices":[],"usage":' + usage + "}"
        )
        + encode_event("[DONE]")
    )
    events = decode(get_dialect("openai-completions").stream_decoder(), body)
    stop = [e for e in events if isinstance(e, StreamStop)][-1]
    assert stop.usage is not None
    assert stop.usage.input_tokens is None
    assert stop.usage.output_tokens == 2


def test_bedrock_usage_of_1e999() -> None:
    body = _bedrock(
        ("messageStart", {"role": "assistant"}),
        ("messageStop", {"stopReason": "end_turn"}),
        ("metadata", b'{"usage": {"inputTokens": 1e999, "outputTokens": 3}, "metrics": {}}'),
    )
    events = decode(get_dialect("bedrock-converse-stream").stream_decoder(), body)
    stop = [e for e in events if isinstance(e, StreamStop)][-1]
    assert stop.usage is not None
    assert stop.usage.output_tokens == 3


# -- D8: SSE sizes, retry, unhashable indexes, odd codes, lone surrogates -------------------


def test_retry_with_4300_digits_is_ignored_and_the_decoder_goes_on() -> None:
    decoder = SSEDecoder()
    items = decoder.feed(b"retry: " + b"9" * 5000 + b"\ndata: a\n\ndata: b\n\n")
    assert items == [SSEEvent(data="a"), SSEEvent(data="b")]
    assert decoder.retry is None


def test_a_line_over_the_limit_is_a_typed_error_even_before_it_ends() -> None:
    decoder = SSEDecoder(max_line=1000)
    decoder.feed(b"data: " + b"x" * 900)
    with pytest.raises(InvalidEventError, match="exceeds the limit of 1000 bytes"):
        decoder.feed(b"x" * 200)


def test_an_event_over_the_limit_is_a_typed_error() -> None:
    decoder = SSEDecoder(max_event=100)
    with pytest.raises(InvalidEventError, match="over 100 bytes"):
        decoder.feed(b"data: " + b"y" * 60 + b"\n" + b"data: " + b"y" * 60 + b"\n")


def test_a_legal_large_event_fed_in_small_chunks_is_linear() -> None:
    # Counted, not timed: the decoder searches each byte for a line end at most a few times.
    # A quadratic decoder rescans the pending line at every feed: 4 MiB in 4 KiB feeds would
    # be ~2 G byte scans. We check the scan offset advances instead of timing.
    decoder = SSEDecoder()
    line = b"data: " + b"z" * (4 << 20) + b"\n\n"
    out = []
    for i in range(0, len(line), 4096):
        out += decoder.feed(line[i : i + 4096])
        assert decoder._scan == len(decoder._buf)  # nothing before this is searched again
    assert out == [SSEEvent(data="z" * (4 << 20))]


def test_last_event_id_is_set_at_dispatch() -> None:
    # WPT eventsource/format-data-before-final-empty-line: the last block never ends.
    decoder = SSEDecoder()
    items = decoder.feed(b"id: 1\ndata: a\n\nid: 2\ndata: b")
    assert items == [SSEEvent(data="a", id="1")]
    assert decoder.last_event_id == "1"
    decoder.close()
    assert decoder.last_event_id == "1"


def test_last_event_id_set_by_a_block_without_data() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 9\n\n") == []
    assert decoder.last_event_id == "9"
    assert decoder.feed(b"data: x\n\n") == [SSEEvent(data="x", id="9")]


@pytest.mark.parametrize("index", ["[]", "{}", '"x"', "1e999", "null"])
def test_unhashable_or_odd_output_index(index: str) -> None:
    body = (
        encode_event('{"type":"response.created","response":{"id":"r","model":"m"}}')
        + encode_event(
            '{"type":"response.output_item.added","output_index":' + index + ","
            '"item":{"type":"function_call","id":"fc","call_id":"c","name":"f","arguments":""}}'
        )
        + encode_event(
            '{"type":"response.function_call_arguments.delta","output_index":'
            + index
            + ',"item_id":"fc","delta":"{}"}'
        )
    )
    for result in _typed_or_ok("openai-responses", body):
        assert not isinstance(result, Exception) or isinstance(result, CallproofError)


@pytest.mark.parametrize("index", ["[]", "{}", "1e999", '"²"'])
def test_unhashable_chat_tool_index(index: str) -> None:
    body = encode_event(
        '{"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,'
        '"delta":{"tool_calls":[{"index":' + index + ',"id":"t","function":{"name":"f",'
        '"arguments":"{}"}}]}}]}'
    ) + encode_event("[DONE]")
    for result in _typed_or_ok("openai-completions", body):
        assert not isinstance(result, Exception) or isinstance(result, CallproofError)


@pytest.mark.parametrize("code", ['"²"', '"9' + "9" * 5000 + '"', "[]", "1e999"])
def test_odd_error_codes(code: str) -> None:
    body = encode_event('{"error": {"message": "boom", "code": ' + code + "}}")
    results = _typed_or_ok("openai-completions", body)
    assert any(isinstance(r, CallproofError) for r in results)
    err = get_dialect("openai-completions").decode_error(
        429, {}, ('{"error": {"message": "slow", "code": ' + code + "}}").encode()
    )
    assert err.status == 429


_FINISH = _chat_chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])


def test_lone_surrogate_text_becomes_replacement_character() -> None:
    body = _sse(_chat_chunk(choices=[{"index": 0, "delta": {"content": "a"}}]), _FINISH).replace(
        b'"a"', b'"a\\ud800b"'
    )
    events = _typed_or_ok("openai-completions", body)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "a\ufffdb"
    text.encode("utf-8")  # writable


def test_valid_surrogate_pair_is_kept() -> None:
    body = _sse(_chat_chunk(choices=[{"index": 0, "delta": {"content": "a"}}]), _FINISH).replace(
        b'"a"', b'"\\ud83d\\ude00"'
    )
    events = _typed_or_ok("openai-completions", body)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "\U0001f600"


def test_bedrock_lone_surrogate() -> None:
    body = _bedrock(
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"text":"x\\udc00"}}'),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": "end_turn"}),
    )
    events = _typed_or_ok("bedrock-converse-stream", body)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "x\ufffd"


# -- D9: eventstream timestamps ------------------------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("millis", [-(2**63), -62135596800001, 253402300800000, 2**63 - 1])
def test_any_int64_timestamp_decodes(millis: int) -> None:
    frame = encode_message({"ts": Timestamp(millis)}, b"{}")
    (msg,) = EventStreamDecoder().feed(frame)
    assert msg.headers["ts"] == millis
    assert isinstance(msg.headers["ts"], Timestamp)
    assert encode_message(msg.headers, msg.payload) == frame


@pytest.mark.parametrize(
    "millis", [-62135596800000, -9000000000000, 9000000000123, 253402300799999, 1]
)
def test_timestamps_decode_exactly(millis: int) -> None:
    # 9000000000123 ms is in 2255: float division lands microseconds off there.
    frame = encode_message({"ts": EPOCH + timedelta(milliseconds=millis)}, b"")
    (msg,) = EventStreamDecoder().feed(frame)
    value = msg.headers["ts"]
    assert isinstance(value, datetime)
    assert value == EPOCH + timedelta(milliseconds=millis)
    assert (value - EPOCH) // timedelta(milliseconds=1) == millis
    assert encode_message(msg.headers, b"") == frame


def test_a_legal_16_mib_event_decodes_at_the_default_limits() -> None:
    # The reproducer: a legal 16 MiB event took 25 s and was misreported as a stall.
    event = b"data: " + b"q" * ((16 << 20) - 8) + b"\n\n"
    assert len(event) == 16 << 20
    decoder = SSEDecoder()
    out = []
    for i in range(0, len(event), 65536):
        out += decoder.feed(event[i : i + 65536])
    assert len(out) == 1
    assert isinstance(out[0], SSEEvent)
    assert len(out[0].data) == (16 << 20) - 8


def test_sse_limit_is_a_dialect_option() -> None:
    from callproof.errors import ConfigError

    body = encode_event("x" * 5000)
    for api in ("openai-completions", "openai-responses"):
        decoder = get_dialect(api, sse_limit_bytes=1000).stream_decoder()
        with pytest.raises(InvalidEventError, match="exceeds the limit of 1000 bytes"):
            decoder.feed(body)
        with pytest.raises(ConfigError, match="sse_limit_bytes"):
            get_dialect(api, sse_limit_bytes=0)
