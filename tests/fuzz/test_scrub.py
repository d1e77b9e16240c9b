"""Hypothesis properties of capture scrubbing (:mod:`callproof.scrub_body`).

* A body without a secret comes back exactly as it was read: the same bytes in the same reads
  at the same times.
* A body with a reflected secret, cut into deltas anywhere (the secret split across events)
  and read in arbitrary chunks, comes back without the secret in any form, and decodes with
  the real decoder to the same outcome and the same text, the secret replaced.
"""

from __future__ import annotations

import base64
import json
import secrets

from hypothesis import given, settings
from hypothesis import strategies as st

from callproof import redact, scrub_body
from callproof.dialects import get_dialect
from callproof.events import StreamStop, TextDelta
from callproof.redact import REDACTED
from callproof.scrub_body import BodyScrubber
from callproof.wire.eventstream import encode_message
from callproof.wire.sse import encode_comment, encode_event

SECRET = f"fuzz-secret-{secrets.token_hex(8)}"
redact.remember(SECRET)

FUZZ = settings(max_examples=60, deadline=None)
words = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)


def bedrock(deltas: list[str]) -> bytes:
    def frame(event: str, payload: dict[str, object]) -> bytes:
        return encode_message(
            {":message-type": "event", ":event-type": event, ":content-type": "application/json"},
            json.dumps(payload).encode(),
        )

    return b"".join(
        [frame("messageStart", {"role": "assistant"})]
        + [
            frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": d}})
            for d in deltas
        ]
        + [frame("contentBlockStop", {"contentBlockIndex": 0})]
        + [frame("messageStop", {"stopReason": "end_turn"})]
    )


def chat(deltas: list[str]) -> bytes:
    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        return encode_event(
            json.dumps(
                {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "model": "m",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )
        )

    return (
        b"".join(chunk({"content": d}) + encode_comment("ka") for d in deltas)
        + chunk({}, "stop")
        + encode_event("[DONE]")
    )


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(text[last:p])
        last = p
    pieces.append(text[last:])
    return [p for p in pieces if p]


def read(body: bytes, sizes: list[int]) -> list[tuple[float, bytes]]:
    reads, pos, i = [], 0, 0
    while pos < len(body):
        n = sizes[i % len(sizes)]
        reads.append((i * 0.01, body[pos : pos + n]))
        pos += n
        i += 1
    return reads


def scrubbed(
    reads: list[tuple[float, bytes]], *, eventstream: bool, segment: int = 1 << 20
) -> list[tuple[float, bytes]]:
    """Scrub ``reads``, in segments of ``segment`` bytes (small ones exercise the carry of
    units from one segment to the next)."""
    saved = scrub_body.SEGMENT_BYTES, scrub_body.CARRY_UNITS
    scrub_body.SEGMENT_BYTES = segment
    scrub_body.CARRY_UNITS = 32 if segment > 1000 else 16
    try:
        scrubber = BodyScrubber(eventstream=eventstream)
        out: list[tuple[float, bytes]] = []
        for t, data in reads:
            out += scrubber.feed(t, data)
        return out + scrubber.finish()
    finally:
        scrub_body.SEGMENT_BYTES, scrub_body.CARRY_UNITS = saved


def merge(pieces: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    out: list[tuple[float, bytes]] = []
    for t, data in pieces:
        if out and out[-1][0] == t:
            out[-1] = (t, out[-1][1] + data)
        else:
            out.append((t, data))
    return out


def decoded_text(api: str, body: bytes) -> tuple[str, bool]:
    decoder = get_dialect(api).stream_decoder()
    events = decoder.feed(body) + decoder.close()
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    return text, any(isinstance(e, StreamStop) for e in events)


sizes_st = st.lists(st.integers(1, 97), min_size=1, max_size=5)


segments = st.sampled_from([1 << 20, 64, 300])


@FUZZ
@given(st.lists(words, min_size=1, max_size=6), sizes_st, st.booleans(), segments)
def test_a_body_without_secrets_comes_back_exactly(
    deltas: list[str], sizes: list[int], eventstream: bool, segment: int
) -> None:
    body = bedrock(deltas) if eventstream else chat(deltas)
    reads = read(body, sizes)
    assert merge(scrubbed(reads, eventstream=eventstream, segment=segment)) == reads


@FUZZ
@given(
    words,
    words,
    st.lists(st.integers(0, 200), max_size=6),
    sizes_st,
    st.sampled_from(["raw", "base64", "percent"]),
    st.booleans(),
    segments,
    st.integers(0, 40),
)
def test_a_reflected_secret_is_gone_and_the_outcome_is_the_same(
    before: str,
    after: str,
    cuts: list[int],
    sizes: list[int],
    form: str,
    eventstream: bool,
    segment: int,
    filler: int,
) -> None:
    """``filler`` deltas first, so that small segments are emitted before the secret."""
    from urllib.parse import quote

    shown = {
        "raw": SECRET,
        "base64": base64.b64encode(SECRET.encode()).decode(),
        "percent": quote(SECRET, safe=""),
    }[form]
    text = f"{before} {shown} {after}"
    deltas = ["f"] * filler + split(text, cuts)
    api = "bedrock-converse-stream" if eventstream else "openai-completions"
    body = bedrock(deltas) if eventstream else chat(deltas)
    pieces = scrubbed(read(body, sizes), eventstream=eventstream, segment=segment)
    out = b"".join(d for _, d in pieces)
    assert shown.encode() not in out
    assert SECRET.encode() not in out
    times = [t for t, _ in pieces]
    assert times == sorted(times)
    got, stopped = decoded_text(api, out)
    assert stopped
    assert got == "f" * filler + f"{before} {REDACTED} {after}"
