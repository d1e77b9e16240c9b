"""The ``openai-completions`` dialect: ``POST /chat/completions`` as OpenAI, OpenRouter,
Moonshot, vLLM and Bedrock's OpenAI-compatible endpoint speak it.

Streaming decoding (wire-facts.md §4, recordings in tests/fixtures/recorded):

* keep-alive comments (``: OPENROUTER PROCESSING``) are counted, never events;
* ``reasoning`` / ``reasoning_content`` / ``reasoning_details`` deltas become thinking; the
  string fields and the details list repeat the same text, so details only add text when no
  string field came, plus signatures and encrypted reasoning;
* tool calls arrive as fragments by ``index``: id and name first, then argument text;
* ``finish_reason`` is mapped into Bedrock's vocabulary (``native_finish_reason`` is the
  fallback when the normalised value is unknown); the first one wins, since OpenRouter repeats
  it in the usage chunk;
* the terminal :class:`~callproof.events.StreamStop` is emitted at ``data: [DONE]``, with the
  usage chunk's counts. A body that ends cleanly after its finish_reason without ``[DONE]``
  is complete too (every public client and gateway accepts it; Kimi's API omits it): the stop
  is emitted at the end of the body, usage kept, and the decoder's ``warnings`` say
  ``no [DONE] sentinel``. A stream with no finish_reason raises
  :class:`~callproof.errors.IncompleteStreamError` (the openai SDK ends such a stream
  silently), and so does a connection cut after the finish_reason (the client never calls
  ``close`` on a broken body);
* a chunk with a top-level ``error`` (OpenRouter mid-stream, on HTTP 200) raises
  :class:`~callproof.errors.StreamExceptionError`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from callproof.conversation import (
    AssistantMessage,
    Conversation,
    ImagePart,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolChoice,
    ToolResult,
)
from callproof.dialects._common import (
    JSONBodyDecoder,
    dumps,
    int_or_none,
    merge_extra,
)
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
from callproof.errors import HTTPStatusError, IncompleteStreamError, InvalidEventError
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
    normalise_stop_reason,
)
from callproof.wire.sse import SSEEvent

__all__ = [
    "FINISH_REASONS",
    "NO_DONE_WARNING",
    "ChatBodyDecoder",
    "ChatStreamDecoder",
    "OpenAIChat",
    "OpenAIChatJSON",
    "ReasoningReplay",
    "chat_messages",
    "chat_usage",
    "map_finish_reason",
]

log = logging.getLogger(__name__)

#: The warning a complete chat stream (finish_reason seen, clean close) without ``[DONE]`` has.
NO_DONE_WARNING = "no [DONE] sentinel"

#: OpenAI finish reasons in Bedrock's vocabulary.
FINISH_REASONS: dict[str, StopReason] = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "length": "max_tokens",
    "content_filter": "content_filtered",
    "function_call": "tool_use",
}

#: How reasoning from earlier assistant turns is replayed: not at all (the default), or in the
#: field a server reads it from (Moonshot/vLLM/DeepSeek: ``reasoning_content``; OpenRouter:
#: ``reasoning``). Which thinking may be replayed at all is decided upstream (transforms).
ReasoningReplay = Literal["drop", "reasoning_content", "reasoning"]


def map_finish_reason(raw: str | None, native: str | None = None) -> StopReason:
    """``finish_reason`` in Bedrock's vocabulary; Bedrock's own names pass through; anything
    else is ``unknown`` unless ``native_finish_reason`` says more."""
    for value in (raw, native):
        if value is None:
            continue
        mapped = FINISH_REASONS.get(value) or normalise_stop_reason(value)
        if mapped != "unknown":
            return mapped
    return "unknown"


def chat_usage(raw: Any) -> Usage | None:
    """Usage of a chat completion (``prompt_tokens``...; OpenRouter adds cost fields)."""
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("prompt_tokens_details")
    prompt = prompt if isinstance(prompt, dict) else {}
    completion = raw.get("completion_tokens_details")
    completion = completion if isinstance(completion, dict) else {}
    return Usage(
        input_tokens=int_or_none(raw.get("prompt_tokens")),
        output_tokens=int_or_none(raw.get("completion_tokens")),
        total_tokens=int_or_none(raw.get("total_tokens")),
        cache_read_tokens=int_or_none(prompt.get("cached_tokens")),
        cache_write_tokens=int_or_none(prompt.get("cache_write_tokens")),
        reasoning_tokens=int_or_none(completion.get("reasoning_tokens")),
    )


# -- request ---------------------------------------------------------------------------------


def _user_messages(parts: tuple[Any, ...]) -> list[dict[str, Any]]:
    # Tool results are their own role:"tool" messages and must directly follow the assistant
    # turn that called them, so they go before any text of the same user turn.
    out: list[dict[str, Any]] = [
        {"role": "tool", "tool_call_id": p.tool_call_id, "content": result_text(p)}
        for p in parts
        if isinstance(p, ToolResult)
    ]
    rest = [p for p in parts if not isinstance(p, ToolResult)]
    if len(rest) == 1 and isinstance(rest[0], TextPart):
        out.append({"role": "user", "content": rest[0].text})
    elif rest:
        content = [
            {"type": "text", "text": p.text}
            if isinstance(p, TextPart)
            else {"type": "image_url", "image_url": {"url": data_url(p)}}
            for p in rest
            if isinstance(p, TextPart | ImagePart)
        ]
        out.append({"role": "user", "content": content})
    return out


def _assistant_message(msg: AssistantMessage, replay: ReasoningReplay) -> dict[str, Any]:
    text = "".join(p.text for p in msg.content if isinstance(p, TextPart))
    calls = [p for p in msg.content if isinstance(p, ToolCall)]
    thinking = "".join(p.text for p in msg.content if isinstance(p, ThinkingPart))
    out: dict[str, Any] = {"role": "assistant"}
    if text or not calls:
        out["content"] = text
    if calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": arguments_text(c)},
            }
            for c in calls
        ]
    if thinking:
        if replay == "drop":
            log.debug("reasoning of an assistant turn not replayed (reasoning_replay=drop)")
        else:
            out[replay] = thinking
    return out


def _tool_choice(choice: ToolChoice) -> Any:
    if isinstance(choice, dict):
        return {"type": "function", "function": {"name": choice["tool"]}}
    return {"auto": "auto", "any": "required", "none": "none"}[choice]


def chat_messages(
    conversation: Conversation, replay: ReasoningReplay = "drop"
) -> list[dict[str, Any]]:
    """The ``messages`` array."""
    messages: list[dict[str, Any]] = []
    if conversation.system:
        messages.append({"role": "system", "content": conversation.system})
    for msg in conversation.messages:
        if isinstance(msg, AssistantMessage):
            messages.append(_assistant_message(msg, replay))
        else:
            messages.extend(_user_messages(msg.content))
    return messages


# -- streaming response ----------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    block: int
    id: str
    name: str
    parts: list[str] = field(default_factory=list)
    ended: bool = False


class _ChoiceState:
    """What chat decoders (streaming and not) accumulate from choice 0."""

    def __init__(self) -> None:
        self.blocks = BlockIndex()
        self.calls: dict[int, _Call] = {}
        self.finish: str | None = None
        self.native: str | None = None

    def reasoning(self, src: dict[str, Any], out: list[Event]) -> None:
        text = src.get("reasoning_content")
        if not isinstance(text, str) or not text:
            text = src.get("reasoning")
        has_text = isinstance(text, str) and bool(text)
        if has_text:
            out.append(ThinkingDelta(index=self.blocks("thinking"), text=str(text)))
        details = src.get("reasoning_details")
        for item in details if isinstance(details, list) else []:
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            if kind == "reasoning.encrypted" and item.get("data"):
                data = str(item["data"]).encode()
                out.append(ThinkingDelta(index=self.blocks("thinking"), redacted=data))
                continue
            piece = item.get("text") if kind == "reasoning.text" else item.get("summary")
            if not has_text and isinstance(piece, str) and piece:
                out.append(ThinkingDelta(index=self.blocks("thinking"), text=piece))
            if item.get("signature"):
                sig = str(item["signature"])
                out.append(ThinkingDelta(index=self.blocks("thinking"), signature=sig))

    def content(self, src: dict[str, Any], out: list[Event]) -> None:
        for key in ("content", "refusal"):
            text = src.get(key)
            if isinstance(text, str):
                if text:
                    out.append(TextDelta(index=self.blocks("text"), text=text))
            elif isinstance(text, list):
                self._content_parts(text, out)

    def _content_parts(self, parts: list[Any], out: list[Event]) -> None:
        # Some servers (Mistral's reasoning models) send content as typed parts:
        # {"type": "text", "text"} and {"type": "thinking", "thinking": [{"type": "text", ...}]}.
        for part in parts:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "thinking":
                inner = part.get("thinking")
                pieces = inner if isinstance(inner, list) else [{"text": inner}]
                for piece in pieces:
                    text = piece.get("text") if isinstance(piece, dict) else None
                    if isinstance(text, str) and text:
                        out.append(ThinkingDelta(index=self.blocks("thinking"), text=text))
            elif isinstance(part.get("text"), str) and part["text"]:
                out.append(TextDelta(index=self.blocks("text"), text=part["text"]))

    def tool_fragment(self, frag: dict[str, Any], out: list[Event]) -> None:
        fn = frag.get("function")
        fn = fn if isinstance(fn, dict) else {}
        index = frag.get("index")
        if isinstance(index, bool) or not isinstance(index, int):
            # No index (some compatible servers): a new id is a new call, else the last one.
            fid = frag.get("id")
            by_id = {c.id: i for i, c in self.calls.items()}
            if fid and fid in by_id:
                index = by_id[fid]
            elif fid or not self.calls:
                index = len(self.calls)
            else:
                index = max(self.calls)
        call = self.calls.get(index)
        if call is None:
            call = _Call(
                block=self.blocks(("tool", index)),
                id=str(frag.get("id") or ""),
                name=str(fn.get("name") or ""),
            )
            self.calls[index] = call
            out.append(ToolCallStart(index=call.block, id=call.id, name=call.name))
        else:  # an id or name that only came in a later fragment still reaches ToolCallEnd
            call.id = call.id or str(frag.get("id") or "")
            call.name = call.name or str(fn.get("name") or "")
        args = fn.get("arguments")
        if isinstance(args, dict):  # a few servers send the object itself
            args = json.dumps(args, ensure_ascii=False)
        if isinstance(args, str) and args and not call.ended:
            call.parts.append(args)
            out.append(ToolCallDelta(index=call.block, arguments=args))

    def end_calls(self, out: list[Event]) -> None:
        for index in sorted(self.calls):
            call = self.calls[index]
            if not call.ended:
                call.ended = True
                out.append(
                    ToolCallEnd(
                        index=call.block, id=call.id, name=call.name, arguments="".join(call.parts)
                    )
                )

    def on_finish(self, choice: dict[str, Any], out: list[Event]) -> None:
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason and self.finish is None:
            self.finish = reason
            native = choice.get("native_finish_reason")
            self.native = native if isinstance(native, str) else None
            self.end_calls(out)

    def stop(self, usage: Usage | None) -> StreamStop:
        reason = map_finish_reason(self.finish, self.native)
        if self.native and self.native != self.finish:
            log.debug("finish_reason %r (native %r) -> %s", self.finish, self.native, reason)
        return StreamStop(stop_reason=reason, raw_stop_reason=self.finish, usage=usage)


def _first_choice(payload: dict[str, Any]) -> dict[str, Any] | None:
    choices = payload.get("choices")
    if not isinstance(choices, list):
        return None
    for choice in choices:  # only choice 0: callproof never asks for n > 1
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return None


class ChatStreamDecoder(SSEStreamDecoder):
    """Chat-completions SSE body in, typed events out (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._state = _ChoiceState()
        self._started = False
        self._usage: Usage | None = None
        self._done = False
        self._stopped = False

    def _on_data(self, event: SSEEvent, payload: dict[str, Any], out: list[Event]) -> None:
        if payload.get("error"):
            raise stream_error(payload["error"])
        if self._done:
            log.debug("ignored a chunk after [DONE]")
            return
        if not self._started:
            self._started = True
            model = payload.get("model")
            out.append(StreamStart(model=model if isinstance(model, str) else None))
        choice = _first_choice(payload)
        if choice is not None:
            delta = choice.get("delta")
            if delta is not None and not isinstance(delta, dict):
                raise InvalidEventError(f"choices[0].delta is not an object: {delta!r}")
            if delta:
                self._state.reasoning(delta, out)
                self._state.content(delta, out)
                calls = delta.get("tool_calls")
                for frag in calls if isinstance(calls, list) else []:
                    if isinstance(frag, dict):
                        self._state.tool_fragment(frag, out)
            self._state.on_finish(choice, out)
        usage = chat_usage(payload.get("usage"))
        if usage is not None:
            self._usage = usage

    def _on_done(self, out: list[Event]) -> None:
        self._done = True
        if self._state.finish is not None and not self._stopped:
            self._stopped = True
            out.append(self._state.stop(self._usage))

    def _finish(self, out: list[Event]) -> None:
        if self._stopped:
            return
        if self._state.finish is None:
            seen = "[DONE] but" if self._done else f"{self.data_events} data events and"
            raise IncompleteStreamError(f"chat stream ended with {seen} no finish_reason")
        self.warnings.append(NO_DONE_WARNING)
        self._stopped = True
        out.append(self._state.stop(self._usage))


class ChatBodyDecoder(JSONBodyDecoder):
    """A non-streaming chat completion (``stream: false``), decoded at ``close``."""

    what = "the chat completion"

    def _document(self, doc: dict[str, Any], out: list[Event]) -> None:
        if doc.get("error"):
            raise stream_error(doc["error"])
        state = _ChoiceState()
        model = doc.get("model")
        out.append(StreamStart(model=model if isinstance(model, str) else None))
        choice = _first_choice(doc)
        if choice is None:
            raise InvalidEventError("the chat completion has no choices")
        message = choice.get("message")
        message = message if isinstance(message, dict) else {}
        state.reasoning(message, out)
        state.content(message, out)
        calls = message.get("tool_calls")
        for i, call in enumerate(calls if isinstance(calls, list) else []):
            if isinstance(call, dict):
                state.tool_fragment({"index": i, **call}, out)
        state.on_finish(choice, out)
        if state.finish is None:
            raise IncompleteStreamError("the chat completion has no finish_reason")
        out.append(state.stop(chat_usage(doc.get("usage"))))


class OpenAIChat:
    """``openai-completions``: ``POST /chat/completions`` with ``stream: true``.

    ``max_tokens_field`` is ``max_tokens`` (OpenRouter, vLLM, Moonshot) or
    ``max_completion_tokens`` (OpenAI's reasoning models). ``reasoning_replay`` says how
    thinking of earlier turns is sent back (see :data:`ReasoningReplay`).
    """

    name: ClassVar[ApiName] = "openai-completions"
    family: ClassVar[Family] = "openai"
    base_path: ClassVar[str] = "/v1"
    request_path: ClassVar[re.Pattern[str]] = re.compile(r"/chat/completions$")
    tool_ids: ClassVar[ToolIdRule] = OPENAI_TOOL_IDS
    streaming: ClassVar[bool] = True

    def __init__(
        self,
        *,
        max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
        reasoning_replay: ReasoningReplay = "drop",
        sse_limit_bytes: int = SSE_LIMIT_BYTES,
    ) -> None:
        self.max_tokens_field = max_tokens_field
        self.reasoning_replay = reasoning_replay
        #: The longest SSE line or event accepted, in bytes (16 MiB by default).
        self.sse_limit_bytes = check_limit(sse_limit_bytes)

    def encode_request(
        self, model: str, conversation: Conversation, *, extra: Mapping[str, Any] | None = None
    ) -> WireRequest:
        """The request body, ``extra`` fields (e.g. OpenRouter's ``provider``) merged in."""
        body: dict[str, Any] = {
            "model": model,
            "messages": chat_messages(conversation, self.reasoning_replay),
        }
        if self.streaming:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        else:
            body["stream"] = False
        settings = conversation.settings
        if settings.max_tokens is not None:
            body[self.max_tokens_field] = settings.max_tokens
        if settings.temperature is not None:
            body["temperature"] = settings.temperature
        if settings.top_p is not None:
            body["top_p"] = settings.top_p
        if settings.stop_sequences:
            body["stop"] = list(settings.stop_sequences)
        if conversation.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        **({"description": t.description} if t.description else {}),
                        "parameters": t.parameters,
                    },
                }
                for t in conversation.tools
            ]
            if settings.tool_choice is not None:
                body["tool_choice"] = _tool_choice(settings.tool_choice)
        headers = {"content-type": "application/json"}
        headers["accept"] = "text/event-stream" if self.streaming else "application/json"
        return WireRequest(
            method="POST",
            path="/chat/completions",
            body=dumps(merge_extra(body, extra)),
            headers=headers,
        )

    def stream_decoder(self) -> StreamDecoder:
        """An SSE decoder, or a JSON-body decoder for :class:`OpenAIChatJSON`."""
        if not self.streaming:
            return ChatBodyDecoder()
        decoder = ChatStreamDecoder()
        decoder.set_limit(self.sse_limit_bytes)
        return decoder

    def decode_error(self, status: int, headers: Mapping[str, str], body: bytes) -> HTTPStatusError:
        """A non-2xx answer as :class:`~callproof.errors.HTTPStatusError`."""
        return decode_openai_error(status, headers, body)


class OpenAIChatJSON(OpenAIChat):
    """``openai-completions`` without streaming: ``stream: false``, one JSON answer decoded at
    ``close`` into the same events."""

    streaming: ClassVar[bool] = False
