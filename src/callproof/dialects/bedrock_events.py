"""Response decoding for Bedrock ConverseStream (eventstream frames) and Converse (one JSON
document), into :mod:`callproof.events`.

The layers: bytes -> :class:`~callproof.wire.eventstream.EventStreamDecoder` frames -> one
handler per ``:event-type`` -> typed events. Facts this relies on (see wire-facts.md §1,
recorded in tests/fixtures/recorded):

* every payload carries random ``p`` padding, and new members appear over time: unknown fields
  and unknown event types are ignored, never fatal (as botocore does);
* text and reasoning blocks get no ``contentBlockStart``; tool blocks do, and their ``input``
  arrives as JSON text fragments to concatenate per block index;
* ``metadata`` (usage) normally follows ``messageStop`` but may precede it, so the terminal
  :class:`~callproof.events.StreamStop` waits for both, or for the end of the body;
* truncation is silent in boto3; here a body that ends without ``messageStop`` raises
  :class:`~callproof.errors.IncompleteStreamError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from callproof.dialects._common import (
    DecoderBase,
    JSONBodyDecoder,
    b64,
    int_or_none,
    json_value,
    loads_object,
)
from callproof.dialects.base import RawItem
from callproof.errors import (
    IncompleteStreamError,
    InvalidEventError,
    StreamExceptionError,
)
from callproof.events import (
    Event,
    StreamStart,
    StreamStop,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    normalise_stop_reason,
)
from callproof.wire.eventstream import EventStreamDecoder, EventStreamMessage

__all__ = [
    "EXCEPTION_STATUS",
    "ConverseBodyDecoder",
    "ConverseStreamDecoder",
    "bedrock_usage",
    "exception_error",
    "frame_dict",
]

log = logging.getLogger(__name__)

#: HTTP status of Bedrock's modeled exceptions (service model ``error.httpStatusCode``), by
#: lower-cased name; in-stream exception frames carry only the name.
EXCEPTION_STATUS = {
    "throttlingexception": 429,
    "modelstreamerrorexception": 424,
    "internalserverexception": 500,
    "serviceunavailableexception": 503,
    "validationexception": 400,
    "modeltimeoutexception": 408,
    "accessdeniedexception": 403,
    "resourcenotfoundexception": 404,
    "modelnotreadyexception": 429,
    "modelerrorexception": 424,
    "servicequotaexceededexception": 400,
}


def frame_dict(msg: EventStreamMessage, payload: str | None = None) -> dict[str, Any]:
    """A frame as a JSON-ready dict ``{"headers", "payload"}`` for capture; payloads that are
    not UTF-8 go in ``payload_base64`` instead. ``payload`` is the already decoded text."""
    headers: dict[str, Any] = msg.headers
    if not all(type(v) is str for v in headers.values()):
        headers = {
            name: value
            if isinstance(value, str | bool | int)
            else b64(value)
            if isinstance(value, bytes)
            else str(value)
            for name, value in headers.items()
        }
    if payload is None:
        try:
            payload = msg.payload.decode("utf-8")
        except UnicodeDecodeError:
            return {"headers": headers, "payload_base64": b64(msg.payload)}
    return {"headers": headers, "payload": payload}


def bedrock_usage(raw: Any) -> Usage | None:
    """TokenUsage (also the legacy ``cache*InputTokenCount`` keys some models still send)."""
    if not isinstance(raw, dict):
        return None
    cache_read = raw.get("cacheReadInputTokens", raw.get("cacheReadInputTokenCount"))
    cache_write = raw.get("cacheWriteInputTokens", raw.get("cacheWriteInputTokenCount"))
    return Usage(
        input_tokens=int_or_none(raw.get("inputTokens")),
        output_tokens=int_or_none(raw.get("outputTokens")),
        total_tokens=int_or_none(raw.get("totalTokens")),
        cache_read_tokens=int_or_none(cache_read),
        cache_write_tokens=int_or_none(cache_write),
    )


def exception_error(msg: EventStreamMessage) -> StreamExceptionError:
    """The error for a ``:message-type`` ``exception`` or ``error`` frame."""
    if msg.message_type == "error":
        code = msg.header(":error-code") or "unknownError"
        text = msg.header(":error-message") or msg.payload.decode("utf-8", "replace") or code
        return StreamExceptionError(text, error_type=code, body=frame_dict(msg))
    etype = msg.exception_type or "unknownException"
    try:
        payload = json_value(msg.payload) if msg.payload else {}
    except ValueError:
        payload = {"message": msg.payload.decode("utf-8", "replace")}
    if not isinstance(payload, dict):
        payload = {"message": str(payload)}
    message = str(payload.get("message") or payload.get("Message") or etype)
    original = payload.get("originalStatusCode")
    if original is not None or payload.get("originalMessage"):
        message += f" (original status {original}: {payload.get('originalMessage', '')})"
    return StreamExceptionError(
        message, error_type=etype, status=EXCEPTION_STATUS.get(etype.lower()), body=payload
    )


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _index(payload: dict[str, Any]) -> int:
    index = payload.get("contentBlockIndex", 0)
    if isinstance(index, bool) or not isinstance(index, int):
        raise InvalidEventError(f"contentBlockIndex is not an integer: {index!r}")
    return index


def _redacted(data: Any) -> bytes:
    try:
        return base64.b64decode(str(data), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidEventError(f"redactedContent is not base64: {exc}") from exc


@dataclass(slots=True)
class _ToolBlock:
    id: str
    name: str
    parts: list[str] = field(default_factory=list)


class ConverseStreamDecoder(DecoderBase):
    """ConverseStream body bytes in, typed events out (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._frames = EventStreamDecoder()
        self._started = False
        self._stop: tuple[str | None, bool] | None = None  # (raw stopReason, emitted)
        self._usage: Usage | None = None
        self._metadata = False
        self._tools: dict[int, _ToolBlock] = {}
        # Blocks of server-side tools (Nova code interpreter): run by Bedrock, not by the
        # caller, so they are not tool calls of the response.
        self._server_blocks: set[int] = set()

    @property
    def frames(self) -> int:
        """Frames decoded so far."""
        return self._frames.frames_decoded

    def _feed(self, data: bytes, out: list[Event]) -> None:
        for msg in self._frames.feed(data):
            try:
                text: str | None = msg.payload.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if self.record_raw:
                self._raw.append(("frame", (msg, text)))
            self._on_frame(msg, text, out)

    def _raw_item(self, kind: str, data: Any) -> RawItem:
        return RawItem(kind, frame_dict(*data))

    def _on_frame(self, msg: EventStreamMessage, text: str | None, out: list[Event]) -> None:
        mtype = msg.headers.get(":message-type", "event")
        if mtype == "exception" or mtype == "error":
            raise exception_error(msg)
        if mtype != "event":
            log.debug("ignored a frame of :message-type %r", mtype)
            return
        etype = msg.headers.get(":event-type")
        if etype not in _KNOWN_EVENTS:
            log.debug("ignored an unknown event type %r", etype)
            return
        if text is None:
            raise InvalidEventError(f"{etype} event payload is not UTF-8")
        payload = loads_object(text, f"{etype} event") if text else {}
        match etype:
            case "messageStart":
                self._message_start(payload, out)
            case "contentBlockStart":
                self._block_start(payload, out)
            case "contentBlockDelta":
                self._block_delta(payload, out)
            case "contentBlockStop":
                self._block_stop(payload, out)
            case "messageStop":
                self._message_stop(payload, out)
            case "metadata":
                self._on_metadata(payload, out)

    def _message_start(self, payload: dict[str, Any], out: list[Event]) -> None:
        if not self._started:
            self._started = True
            out.append(StreamStart(role=str(payload.get("role") or "assistant")))

    def _ensure_started(self, out: list[Event]) -> None:
        # A stream missing messageStart still has a start for the client's clocks.
        if not self._started:
            self._started = True
            out.append(StreamStart())

    def _block_start(self, payload: dict[str, Any], out: list[Event]) -> None:
        self._ensure_started(out)
        index = _index(payload)
        tool = _as_dict(_as_dict(payload.get("start")).get("toolUse"))
        if not tool:
            return  # toolResult/image starts of server-side tools carry nothing for us
        if tool.get("type") == "server_tool_use":
            self._server_blocks.add(index)
            log.debug("server tool %r in block %d is not a tool call", tool.get("name"), index)
            return
        block = _ToolBlock(id=str(tool.get("toolUseId", "")), name=str(tool.get("name", "")))
        self._tools[index] = block
        out.append(ToolCallStart(index=index, id=block.id, name=block.name))

    def _block_delta(self, payload: dict[str, Any], out: list[Event]) -> None:
        if not self._started:
            self._ensure_started(out)
        index = payload.get("contentBlockIndex", 0)
        if type(index) is not int:
            index = _index(payload)
        delta = payload.get("delta")
        if type(delta) is not dict:
            return
        # The hot path first: most events of a stream are text deltas.
        text = delta.get("text")
        if text is not None:
            if text and type(text) is str:
                out.append(TextDelta(index=index, text=text))
        elif "toolUse" in delta:
            self._tool_delta(index, _as_dict(delta["toolUse"]).get("input", ""), out)
        elif "reasoningContent" in delta:
            rc = _as_dict(delta["reasoningContent"])
            text = rc.get("text")
            if isinstance(text, str) and text:
                out.append(ThinkingDelta(index=index, text=text))
            if rc.get("signature"):
                out.append(ThinkingDelta(index=index, signature=str(rc["signature"])))
            if rc.get("redactedContent"):
                out.append(ThinkingDelta(index=index, redacted=_redacted(rc["redactedContent"])))
        # toolResult, citation and image deltas belong to server-side tools and documents.

    def _tool_delta(self, index: int, fragment: Any, out: list[Event]) -> None:
        if index in self._server_blocks:
            return
        if not isinstance(fragment, str):  # a whole document instead of JSON text
            fragment = json.dumps(fragment, ensure_ascii=False)
        block = self._tools.get(index)
        if block is None:
            block = self._tools[index] = _ToolBlock(id="", name="")
            out.append(ToolCallStart(index=index, id="", name=""))
        if fragment:
            block.parts.append(fragment)
            out.append(ToolCallDelta(index=index, arguments=fragment))

    def _end_tool(self, index: int, out: list[Event]) -> None:
        block = self._tools.pop(index)
        out.append(
            ToolCallEnd(index=index, id=block.id, name=block.name, arguments="".join(block.parts))
        )

    def _block_stop(self, payload: dict[str, Any], out: list[Event]) -> None:
        index = _index(payload)
        if index in self._tools:
            self._end_tool(index, out)

    def _message_stop(self, payload: dict[str, Any], out: list[Event]) -> None:
        self._ensure_started(out)
        for index in sorted(self._tools):  # tool blocks the stream never stopped
            self._end_tool(index, out)
        raw = payload.get("stopReason")
        self._stop = (raw if isinstance(raw, str) else None, False)
        if self._metadata:
            self._emit_stop(out)

    def _on_metadata(self, payload: dict[str, Any], out: list[Event]) -> None:
        self._metadata = True
        self._usage = bedrock_usage(payload.get("usage"))
        if self._stop is not None and not self._stop[1]:
            self._emit_stop(out)

    def _emit_stop(self, out: list[Event]) -> None:
        assert self._stop is not None
        raw = self._stop[0]
        self._stop = (raw, True)
        out.append(
            StreamStop(
                stop_reason=normalise_stop_reason(raw), raw_stop_reason=raw, usage=self._usage
            )
        )

    def _close(self, out: list[Event]) -> None:
        self._frames.close()  # IncompleteFrame when the body ended inside a frame
        if self._stop is None:
            what = "an empty body" if not self.frames else f"{self.frames} frames"
            raise IncompleteStreamError(f"ConverseStream ended without messageStop ({what})")
        if not self._stop[1]:
            self._emit_stop(out)


_KNOWN_EVENTS = frozenset(
    {
        "messageStart",
        "contentBlockStart",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    }
)


class ConverseBodyDecoder(JSONBodyDecoder):
    """A Converse (non-streaming) JSON body, decoded at ``close`` into the same events as a
    stream, so the client has one code path."""

    what = "the Converse body"

    def _document(self, doc: dict[str, Any], out: list[Event]) -> None:
        message = _as_dict(_as_dict(doc.get("output")).get("message"))
        raw = doc.get("stopReason")
        if not message and raw is None:
            raise InvalidEventError("the Converse body has neither output.message nor stopReason")
        out.append(StreamStart(role=str(message.get("role") or "assistant")))
        content = message.get("content")
        for index, block in enumerate(content if isinstance(content, list) else []):
            self._block(index, _as_dict(block), out)
        if not isinstance(raw, str):
            raise IncompleteStreamError("the Converse body has no stopReason")
        out.append(
            StreamStop(
                stop_reason=normalise_stop_reason(raw),
                raw_stop_reason=raw,
                usage=bedrock_usage(doc.get("usage")),
            )
        )

    @staticmethod
    def _block(index: int, block: dict[str, Any], out: list[Event]) -> None:
        if isinstance(block.get("text"), str):
            if block["text"]:
                out.append(TextDelta(index=index, text=block["text"]))
        elif "reasoningContent" in block:
            rc = _as_dict(block["reasoningContent"])
            rt = _as_dict(rc.get("reasoningText"))
            if rt.get("text"):
                out.append(ThinkingDelta(index=index, text=str(rt["text"])))
            if rt.get("signature"):
                out.append(ThinkingDelta(index=index, signature=str(rt["signature"])))
            if rc.get("redactedContent"):
                out.append(ThinkingDelta(index=index, redacted=_redacted(rc["redactedContent"])))
        elif "toolUse" in block:
            tool = _as_dict(block["toolUse"])
            if tool.get("type") == "server_tool_use":
                return
            tid, name = str(tool.get("toolUseId", "")), str(tool.get("name", ""))
            args = tool.get("input", {})
            raw_args = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            out.append(ToolCallStart(index=index, id=tid, name=name))
            if raw_args:
                out.append(ToolCallDelta(index=index, arguments=raw_args))
            out.append(ToolCallEnd(index=index, id=tid, name=name, arguments=raw_args))
