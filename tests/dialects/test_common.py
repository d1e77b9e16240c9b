"""The shared helpers of the dialect modules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from callproof.dialects._common import (
    RAW_ITEMS_KEPT,
    header,
    json_truncated,
    merge_extra,
    retry_after_s,
)
from callproof.dialects.openai_chat import ChatStreamDecoder
from callproof.wire.sse import encode_comment


def test_merge_extra_is_deep_for_objects_and_replaces_the_rest() -> None:
    body = {"a": {"x": 1, "y": 2}, "b": [1], "c": 3}
    merged = merge_extra(body, {"a": {"y": 20, "z": 30}, "b": [2], "d": 4})
    assert merged == {"a": {"x": 1, "y": 20, "z": 30}, "b": [2], "c": 3, "d": 4}
    assert merge_extra({"k": 1}, None) == {"k": 1}
    # None removes what the dialect wrote, at any depth
    assert merge_extra({"k": 1, "o": {"a": 1, "b": 2}}, {"k": None, "o": {"a": None}}) == {
        "o": {"b": 2}
    }


def test_headers_are_case_insensitive() -> None:
    assert header({"X-Amzn-RequestId": "r"}, "x-amzn-requestid") == "r"
    assert header({}, "x") is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after-ms": "1200"}, 1.2),
        ({"x-amz-retry-after": "250"}, 0.25),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_s(headers) == expected


def test_retry_after_as_an_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    wait = retry_after_s({"Retry-After": when})
    assert wait is not None
    assert 25 <= wait <= 31


@pytest.mark.parametrize(
    ("text", "truncated"),
    [('{"a": "unfinished', True), ('{"a": 1,', True), ('{"a": [1, 2', True), ('{"a" 1}', False)],
)
def test_json_truncated(text: str, truncated: bool) -> None:
    with pytest.raises(json.JSONDecodeError) as info:
        json.loads(text)
    assert json_truncated(info.value) is truncated


def test_raw_items_are_bounded_when_never_drained() -> None:
    decoder = ChatStreamDecoder()
    decoder.feed(encode_comment("keep-alive") * (RAW_ITEMS_KEPT + 5))
    assert decoder.keepalives == RAW_ITEMS_KEPT + 5
    assert len(decoder.raw_items()) == RAW_ITEMS_KEPT
    assert decoder.raw_items() == []
