"""The ``openai-responses`` dialect: ``POST /responses`` with ``stream: true`` (OpenAI, and
OpenRouter's Responses API).

The stream is SSE whose data are ``response.*`` events named by their ``type`` (OpenRouter
omits the SSE ``event:`` line and ends with ``data: [DONE]``; OpenAI sends ``event:`` and no
``[DONE]``: both are accepted). ``response.completed`` (or ``response.incomplete``) is the
terminal event; a body that ends without it raises
:class:`~callproof.errors.IncompleteStreamError`. ``response.failed`` and ``error`` events
raise :class:`~callproof.errors.StreamExceptionError`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from callproof.conversation import (
    AssistantMessage,
    Conversation,
    ImagePart,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolChoice,
    ToolResult,
    UserMessage,
)
from callproof.dialects._common import JSONBodyDecoder, dumps, int_or_none, merge_extra
from callproof.dialects.base import ApiName, Family, StreamDecoder, ToolIdRule, WireRequest
from callproof.dialects.openai_common import (
    OPENAI_TOOL_IDS,
    SSE_LIMIT_BYTES,
    BlockIndex,
    SSEStreamDecoder,
    arguments_text,
    check_limit,
    data_url,
    decode_openai_error,
    result_text,
    stream_error,
)
from callproof.errors import HTTPStatusError, IncompleteStreamError
from callproof.events import (
    Event,
    StopReason,
    StreamStart,
    StreamStop,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from callproof.wire.sse import SSEEvent

__all__ = [
    "INCOMPLETE_REASONS",
    "OpenAIResponses",
    "ResponsesBodyDecoder",
    "ResponsesStreamDecoder",
    "response_input",
    "responses_usage",
]

log = logging.getLogger(__name__)

#: ``incomplete_details.reason`` in Bedrock's vocabulary.
INCOMPLETE_REASONS: dict[str, StopReason] = {
    "max_output_tokens": "max_tokens",
    "content_filter": "content_filtered",
}


def responses_usage(raw: Any) -> Usage | None:
    """Usage of a response (``input_tokens``, ``output_tokens``, details)."""
    if not isinstance(raw, dict):
        return None
    inp = raw.get("input_tokens_details")
    inp = inp if isinstance(inp, dict) else {}
    outp = raw.get("output_tokens_details")
    outp = outp if isinstance(outp, dict) else {}
    return Usage(
        input_tokens=int_or_none(raw.get("input_tokens")),
        output_tokens=int_or_none(raw.get("output_tokens")),
        total_tokens=int_or_none(raw.get("total_tokens")),
        cache_read_tokens=int_or_none(inp.get("cached_tokens")),
        reasoning_tokens=int_or_none(outp.get("reasoning_tokens")),
    )


# -- request ---------------------------------------------------------------------------------


def _user_items(msg: UserMessage) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [
        {"type": "function_call_output", "call_id": p.tool_call_id, "output": result_text(p)}
        for p in msg.content
        if isinstance(p, ToolResult)
    ]
    rest = [p for p in msg.content if isinstance(p, TextPart | ImagePart)]
    if len(rest) == 1 and isinstance(rest[0], TextPart):
        items.append({"role": "user", "content": rest[0].text})
    elif rest:
        content = [
            {"type": "input_text", "text": p.text}
            if isinstance(p, TextPart)
            else {"type": "input_image", "image_url": data_url(p)}
            for p in rest
        ]
        items.append({"role": "user", "content": content})
    return items


def _assistant_items(msg: AssistantMessage, replay: bool) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for part in msg.content:
        if isinstance(part, ThinkingPart):
            if not replay:
                log.debug("reasoning of an assistant turn not replayed (reasoning_replay off)")
                continue
            item: dict[str, Any] = {"type": "reasoning", "summary": []}
            if part.text:
                item["summary"] = [{"type": "summary_text", "text": part.text}]
            if part.redacted is not None:
                item["encrypted_content"] = part.redacted.decode("utf-8", "replace")
            items.append(item)
        elif isinstance(part, TextPart):
            if part.text:
                items.append({"role": "assistant", "content": part.text})
        elif isinstance(part, ToolCall):
            items.append(
                {
                    "type": "function_call",
                    "call_id": part.id,
                    "name": part.name,
                    "arguments": arguments_text(part),
                }
            )
    return items


def response_input(conversation: Conversation, *, replay: bool = False) -> list[dict[str, Any]]:
    """The ``input`` items (the system prompt goes in ``instructions``)."""
    items: list[dict[str, Any]] = []
    for msg in conversation.messages:
        if isinstance(msg, UserMessage):
            items.extend(_user_items(msg))
        else:
            items.extend(_assistant_items(msg, replay))
    return items


def _tool_choice(choice: ToolChoice) -> Any:
    if isinstance(choice, dict):
        return {"type": "function", "name": choice["tool"]}
    return {"auto": "auto", "any": "required", "none": "none"}[choice]


# -- streaming response ----------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    block: int
    id: str
    name: str
    parts: list[str] = field(default_factory=list)
    ended: bool = False


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class ResponsesStreamDecoder(SSEStreamDecoder):
    """Responses SSE body in, typed events out."""

    def __init__(self) -> None:
        super().__init__()
        self._blocks = BlockIndex()
        self._calls: dict[Any, _Call] = {}  # by output_index
        self._texted: set[tuple[Any, ...]] = set()  # text blocks that had deltas
        self._started = False
        self._stopped = False

    def _on_done(self, out: list[Event]) -> None:
        pass  # OpenRouter ends with [DONE]; the terminal event is response.completed

    def _on_data(self, event: SSEEvent, payload: dict[str, Any], out: list[Event]) -> None:
        kind = payload.get("type") or event.event
        if self._stopped:
            log.debug("ignored %r after the terminal event", kind)
            return
        match kind:
            case "response.created" | "response.in_progress":
                self._start(_obj(payload.get("response")), out)
            case "response.output_text.delta" | "response.refusal.delta":
                self._text(payload, out)
            case "response.output_text.done" | "response.refusal.done":
                self._text_done(payload, out)
            case (
                "response.reasoning_summary_text.delta"
                | "response.reasoning_text.delta"
                | "response.reasoning.delta"
            ):
                self._reasoning(payload, out)
            case "response.output_item.added":
                self._item_added(payload, out)
            case "response.function_call_arguments.delta":
                self._arguments(payload, out)
            case "response.function_call_arguments.done":
                self._arguments_done(payload, out)
            case "response.output_item.done":
                self._item_done(payload, out)
            case "response.completed" | "response.incomplete":
                # The event names the status when the response object leaves it out.
                self._complete(_obj(payload.get("response")), kind.removeprefix("response."), out)
            case "response.failed":
                response = _obj(payload.get("response"))
                raise stream_error(response.get("error") or {"message": "response.failed"})
            case "error":
                raise stream_error(payload.get("error") or payload)
            case _:
                pass  # content_part.*, *.done texts and future events carry nothing new

    def _start(self, response: dict[str, Any], out: list[Event]) -> None:
        if not self._started:
            self._started = True
            model = response.get("model")
            out.append(StreamStart(model=model if isinstance(model, str) else None))

    def _text(self, payload: dict[str, Any], out: list[Event]) -> None:
        self._start({}, out)
        delta = payload.get("delta")
        if isinstance(delta, str) and delta:
            key = ("text", payload.get("output_index"), payload.get("content_index"))
            self._texted.add(key)
            out.append(TextDelta(index=self._blocks(key), text=delta))

    def _text_done(self, payload: dict[str, Any], out: list[Event]) -> None:
        # A server that streams no deltas still sends the whole text here.
        key = ("text", payload.get("output_index"), payload.get("content_index"))
        text = payload.get("text", payload.get("refusal"))
        if key not in self._texted and isinstance(text, str) and text:
            self._start({}, out)
            self._texted.add(key)
            out.append(TextDelta(index=self._blocks(key), text=text))

    def _reasoning(self, payload: dict[str, Any], out: list[Event]) -> None:
        self._start({}, out)
        delta = payload.get("delta")
        if isinstance(delta, str) and delta:
            key = ("reasoning", payload.get("output_index"))
            out.append(ThinkingDelta(index=self._blocks(key), text=delta))

    def _call(self, output_index: Any, item: dict[str, Any], out: list[Event]) -> _Call:
        call = self._calls.get(output_index)
        if call is None:
            call = _Call(
                block=self._blocks(("call", output_index)),
                id=str(item.get("call_id") or item.get("id") or ""),
                name=str(item.get("name") or ""),
            )
            self._calls[output_index] = call
            out.append(ToolCallStart(index=call.block, id=call.id, name=call.name))
        return call

    def _item_added(self, payload: dict[str, Any], out: list[Event]) -> None:
        self._start({}, out)
        item = _obj(payload.get("item"))
        if item.get("type") == "function_call":
            self._call(payload.get("output_index"), item, out)

    def _append(self, call: _Call, text: Any, out: list[Event]) -> None:
        if isinstance(text, str) and text and not call.ended:
            call.parts.append(text)
            out.append(ToolCallDelta(index=call.block, arguments=text))

    def _arguments(self, payload: dict[str, Any], out: list[Event]) -> None:
        call = self._call(payload.get("output_index"), {"id": payload.get("item_id")}, out)
        self._append(call, payload.get("delta"), out)

    def _arguments_done(self, payload: dict[str, Any], out: list[Event]) -> None:
        call = self._call(payload.get("output_index"), {"id": payload.get("item_id")}, out)
        if not call.parts:  # no deltas came: the whole text is here
            self._append(call, payload.get("arguments"), out)

    def _item_done(self, payload: dict[str, Any], out: list[Event]) -> None:
        item = _obj(payload.get("item"))
        if item.get("type") == "function_call":
            call = self._call(payload.get("output_index"), item, out)
            if not call.parts:
                self._append(call, item.get("arguments"), out)
            self._end(call, out)
        elif item.get("type") == "reasoning" and item.get("encrypted_content"):
            block = self._blocks(("reasoning", payload.get("output_index")))
            data = str(item["encrypted_content"]).encode()
            out.append(ThinkingDelta(index=block, redacted=data))

    @staticmethod
    def _end(call: _Call, out: list[Event]) -> None:
        if not call.ended:
            call.ended = True
            out.append(
                ToolCallEnd(
                    index=call.block, id=call.id, name=call.name, arguments="".join(call.parts)
                )
            )

    def _complete(self, response: dict[str, Any], default: str, out: list[Event]) -> None:
        self._start(response, out)
        for output_index in list(self._calls):
            self._end(self._calls[output_index], out)
        status = response.get("status")
        status = status if isinstance(status, str) and status else default
        reason: StopReason
        if status == "completed":
            output = response.get("output")
            items = output if isinstance(output, list) else []
            called = self._calls or any(_obj(i).get("type") == "function_call" for i in items)
            reason, raw = ("tool_use" if called else "end_turn"), status
        elif status == "incomplete":
            why = _obj(response.get("incomplete_details")).get("reason")
            raw = why if isinstance(why, str) and why else status
            reason = INCOMPLETE_REASONS.get(raw, "unknown")
        else:
            reason, raw = "unknown", status
        self._stopped = True
        out.append(
            StreamStop(
                stop_reason=reason,
                raw_stop_reason=raw,
                usage=responses_usage(response.get("usage")),
            )
        )

    def _finish(self, out: list[Event]) -> None:
        if not self._stopped:
            raise IncompleteStreamError(
                f"Responses stream ended without response.completed "
                f"({self.data_events} data events)"
            )


class ResponsesBodyDecoder(JSONBodyDecoder):
    """A non-streamed Responses object (``stream: false``), decoded at ``close`` by replaying
    its output items through the stream decoder's handlers: one code path for both forms."""

    what = "the Responses body"

    def _document(self, doc: dict[str, Any], out: list[Event]) -> None:
        if doc.get("error"):
            raise stream_error(doc["error"])
        if doc.get("status") == "failed":
            raise stream_error({"message": "response failed"})
        if not isinstance(doc.get("status"), str):
            raise IncompleteStreamError("the Responses body has no status")
        inner = ResponsesStreamDecoder()
        inner._start(doc, out)
        output = doc.get("output")
        for i, raw in enumerate(output if isinstance(output, list) else []):
            item = _obj(raw)
            kind = item.get("type")
            if kind == "message":
                content = item.get("content")
                for j, part in enumerate(content if isinstance(content, list) else []):
                    part = _obj(part)
                    text = part.get("text", part.get("refusal"))
                    inner._text({"output_index": i, "content_index": j, "delta": text}, out)
            elif kind == "reasoning":
                for entry in item.get("summary") or item.get("content") or []:
                    inner._reasoning({"output_index": i, "delta": _obj(entry).get("text")}, out)
                inner._item_done({"output_index": i, "item": item}, out)
            elif kind == "function_call":
                inner._item_done({"output_index": i, "item": item}, out)
        inner._complete(doc, str(doc["status"]), out)


