"""What the Bedrock routes put on the wire: ConverseStream events as eventstream frames, the
Converse JSON body, modeled exceptions and HTTP errors, and the fault-shaped step lists.

Shapes follow real recordings (wire-facts.md §1-2): every event payload carries a random ``p``
padding field and sorted keys; text and reasoning blocks get no ``contentBlockStart``, tool
blocks do; every block gets ``contentBlockStop``; then ``messageStop`` and ``metadata`` last.
Sans-IO: builds bytes and :mod:`~callproof.emulator.streaming` steps, never touches a socket.
"""

from __future__ import annotations

import functools
import json
import random
import string
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from callproof.emulator.bedrock_validation import BedrockError
from callproof.emulator.faults import Fault
from callproof.emulator.models import Latency, ModelProfile, Turn, split_tokens
from callproof.emulator.streaming import Cut, Hang, Headers, Reset, Send, Sleep, Step, Trickle
from callproof.wire.eventstream import encode_message

__all__ = [
    "EVENTSTREAM",
    "Event",
    "converse_body",
    "converse_steps",
    "exception_frame",
    "frame",
    "frame_steps",
    "http_error",
    "pad_length",
    "padded_frame",
    "planned_delays",
    "stream_events",
    "stream_exception_as_http",
    "stream_steps",
]

EVENTSTREAM = "application/vnd.amazon.eventstream"
_PAD_ALPHABET = string.ascii_lowercase + string.ascii_uppercase + string.digits

