"""Hypothesis fuzzing of every decoder: on any input, only callproof's typed errors.

Each test is bounded (``FUZZ_EXAMPLES`` examples, 50 by default, no deadline) so that it runs in
a few seconds on a loaded machine (150 examples took over 120 s with two CPU hogs and other
work on 2 cores); ``CALLPROOF_FUZZ_EXAMPLES=5000`` makes a longer campaign of the same tests.
The inputs mix raw bytes with well-framed streams whose JSON is hostile:
values of every type where a dialect expects an index, a code or a count, deep nesting, huge
numbers and lone surrogates.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callproof.dialects import API_NAMES, get_dialect
from callproof.dialects.base import StreamDecoder
from callproof.errors import CallproofError
from callproof.wire.eventstream import EventStreamDecoder, encode_message
from callproof.wire.sse import SSEDecoder, encode_event

FUZZ_EXAMPLES = int(os.environ.get("CALLPROOF_FUZZ_EXAMPLES", "50"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([1e999, -1e999, 1e308, 0.5, -1]),
    st.text(max_size=8),
    st.sampled_from(["\ud800", "²", "٣", "9" * 5000, "stop", "tool_use", "end_turn"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)

CHAT_KEYS = [
    "id",
    "model",
    "choices",
    "index",
    "delta",
    "content",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "finish_reason",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_content",
    "reasoning",
    "error",
    "code",
    "message",
    "role",
    "type",
]
RESPONSES_TYPES = [
    "response.created",
    "response.in_progress",
    "response.output_text.delta",
    "response.output_text.done",
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "error",
    "response.reasoning_summary_text.delta",
]
RESPONSES_KEYS = [
    "type",
    "output_index",
    "content_index",
    "item",
    "item_id",
    "delta",
    "text",
    "arguments",
    "response",
    "id",
    "call_id",
    "name",
    "usage",
    "status",
    "error",
    "code",
    "message",
    "encrypted_content",
    "output",
    "content",
]
BEDROCK_TYPES = [
    "messageStart",
    "contentBlockStart",
    "contentBlockDelta",
    "contentBlockStop",
    "messageStop",
    "metadata",
    "throttlingException",
    "unknownEvent",
]
BEDROCK_KEYS = [
    "role",
    "contentBlockIndex",
    "start",
    "toolUse",
    "toolUseId",
    "name",
    "delta",
    "text",
    "input",
    "reasoningContent",
    "signature",
    "redactedContent",
    "stopReason",
    "usage",
    "inputTokens",
    "outputTokens",
    "totalTokens",
    "metrics",
    "latencyMs",
    "message",
    "output",
    "content",
    "additionalModelResponseFields",
]


def shaped(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the keys a dialect reads, holding anything."""
    return st.recursive(
        st.dictionaries(st.sampled_from(keys), json_values, max_size=5),
        lambda inner: st.dictionaries(
            st.sampled_from(keys), inner | st.lists(inner, max_size=2) | json_values, max_size=5
        ),
        max_leaves=10,
    )