class OpenAIResponses:
    """``openai-responses``: ``POST /responses``, streamed by default.

    ``reasoning_replay=True`` sends thinking of earlier turns back as ``reasoning`` items
    (summary text and ``encrypted_content``); off by default, since servers only accept their
    own reasoning items back. ``stream=False`` asks for one JSON response object instead.
    """

    name: ClassVar[ApiName] = "openai-responses"
    family: ClassVar[Family] = "openai"
    base_path: ClassVar[str] = "/v1"
    request_path: ClassVar[re.Pattern[str]] = re.compile(r"/responses$")
    tool_ids: ClassVar[ToolIdRule] = OPENAI_TOOL_IDS
    streaming: ClassVar[bool] = True

    def __init__(
        self,
        *,
        reasoning_replay: bool = False,
        stream: bool = True,
        sse_limit_bytes: int = SSE_LIMIT_BYTES,
    ) -> None:
        self.reasoning_replay = reasoning_replay
        self.stream = stream
        #: The longest SSE line or event accepted, in bytes (16 MiB by default).
        self.sse_limit_bytes = check_limit(sse_limit_bytes)

    def encode_request(
        self, model: str, conversation: Conversation, *, extra: Mapping[str, Any] | None = None
    ) -> WireRequest:
        """The request body with ``extra`` fields merged in."""
        body: dict[str, Any] = {
            "model": model,
            "input": response_input(conversation, replay=self.reasoning_replay),
            "stream": self.stream,
        }
        if conversation.system:
            body["instructions"] = conversation.system
        settings = conversation.settings
        if settings.max_tokens is not None:
            body["max_output_tokens"] = settings.max_tokens
        if settings.temperature is not None:
            body["temperature"] = settings.temperature
        if settings.top_p is not None:
            body["top_p"] = settings.top_p
        if settings.stop_sequences:
            log.debug("stop sequences have no Responses API field; not sent")
        if conversation.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "name": t.name,
                    **({"description": t.description} if t.description else {}),
                    "parameters": t.parameters,
                }
                for t in conversation.tools
            ]
            if settings.tool_choice is not None:
                body["tool_choice"] = _tool_choice(settings.tool_choice)
        return WireRequest(
            method="POST",
            path="/responses",
            body=dumps(merge_extra(body, extra)),
            headers={
                "content-type": "application/json",
                "accept": "text/event-stream" if self.stream else "application/json",
            },
        )

    def stream_decoder(self) -> StreamDecoder:
        """A decoder for one body: SSE, or one JSON object with ``stream=False``."""
        if not self.stream:
            return ResponsesBodyDecoder()
        decoder = ResponsesStreamDecoder()
        decoder.set_limit(self.sse_limit_bytes)
        return decoder

    def decode_error(self, status: int, headers: Mapping[str, str], body: bytes) -> HTTPStatusError:
        """A non-2xx answer as :class:`~callproof.errors.HTTPStatusError`."""
        return decode_openai_error(status, headers, body)