#: Modeled HTTP errors: status -> (x-amzn-ErrorType, message), real strings where known.
_INTERNAL = "The system encountered an unexpected error during processing. Try your request again."
HTTP_ERRORS: dict[int, tuple[str, str]] = {
    400: (
        "ValidationException",
        "Malformed input request, please reformat your input and try again.",
    ),
    403: (
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    ),
    404: ("ResourceNotFoundException", "The requested resource could not be found."),
    408: (
        "ModelTimeoutException",
        "Model has timed out in processing the request. Try your request again.",
    ),
    424: ("ModelErrorException", "The model returned an error. Try your request again."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", _INTERNAL),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}

#: In-stream exception types -> (HTTP status, message) for their Converse (non-stream) twin.
STREAM_EXCEPTIONS: dict[str, tuple[int, str]] = {
    "internalServerException": (500, HTTP_ERRORS[500][1]),
    "modelStreamErrorException": (424, "Model Stream Error"),
    "validationException": (400, HTTP_ERRORS[400][1]),
    "throttlingException": (429, HTTP_ERRORS[429][1]),
    "serviceUnavailableException": (503, HTTP_ERRORS[503][1]),
}


@dataclass(frozen=True, slots=True)
class Event:
    """One ConverseStream event before framing; ``tokens`` paces it (0 = no wait)."""

    type: str
    payload: dict[str, Any]
    tokens: int = 0


def http_error(status: int) -> BedrockError:
    """The error ``http_error:STATUS`` answers with (429 carries ``Retry-After``)."""
    error_type, message = HTTP_ERRORS.get(
        status,
        ("InternalServerException", HTTP_ERRORS[500][1])
        if status >= 500
        else ("ValidationException", HTTP_ERRORS[400][1]),
    )
    headers = {"retry-after": "1"} if status == 429 else {}
    fields: dict[str, object] = {}
    if error_type == "ModelErrorException":
        fields = {"originalStatusCode": 500, "resourceName": "model"}
    return BedrockError(status, error_type, message, headers=headers, fields=fields)


def stream_exception_as_http(exception_type: str) -> BedrockError:
    """A stream exception type as the Converse (non-stream) API reports it."""
    status, message = STREAM_EXCEPTIONS.get(exception_type, (500, HTTP_ERRORS[500][1]))
    error_type = exception_type[:1].upper() + exception_type[1:]
    return BedrockError(status, error_type, message)


@functools.cache
def _event_headers(event_type: str) -> bytes:
    """The encoded headers of an event frame (constant per event type)."""
    empty = encode_message(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        }
    )
    return empty[12:-4]


_PRELUDE = struct.Struct("!II")
# compact with sorted keys, as recorded; one encoder, since json.dumps with options builds one
# per call
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_U32 = struct.Struct("!I")


def frame(event: Event, rng: random.Random) -> bytes:
    """One event frame with the three headers Bedrock sends, in its order.

    The same bytes as :func:`~callproof.wire.eventstream.encode_message` (a test holds them
    equal), with the headers encoded once per event type: this is the emulator's hot path.
    """
    return padded_frame(event, pad_length(rng))


def exception_frame(exception_type: str, message: str | None = None) -> bytes:
    """A modeled in-stream exception (``:message-type: exception``)."""
    _, default = STREAM_EXCEPTIONS.get(exception_type, (500, HTTP_ERRORS[500][1]))
    payload: dict[str, Any] = {"message": message or default}
    if exception_type == "modelStreamErrorException":
        payload.update(originalStatusCode=500, originalMessage="The model stream failed.")
    return encode_message(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps(payload, separators=(",", ":")).encode(),
    )


def stream_events(profile: ModelProfile, turn: Turn, latency_ms: int) -> list[Event]:
    """The ConverseStream events of ``turn`` as ``profile`` emits them."""
    events = [Event("messageStart", {"role": "assistant"})]
    index = 0

    def text_block(text: str) -> None:
        nonlocal index
        pieces = split_tokens(text) or [""]
        events.extend(
            Event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": p}}, 1)
            for p in pieces
        )
        events.append(Event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1

    empty_blocks = profile.empty_text_blocks
    if empty_blocks:
        text_block("")
    if turn.reasoning:
        for piece in split_tokens(turn.reasoning):
            delta = {"reasoningContent": {"text": piece}}
            events.append(
                Event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}, 1)
            )
        events.append(Event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    if turn.text or (empty_blocks and turn.reasoning):
        text_block(turn.text)
    for call in turn.tool_calls:
        start = {"toolUse": {"name": call.name, "toolUseId": call.id}}
        events.append(Event("contentBlockStart", {"contentBlockIndex": index, "start": start}))
        delta = {"toolUse": {"input": call.arguments}}
        events.append(Event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}, 2))
        events.append(Event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    if empty_blocks and turn.tool_calls:
        text_block("")
    events.append(Event("messageStop", {"stopReason": turn.stop_reason}))
    usage: dict[str, Any] = {
        "inputTokens": turn.input_tokens,
        "outputTokens": turn.output_tokens,
        "totalTokens": turn.input_tokens + turn.output_tokens,
    }
    if profile.kimi_tool_ids:
        usage["serverToolUsage"] = {}
    events.append(Event("metadata", {"metrics": {"latencyMs": latency_ms}, "usage": usage}))
    return events


def converse_body(
    turn: Turn, latency_ms: int, profile: ModelProfile | None = None
) -> dict[str, Any]:
    """The Converse (non-stream) response body."""
    content: list[dict[str, Any]] = []
    if turn.reasoning:
        content.append({"reasoningContent": {"reasoningText": {"text": turn.reasoning}}})
    if turn.text:
        content.append({"text": turn.text})
    for call in turn.tool_calls:
        try:
            arguments: Any = json.loads(call.arguments) if call.arguments else {}
        except ValueError:
            arguments = call.arguments  # malformed_tool_args: the document is the raw text
        content.append({"toolUse": {"toolUseId": call.id, "name": call.name, "input": arguments}})
    usage: dict[str, Any] = {
        "inputTokens": turn.input_tokens,
        "outputTokens": turn.output_tokens,
        "totalTokens": turn.input_tokens + turn.output_tokens,
    }
    if profile is not None and profile.kimi_tool_ids:
        usage["serverToolUsage"] = {}
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": turn.stop_reason,
        "usage": usage,
        "metrics": {"latencyMs": latency_ms},
    }


def planned_delays(events: list[Event], latency: Latency, rng: random.Random) -> list[float]:
    """Seconds to wait before each event: the first-event latency, then per-token pacing."""
    delays = [latency.first_delay(rng)]
    delays.extend(latency.token_delay(rng, e.tokens) for e in events[1:])
    return delays


def stream_steps(
    events: list[Event], delays: list[float], fault: Fault | None, rng: random.Random
) -> list[Step]:
    """The steps that play ``events`` with ``fault``'s timing or framing damage."""
    return frame_steps(lambda: [frame(e, rng) for e in events], delays, fault)


