"""The SSE codec per the HTML standard, and real OpenRouter/OpenAI recordings."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callproof.wire.sse import (
    SSEComment,
    SSEDecoder,
    SSEEvent,
    SSEItem,
    encode_comment,
    encode_event,
)
from tests.recordings import text_bodies


def decode(data: bytes, sizes: list[int] | None = None) -> list[SSEItem]:
    decoder = SSEDecoder()
    out: list[SSEItem] = []
    sizes = sizes or [len(data) or 1]
    pos = i = 0
    while pos < len(data):
        step = sizes[i % len(sizes)]
        out += decoder.feed(data[pos : pos + step])
        pos += step
        i += 1
    decoder.close()
    return out


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_line_endings(eol: bytes) -> None:
    data = eol.join([b"event: add", b"data: 1", b"data: 2", b"id: 7", b"", b"data: x", b"", b""])
    for sizes in ([1], [2], [len(data)]):
        assert decode(data, sizes) == [
            SSEEvent(data="1\n2", event="add", id="7"),
            SSEEvent(data="x", event="message", id="7"),
        ]


def test_crlf_split_across_feeds_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n\r\n") == [SSEEvent(data="a")]


def test_spec_details() -> None:
    data = (
        b"\xef\xbb\xbfdata: first\n\n"  # BOM dropped
        b": OPENROUTER PROCESSING\n"
        b"data\n\n"  # a field with no colon: empty data dispatches an event with ""
        b"data:no-space\n\n"
        b"data:  two-spaces\n\n"
        b"id: a\x00b\ndata: nul-id-ignored\n\n"
        b"retry: 3000\ndata: r\n\n"
        b"retry: 3x\nunknown: field\ndata: r2\n\n"
        b"event: only-event\n\n"  # no data: nothing dispatched
        b"data: unfinished"  # discarded at EOF
    )
    decoder = SSEDecoder()
    items = decoder.feed(data)
    assert items == [
        SSEEvent(data="first"),
        SSEComment("OPENROUTER PROCESSING"),
        SSEEvent(data=""),
        SSEEvent(data="no-space"),
        SSEEvent(data=" two-spaces"),
        SSEEvent(data="nul-id-ignored"),
        SSEEvent(data="r", retry=3000),
        SSEEvent(data="r2"),
    ]
    assert decoder.retry == 3000
    assert decoder.close() is True


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert decode(b"data: \xff\xfe\n\n") == [SSEEvent(data="\ufffd\ufffd")]


line_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=["Cs"])
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(line_text, min_size=1, max_size=4).map("\n".join),
            st.none() | line_text.filter(lambda s: s != "" and not s.startswith(" ")),
            st.none() | line_text.filter(lambda s: not s.startswith(" ")),
            st.none() | st.integers(0, 10**9),
        ),
        min_size=1,
        max_size=6,
    ),
    st.lists(st.integers(1, 17), min_size=1),
)
def test_round_trip_under_arbitrary_chunking(
    events: list[tuple[str, str | None, str | None, int | None]], sizes: list[int]
) -> None:
    data = b"".join(
        encode_comment("keep-alive") + encode_event(d, event=e, id=i, retry=r)
        for d, e, i, r in events
    )
    got = [item for item in decode(data, sizes) if isinstance(item, SSEEvent)]
    last_id = None
    expected = []
    for d, e, i, r in events:
        last_id = i if i is not None else last_id
        expected.append(SSEEvent(data=d, event=e or "message", id=last_id, retry=r))
    assert got == expected


@pytest.mark.parametrize(
    "name",
    [
        "llmor_tool_calls_chat_603cd08.yaml",
        "pa_test_openrouter_stream_error.yaml",
        "pa_temporal_complex_agent_run.yaml",
        "llmor_tool_calls.yaml",
    ],
)
def test_real_recordings_decode_identically_at_any_split(name: str) -> None:
    for body in text_bodies(name):
        raw = body.encode()
        whole = decode(raw)
        assert decode(raw, [1]) == whole
        assert decode(raw, [3, 5, 7]) == whole
        for item in whole:
            if isinstance(item, SSEEvent) and item.data != "[DONE]":
                json.loads(item.data)  # every data line of a real stream is one JSON document


def test_openrouter_keepalives_are_comments() -> None:
    (body,) = text_bodies("pa_test_openrouter_stream_error.yaml")
    items = decode(body.encode(), [9])
    comments = [i for i in items if isinstance(i, SSEComment)]
    assert len(comments) == 17
    assert {c.text for c in comments} == {"OPENROUTER PROCESSING"}
    errors = [json.loads(i.data) for i in items if isinstance(i, SSEEvent) and '"error"' in i.data]
    assert errors
    assert errors[0]["error"]["message"] == "Token limit reached"
