"""What the two OpenAI dialects share: error bodies, the SSE decoding layer, content-block
numbering, and the small conversions of tool calls, tool results and images.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Hashable, Mapping
from typing import Any

from callproof.conversation import ImagePart, ToolCall, ToolResult
from callproof.dialects._common import (
    DecoderBase,
    body_text,
    header,
    json_value,
    loads_object,
    retry_after_s,
)
from callproof.dialects.base import RawItem, ToolIdRule
from callproof.errors import HTTPStatusError, StreamExceptionError
from callproof.events import Event
from callproof.wire.sse import MAX_EVENT_BYTES, SSEComment, SSEDecoder, SSEEvent

__all__ = [
    "OPENAI_TOOL_IDS",
    "SSE_LIMIT_BYTES",
    "BlockIndex",
    "SSEStreamDecoder",
    "arguments_text",
    "check_limit",
    "data_url",
    "decode_openai_error",
    "result_text",
    "stream_error",
]

log = logging.getLogger(__name__)

#: Tool-call ids of both OpenAI APIs: OpenAI caps ids at 40 characters, and OpenRouter forwards
#: them to backends (Anthropic) that allow only ``[a-zA-Z0-9_-]``, so the strictest common form
#: is used.
OPENAI_TOOL_IDS = ToolIdRule.of("a-zA-Z0-9_-", 40)


def arguments_text(call: ToolCall) -> str:
    """A tool call's arguments as the JSON text OpenAI APIs carry (malformed raw text is
    replayed as it came)."""
    if call.arguments is None:
        return call.arguments_raw
    try:
        # Replay the model's own text when it says the same, so the request is byte-faithful.
        if call.arguments_raw and json.loads(call.arguments_raw) == call.arguments:
            return call.arguments_raw
    except ValueError:
        pass
    return json.dumps(call.arguments, ensure_ascii=False, separators=(",", ":"))


def result_text(result: ToolResult) -> str:
    """A tool result's content as the string OpenAI APIs carry."""
    if result.is_error:
        # Neither chat completions nor Responses has an error flag on tool output.
        log.debug("tool result %s: the error flag has no OpenAI field", result.tool_call_id)
    if isinstance(result.content, str):
        return result.content
    return json.dumps(result.content, ensure_ascii=False)


def data_url(part: ImagePart) -> str:
    """An inline image as a ``data:`` URL."""
    return f"data:{part.media_type};base64,{base64.b64encode(part.data).decode('ascii')}"


class BlockIndex:
    """Numbers content blocks in order of first appearance, so that text, reasoning and each
    tool call get distinct indices as Bedrock's blocks do."""

    __slots__ = ("_map",)

    def __init__(self) -> None:
        self._map: dict[Hashable, int] = {}

    def __call__(self, key: Hashable) -> int:
        return self._map.setdefault(key, len(self._map))


def _status(code: Any) -> int | None:
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.isascii() and code.isdigit() and len(code) <= 3:
        return int(code)
    return None


def _error_type(err: Mapping[str, Any]) -> str | None:
    # OpenAI's string code ("rate_limit_exceeded") is more specific than its type
    # ("requests"); OpenRouter's code is the numeric status.
    code = err.get("code")
    if isinstance(code, str) and code and not (code.isascii() and code.isdigit()):
        return code
    etype = err.get("type")
    if isinstance(etype, str) and etype:
        return etype
    return None


def _error_message(err: Mapping[str, Any], fallback: str) -> str:
    message = str(err.get("message") or fallback)
    # OpenRouter wraps the upstream provider's words in metadata.raw ("Provider returned error").
    meta = err.get("metadata")
    if isinstance(meta, dict) and meta.get("raw") and str(meta["raw"]) not in message:
        raw = str(meta["raw"])
        provider = meta.get("provider_name")
        message += f" [{provider}: {raw[:300]}]" if provider else f" [{raw[:300]}]"
    return message


def stream_error(err: Any) -> StreamExceptionError:
    """An in-stream error object (OpenRouter's mid-stream ``error`` chunk on HTTP 200, a
    Responses ``error`` event or ``response.failed``): type from ``type``/``code``, status when
    the code is numeric (OpenRouter puts the HTTP-style status there)."""
    if not isinstance(err, dict):
        err = {"message": str(err)}
    return StreamExceptionError(
        _error_message(err, "in-stream error"),
        error_type=_error_type(err),
        status=_status(err.get("code")),
        body=err,
    )


def decode_openai_error(status: int, headers: Mapping[str, str], body: bytes) -> HTTPStatusError:
    """A non-2xx answer: ``{"error": {"message", "type", "code"}}`` (OpenAI, OpenRouter, vLLM),
    also ``{"detail": ...}`` and plain text bodies."""
    try:
        parsed = json_value(body) if body.strip() else {}
    except ValueError:
        parsed = {}
    doc: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
    err = doc.get("error")
    if isinstance(err, str):
        err = {"message": err}
    if not isinstance(err, dict):
        err = doc
    fallback = str(doc.get("detail") or body_text(body) or f"HTTP {status}")
    return HTTPStatusError(
        _error_message(err, fallback),
        error_type=_error_type(err),
        status=status,
        retry_after_s=retry_after_s(headers),
        body=doc or body_text(body),
        request_id=header(headers, "x-request-id") or header(headers, "x-generation-id"),
    )


class SSEStreamDecoder(DecoderBase):
    """The SSE layer of both OpenAI decoders: bytes -> events and comments; comments are
    counted as keep-alives; ``data: [DONE]`` and JSON data are handed to the subclass."""

    def __init__(self) -> None:
        super().__init__()
        self._sse = SSEDecoder()
        self.data_events = 0

    def _feed(self, data: bytes, out: list[Event]) -> None:
        for item in self._sse.feed(data):
            if isinstance(item, SSEComment):
                self.keepalives += 1
                if self.record_raw:
                    self._raw.append(("comment", item.text))
                continue
            if self.record_raw:
                self._raw.append(("sse", item))
            self.data_events += 1
            if item.data.strip() == "[DONE]":
                self._on_done(out)
            else:
                self._on_data(item, loads_object(item.data, "an SSE data line"), out)

    def set_limit(self, limit: int) -> None:
        """The longest SSE line and the most data one event may hold, in bytes (beyond it:
        :class:`~callproof.errors.InvalidEventError`); the dialect option ``sse_limit_bytes``."""
        self._sse.max_line = self._sse.max_event = limit

    def _raw_item(self, kind: str, data: Any) -> RawItem:
        return RawItem(kind, _sse_dict(data) if kind == "sse" else data)

    def _close(self, out: list[Event]) -> None:
        if self._sse.close():
            log.debug("the stream ended inside an SSE event; it was discarded")
        self._finish(out)

    def _on_data(self, event: SSEEvent, payload: dict[str, Any], out: list[Event]) -> None:
        raise NotImplementedError

    def _on_done(self, out: list[Event]) -> None:
        raise NotImplementedError

    def _finish(self, out: list[Event]) -> None:
        raise NotImplementedError


def check_limit(value: Any) -> int:
    """A valid ``sse_limit_bytes`` dialect option (a positive int), else TypeError (which
    :func:`callproof.dialects.get_dialect` reports as bad options)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError(f"sse_limit_bytes must be a positive number of bytes, got {value!r}")
    return value


#: The default of the ``sse_limit_bytes`` dialect option.
SSE_LIMIT_BYTES = MAX_EVENT_BYTES


def _sse_dict(event: SSEEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"event": event.event, "data": event.data}
    if event.id is not None:
        out["id"] = event.id
    if event.retry is not None:
        out["retry"] = event.retry
    return out