def pad_length(rng: random.Random) -> int:
    """The length of the ``p`` padding :func:`frame` draws (one ``rng.random()``, 1-62)."""
    return 1 + int(rng.random() * len(_PAD_ALPHABET))


def padded_frame(event: Event, pad: int) -> bytes:
    """:func:`frame` with a padding of ``pad`` characters (the bytes :func:`frame` gives for a
    draw of that length; the response plans cache them per event and length)."""
    payload = dict(event.payload, p=_PAD_ALPHABET[:pad])
    body = _JSON.encode(payload).encode()
    headers = _event_headers(event.type)
    prelude = _PRELUDE.pack(16 + len(headers) + len(body), len(headers))
    head = prelude + _U32.pack(zlib.crc32(prelude))
    crc = zlib.crc32(body, zlib.crc32(headers, zlib.crc32(head)))
    return b"".join((head, headers, body, _U32.pack(crc)))


def frame_steps(
    make_frames: Callable[[], list[bytes]], delays: list[float], fault: Fault | None
) -> list[Step]:
    """:func:`stream_steps` with the frames from ``make_frames`` (called, and so drawing its
    padding, only when the fault sends events at all)."""
    name = fault.name if fault else None
    if name == "hang_before_headers":
        return [Hang()]
    if name == "reset_before_headers":
        return [Reset()]
    if name == "hang_no_events":
        return [Headers(), Hang()]
    frames = make_frames()
    steps: list[Step] = [Headers()]
    if name == "slow_body" and fault is not None:
        steps.append(Trickle(fault.bytes_per_s))
    if fault is not None and fault.added_latency:
        steps.append(Sleep(fault.added_latency))
    sends = [Send(data, delay) for data, delay in zip(frames, delays, strict=True)]
    if name == "stall_after" and fault is not None:
        return [*steps, *sends[: fault.count], Hang()]
    if name == "close_without_stop":
        return [*steps, *sends[:-2]]
    middle = max(1, len(sends) // 2)
    if name == "reset_mid_body":
        # a pause lets the frames before the reset reach the client, as on a real network
        return [*steps, *sends[:middle], Sleep(_BEFORE_RESET_S), Reset()]
    if name == "truncate_frame":
        cut = sends[middle]
        return [*steps, *sends[:middle], Send(cut.data[: len(cut.data) // 2], cut.delay)]
    if name == "corrupt_crc":
        bad = bytearray(sends[middle].data)
        bad[-1] ^= 0xFF
        sends[middle] = Send(bytes(bad), sends[middle].delay)
        return [*steps, *sends[: middle + 1]]
    if name == "stream_exception" and fault is not None:
        return [*steps, *sends[:middle], Send(exception_frame(fault.value))]
    return [*steps, *sends]


#: Seconds between the last bytes and a ``reset_mid_body`` reset.
_BEFORE_RESET_S = 0.05


def converse_steps(body: bytes, delay: float, fault: Fault | None) -> list[Step] | None:
    """Steps for a Converse (non-stream) body under a timing or framing fault; None = plain.

    The response declares the whole body's Content-Length, so the cuts are visible as cuts:
    ``truncate_frame`` and ``close_without_stop`` send half the body and close the connection
    (HTTP/2: RST_STREAM), ``reset_mid_body`` resets it (botocore raises ``ConnectionClosedError``
    or ``IncompleteRead``, the JS SDK ``ECONNRESET``), never a complete body of broken JSON.
    """
    name = fault.name if fault else None
    half = body[: len(body) // 2]
    if name == "hang_before_headers":
        return [Hang()]
    if name == "reset_before_headers":
        return [Reset()]
    if name == "hang_no_events":
        return [Headers(), Hang()]
    if name == "stall_after":
        return [Headers(), Send(half, delay), Hang()]
    if name in ("close_without_stop", "truncate_frame"):
        return [Headers(), Send(half, delay), Cut()]
    if name == "reset_mid_body":
        return [Headers(), Send(half, delay), Sleep(_BEFORE_RESET_S), Reset()]
    if name == "corrupt_crc":
        return [Headers(), Send(body[:-1] + b"!", delay)]
    if name == "slow_body" and fault is not None:
        return [Headers(), Trickle(fault.bytes_per_s), Send(body, delay)]
    return None
