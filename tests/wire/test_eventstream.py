"""The AWS eventstream codec: split points, round trips, corruption, and real recordings."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import botocore.eventstream
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callproof.errors import ChecksumMismatch, DuplicateHeader, IncompleteFrame, InvalidLength
from callproof.wire.eventstream import (
    MAX_HEADERS_LENGTH,
    MAX_PAYLOAD_LENGTH,
    EventStreamDecoder,
    EventStreamMessage,
    HeaderValue,
    Int8,
    Int16,
    Int32,
    Int64,
    encode_message,
)
from tests.recordings import BEDROCK_STREAM_CASSETTES, binary_bodies, live_sonnet_stream

EVENT_HEADERS: dict[str, HeaderValue] = {
    ":event-type": "contentBlockDelta",
    ":content-type": "application/json",
    ":message-type": "event",
}


def decode_all(data: bytes, sizes: list[int] | None = None) -> list[EventStreamMessage]:
    """Feed ``data`` in chunks of the given sizes (cycled), then close."""
    decoder = EventStreamDecoder()
    out: list[EventStreamMessage] = []
    pos = 0
    i = 0
    sizes = sizes or [len(data) or 1]
    while pos < len(data):
        step = max(1, sizes[i % len(sizes)])
        out += decoder.feed(data[pos : pos + step])
        pos += step
        i += 1
    decoder.close()
    return out


def botocore_decode(data: bytes) -> list[tuple[dict[str, object], bytes]]:
    buf = botocore.eventstream.EventStreamBuffer()
    buf.add_data(data)
    return [(m.headers, m.payload) for m in buf]


def test_frame_matches_the_real_first_bedrock_frame() -> None:
    # Prelude of the first frame of a live Claude Sonnet 4.6 stream (wire-facts.md section 1).
    body, _ = live_sonnet_stream()
    first = decode_all(body)[0]
    assert first.event_type == "messageStart"
    assert (
        encode_message(first.headers, first.payload)
        == body[: len(encode_message(first.headers, first.payload))]
    )
    assert body[:12].hex() == "000000b40000005205004165"


@pytest.mark.parametrize("name", BEDROCK_STREAM_CASSETTES)
def test_real_recordings_decode_byte_for_byte_at_every_awkward_split(name: str) -> None:
    for body in binary_bodies(name):
        expected = botocore_decode(body)
        assert expected, "recording holds frames"
        for sizes in ([1], [7, 3, 11], [12], [13], [4096]):
            got = decode_all(body, sizes)
            assert [(m.headers, m.payload) for m in got] == expected
        # Re-encoding what we decoded gives back the exact bytes the service sent.
        assert b"".join(encode_message(m.headers, m.payload) for m in decode_all(body)) == body


def test_live_stream_carries_p_padding_and_ends_with_metadata() -> None:
    body, observed = live_sonnet_stream()
    messages = decode_all(body, [5])
    names = [m.event_type for m in messages]
    assert names[0] == "messageStart"
    assert names[-2:] == ["messageStop", "metadata"]
    payloads = [json.loads(m.payload) for m in messages]
    assert all("p" in p for p in payloads)
    text = "".join(p.get("delta", {}).get("text", "") for p in payloads)
    assert text == observed["text"]


def test_every_split_point_of_a_two_frame_stream() -> None:
    data = encode_message(EVENT_HEADERS, b'{"a":1}') + encode_message(EVENT_HEADERS, b"{}")
    for cut in range(len(data) + 1):
        decoder = EventStreamDecoder()
        got = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        decoder.close()
        assert [m.payload for m in got] == [b'{"a":1}', b"{}"]


def test_all_ten_header_types_round_trip_and_botocore_agrees() -> None:
    headers: dict[str, HeaderValue] = {
        "t": True,
        "f": False,
        "i8": Int8(-7),
        "i16": Int16(300),
        "i32": Int32(-70000),
        "i64": Int64(2**40),
        "bytes": b"\x00\x01",
        "str": "héllo",
        "ts": datetime(2026, 11, 21, 9, 30, tzinfo=UTC),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    }
    data = encode_message(headers, b"payload")
    (msg,) = decode_all(data)
    assert msg.headers == headers
    assert [type(msg.headers[k]) for k in ("i8", "i16", "i32", "i64")] == [
        Int8,
        Int16,
        Int32,
        Int64,
    ]
    ((boto_headers, boto_payload),) = botocore_decode(data)
    assert boto_payload == b"payload"
    assert boto_headers["i64"] == 2**40
    assert boto_headers["str"] == "héllo"


header_values = st.one_of(
    st.booleans(),
    st.integers(-(2**7), 2**7 - 1).map(Int8),
    st.integers(-(2**15), 2**15 - 1).map(Int16),
    st.integers(-(2**31), 2**31 - 1).map(Int32),
    st.integers(-(2**63), 2**63 - 1).map(Int64),
    st.binary(max_size=64),
    st.text(max_size=64),
    st.integers(0, 2**41).map(lambda ms: datetime.fromtimestamp(ms / 1000, tz=UTC)),
    st.uuids(),
)
header_names = st.text(min_size=1, max_size=20).filter(lambda s: len(s.encode()) < 256)
messages = st.tuples(
    st.dictionaries(header_names, header_values, max_size=6), st.binary(max_size=300)
)


@settings(max_examples=200, deadline=None)
@given(st.lists(messages, min_size=1, max_size=5), st.lists(st.integers(1, 64), min_size=1))
def test_round_trip_under_arbitrary_chunking(
    frames: list[tuple[dict[str, HeaderValue], bytes]], sizes: list[int]
) -> None:
    data = b"".join(encode_message(h, p) for h, p in frames)
    got = decode_all(data, sizes)
    assert [(m.headers, m.payload) for m in got] == frames


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_any_corrupted_byte_is_detected(
    frame: tuple[dict[str, HeaderValue], bytes], data: st.DataObject
) -> None:
    raw = bytearray(encode_message(*frame))
    index = data.draw(st.integers(0, len(raw) - 1))
    flip = data.draw(st.integers(1, 255))
    raw[index] ^= flip
    decoder = EventStreamDecoder()
    # A flipped length byte may make the decoder wait for more bytes; close() then reports it.
    with pytest.raises((ChecksumMismatch, InvalidLength, IncompleteFrame, DuplicateHeader)):
        decoder.feed(bytes(raw))
        decoder.close()


def test_corrupt_message_crc_is_a_checksum_mismatch() -> None:
    raw = bytearray(encode_message(EVENT_HEADERS, b'{"x":1}'))
    raw[-1] ^= 0xFF
    with pytest.raises(ChecksumMismatch, match="message checksum"):
        EventStreamDecoder().feed(bytes(raw))


def test_corrupt_prelude_is_caught_before_the_body_arrives() -> None:
    raw = bytearray(encode_message(EVENT_HEADERS, b"x" * 1000))
    raw[2] ^= 0x10  # a total length in the megabytes
    decoder = EventStreamDecoder()
    with pytest.raises(ChecksumMismatch, match="prelude"):
        decoder.feed(bytes(raw[:12]))


def test_decoder_stays_failed_after_an_error() -> None:
    raw = bytearray(encode_message(EVENT_HEADERS, b"{}"))
    raw[-1] ^= 1
    decoder = EventStreamDecoder()
    with pytest.raises(ChecksumMismatch):
        decoder.feed(bytes(raw))
    with pytest.raises(ChecksumMismatch):
        decoder.feed(encode_message(EVENT_HEADERS, b"{}"))


def test_truncated_frame_is_an_incomplete_frame_at_close() -> None:
    data = encode_message(EVENT_HEADERS, b'{"a":1}')
    decoder = EventStreamDecoder()
    assert decoder.feed(data[:-5]) == []
    assert decoder.pending == len(data) - 5
    with pytest.raises(IncompleteFrame, match="unfinished frame"):
        decoder.close()


def test_limits_follow_botocore() -> None:
    import struct
    import zlib

    def prelude(total: int, headers: int) -> bytes:
        head = struct.pack("!II", total, headers)
        return head + struct.pack("!I", zlib.crc32(head))

    with pytest.raises(InvalidLength, match="header length"):
        EventStreamDecoder().feed(prelude(MAX_HEADERS_LENGTH + 17, MAX_HEADERS_LENGTH + 1))
    with pytest.raises(InvalidLength, match="payload length"):
        EventStreamDecoder().feed(prelude(MAX_PAYLOAD_LENGTH + 17, 0))
    with pytest.raises(InvalidLength, match="too small"):
        EventStreamDecoder().feed(prelude(10, 0))
    with pytest.raises(ValueError, match="payload"):
        encode_message({}, b"x" * (MAX_PAYLOAD_LENGTH + 1))


def test_duplicate_header_is_rejected() -> None:
    block = b"".join(b"\x01a\x07\x00\x01x" for _ in range(2))
    import struct
    import zlib

    total = 16 + len(block)
    head = struct.pack("!II", total, len(block))
    msg = head + struct.pack("!I", zlib.crc32(head)) + block
    msg += struct.pack("!I", zlib.crc32(msg))
    with pytest.raises(DuplicateHeader):
        EventStreamDecoder().feed(msg)


def test_decoding_is_linear_in_input_size() -> None:
    # One large frame fed a byte at a time must not re-copy the buffer per byte: the decoder
    # only trims once a frame completes. We check the work, not the time: bytes_fed and frames.
    payload = b"x" * 200_000
    data = encode_message(EVENT_HEADERS, payload) * 3
    decoder = EventStreamDecoder()
    got = []
    for i in range(0, len(data), 97):
        got += decoder.feed(data[i : i + 97])
    assert [len(m.payload) for m in got] == [200_000] * 3
    assert decoder.bytes_fed == len(data)
    assert decoder.pending == 0