def dump(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


def feed_all(decoder: StreamDecoder, data: bytes, sizes: list[int]) -> None:
    pos = i = 0
    try:
        while pos < len(data):
            step = sizes[i % len(sizes)]
            decoder.feed(data[pos : pos + step])
            pos += step
            i += 1
        decoder.close()
    except CallproofError:
        pass


chunkings = st.lists(st.integers(1, 64), min_size=1, max_size=4)


@FUZZ
@given(st.binary(max_size=400), chunkings, st.sampled_from(API_NAMES), st.booleans())
def test_any_bytes_give_only_typed_errors(
    data: bytes, sizes: list[int], api: str, stream: bool
) -> None:
    options = {} if api.startswith("bedrock") else {"stream": stream}
    feed_all(get_dialect(api, **options).stream_decoder(), data, sizes)


@FUZZ
@given(
    st.lists(shaped(CHAT_KEYS) | json_values.map(lambda v: {"choices": [v]}), max_size=6),
    st.booleans(),
    chunkings,
)
def test_chat_stream(payloads: list[Any], done: bool, sizes: list[int]) -> None:
    body = b"".join(encode_event(dump(p)) for p in payloads)
    if done:
        body += encode_event("[DONE]")
    feed_all(get_dialect("openai-completions").stream_decoder(), body, sizes)
    if payloads:
        feed_all(
            get_dialect("openai-completions", stream=False).stream_decoder(),
            dump(payloads[0]).encode(),
            sizes,
        )


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from(RESPONSES_TYPES), shaped(RESPONSES_KEYS)), max_size=6),
    chunkings,
)
def test_responses_stream(events: list[tuple[str, dict[str, Any]]], sizes: list[int]) -> None:
    body = b"".join(encode_event(dump({**p, "type": t}), event=t) for t, p in events)
    feed_all(get_dialect("openai-responses").stream_decoder(), body, sizes)
    for _, payload in events[:1]:
        feed_all(
            get_dialect("openai-responses", stream=False).stream_decoder(),
            dump(payload).encode(),
            sizes,
        )


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["event", "exception", "error"]),
            st.sampled_from(BEDROCK_TYPES),
            shaped(BEDROCK_KEYS) | json_values,
        ),
        max_size=6,
    ),
    chunkings,
)
def test_bedrock_stream(frames: list[tuple[str, str, Any]], sizes: list[int]) -> None:
    body = b"".join(
        encode_message(
            {
                ":message-type": kind,
                (":exception-type" if kind == "exception" else ":event-type"): etype,
                ":content-type": "application/json",
            },
            dump(payload).encode(),
        )
        for kind, etype, payload in frames
    )
    feed_all(get_dialect("bedrock-converse-stream").stream_decoder(), body, sizes)
    for _, _, payload in frames[:1]:
        feed_all(get_dialect("bedrock-converse").stream_decoder(), dump(payload).encode(), sizes)


@FUZZ
@given(
    st.integers(100, 599),
    st.dictionaries(
        st.sampled_from(
            [
                "retry-after",
                "retry-after-ms",
                "x-amz-retry-after",
                "x-request-id",
                "x-amzn-errortype",
                "x-amzn-requestid",
            ]
        ),
        st.text(max_size=20),
        max_size=3,
    ),
    st.binary(max_size=200) | shaped(CHAT_KEYS + BEDROCK_KEYS).map(lambda v: dump(v).encode()),
    st.sampled_from(API_NAMES),
)
def test_error_bodies(status: int, headers: dict[str, str], body: bytes, api: str) -> None:
    err = get_dialect(api).decode_error(status, headers, body)
    assert err.status == status
    str(err).encode("utf-8")


@FUZZ
@given(st.binary(max_size=600), chunkings)
def test_sse_codec(data: bytes, sizes: list[int]) -> None:
    decoder = SSEDecoder(max_line=256, max_event=256)
    pos = i = 0
    try:
        while pos < len(data):
            decoder.feed(data[pos : pos + sizes[i % len(sizes)]])
            pos += sizes[i % len(sizes)]
            i += 1
    except CallproofError:
        return
    decoder.close()


@FUZZ
@given(st.binary(max_size=600), chunkings)
def test_eventstream_codec(data: bytes, sizes: list[int]) -> None:
    decoder = EventStreamDecoder()
    pos = i = 0
    try:
        while pos < len(data):
            decoder.feed(data[pos : pos + sizes[i % len(sizes)]])
            pos += sizes[i % len(sizes)]
            i += 1
        decoder.close()
    except CallproofError:
        pass


capture_lines = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["request", "response", "chunk", "raw", "end", "x"])},
            optional={
                "t": json_values,
                "status": json_values,
                "headers": json_values,
                "b64": st.sampled_from(["", "AAAA", "!!", "ZGF0YTogW0RPTkVdCgo="]) | json_values,
                "eof": json_values,
                "error": json_values,
            },
        ).map(dump),
        st.text(max_size=30),
    ),
    max_size=6,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(API_NAMES), json_values, capture_lines)
def test_capture_files(api: str, timeouts: Any, lines: list[str]) -> None:
    import tempfile
    from pathlib import Path

    from callproof.capture import decode_capture

    meta = dump(
        {
            "type": "meta",
            "format": "callproof-capture",
            "version": 1,
            "api": api,
            "timeouts": timeouts,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.jsonl"
        path.write_text("\n".join([meta, *lines]) + "\n", encoding="utf-8", errors="replace")
        with contextlib.suppress(CallproofError):
            decode_capture(path)
