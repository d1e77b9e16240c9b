"""Decode OpenAI-compatible request bodies into the neutral :class:`Conversation`.

This module decodes chat completions (``messages`` with ``tool_calls`` and ``role: "tool"``
results) and holds the validation helpers that the Responses decoder
(:func:`callproof.emulator.openai_responses.decode_responses`) shares. Validation follows the
real API closely enough that SDKs and agents see the same 400s: ``{"error": {"message", "type":
"invalid_request_error", "param", "code"}}`` with the messages the OpenAI API uses (parameter
paths like ``messages[1].tool_call_id``). Nothing here touches a socket.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from callproof.conversation import (
    AssistantMessage,
    AssistantPart,
    Conversation,
    ImagePart,
    Message,
    Settings,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolSpec,
    UserMessage,
    UserPart,
)

__all__ = [
    "BAD_JSON",
    "ChatRequest",
    "OpenAIRequestError",
    "decode_chat",
    "decode_json_body",
]

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
    "valid JSON. If you have trouble figuring out how to fix this, please contact us through our "
    "help center at help.openai.com.)"
)
_CHAT_ROLES = ("system", "assistant", "user", "function", "tool", "developer")


class OpenAIRequestError(Exception):
    """A request the real API would refuse; ``body()`` is its JSON error object."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int = 400,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status
        self.error_type = error_type

    def body(self) -> dict[str, Any]:
        """The error body as the OpenAI API sends it."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A decoded ``POST /v1/chat/completions`` body."""

    model: str
    conversation: Conversation
    stream: bool = False
    include_usage: bool = False
    n: int = 1
    parallel_tool_calls: bool = True
    provider: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)


# -- shared helpers ----------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _bad_type(param: str, expected: str, value: Any) -> OpenAIRequestError:
    article = "an" if expected[0] in "aeiou" else "a"
    got = _type_name(value)
    got_article = "an" if got[0] in "aeiou" else "a"
    return OpenAIRequestError(
        f"Invalid type for '{param}': expected {article} {expected}, but got {got_article} "
        f"{got} instead.",
        param=param,
        code="invalid_type",
    )


def _missing(param: str) -> OpenAIRequestError:
    return OpenAIRequestError(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _expect(value: Any, kind: type | tuple[type, ...], param: str, expected: str) -> Any:
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _as_tuple(kind))
    if not ok:
        raise _bad_type(param, expected, value)
    return value


def _require(
    obj: dict[str, Any], key: str, param: str, kind: type | tuple[type, ...], expected: str
) -> Any:
    """``obj[key]``, which must be present and of ``kind``; else the real API's 400."""
    value = obj.get(key)
    if value is None:
        raise _missing(param)
    return _expect(value, kind, param, expected)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def decode_json_body(body: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise OpenAIRequestError(BAD_JSON) from None
    if not isinstance(data, dict):
        raise OpenAIRequestError(
            f"Invalid type for request body: expected an object, but got {_type_name(data)} "
            "instead.",
            code="invalid_type",
        )
    return data


def _model(data: dict[str, Any]) -> str:
    model = data.get("model")
    if model is None or model == "":
        raise OpenAIRequestError("you must provide a model parameter")
    return str(_expect(model, str, "model", "string"))


def _number(
    data: dict[str, Any], name: str, low: float, high: float, *, integer: bool = False
) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    kind: type | tuple[type, ...] = int if integer else (int, float)
    _expect(value, kind, name, "integer" if integer else "number")
    if isinstance(value, float) and not math.isfinite(value):
        raise OpenAIRequestError(
            f"Invalid '{name}': expected a finite number, but got {value} instead.",
            param=name,
            code="invalid_value",
        )
    word = "integer" if integer else "decimal"
    if value < low:
        raise OpenAIRequestError(
            f"Invalid '{name}': {word} below minimum value. Expected a value >= {low:g}, but got "
            f"{value} instead.",
            param=name,
            code=f"{word}_below_min_value",
        )
    if value > high:
        raise OpenAIRequestError(
            f"Invalid '{name}': {word} above maximum value. Expected a value <= {high:g}, but "
            f"got {value} instead.",
            param=name,
            code=f"{word}_above_max_value",
        )
    return float(value)


def _bool(data: dict[str, Any], name: str, *, default: bool) -> bool:
    value = data.get(name)
    if value is None:
        return default
    return bool(_expect(value, bool, name, "boolean"))


def _optional_object(data: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = data.get(name)
    if value is None:
        return None
    result: dict[str, Any] = _expect(value, dict, name, "object")
    return result


def _provider(data: dict[str, Any]) -> dict[str, Any] | None:
    """OpenRouter's ``provider`` routing object: accepted and type-checked, never acted on."""
    provider = _optional_object(data, "provider")
    if provider is None:
        return None
    for key in ("only", "ignore", "order", "quantizations"):
        value = provider.get(key)
        if value is not None:
            items = _expect(value, list, f"provider.{key}", "array")
            for i, item in enumerate(items):
                _expect(item, str, f"provider.{key}[{i}]", "string")
    for key in ("allow_fallbacks", "require_parameters", "zdr"):
        if provider.get(key) is not None:
            _expect(provider[key], bool, f"provider.{key}", "boolean")
    return provider


def _stop(data: dict[str, Any], name: str = "stop") -> tuple[str, ...]:
    value = data.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    items = _expect(value, list, name, "array")
    if len(items) > 4:
        raise OpenAIRequestError(
            f"Invalid '{name}': array too long. Expected an array with maximum length 4, but got "
            f"an array with length {len(items)} instead.",
            param=name,
            code="array_above_max_length",
        )
    return tuple(_expect(s, str, f"{name}[{i}]", "string") for i, s in enumerate(items))


def _schema(value: Any, param: str) -> dict[str, Any]:
    if value is None:
        return {"type": "object", "properties": {}}
    result: dict[str, Any] = _expect(value, dict, param, "object")
    return result


def _tool_name(name: Any, param: str) -> str:
    if name is None:
        raise _missing(param)
    _expect(name, str, param, "string")
    if not _TOOL_NAME.match(name):
        raise OpenAIRequestError(
            f"Invalid '{param}': string does not match pattern. Expected a string that matches "
            "the pattern '^[a-zA-Z0-9_-]+$'.",
            param=param,
            code="invalid_value",
        )
    return str(name)


def _image(url: Any, param: str) -> ImagePart:
    _expect(url, str, param, "string")
    match = re.match(r"^data:([\w./+-]+);base64,(.*)$", url, re.DOTALL)
    if match is None:
        # Remote URLs would be fetched by the real service; the emulator keeps a marker.
        return ImagePart(media_type="image/url", data=url.encode())
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise OpenAIRequestError(
            "Invalid image data: the base64 payload could not be decoded.",
            param=param,
            code="invalid_image_format",
        ) from None
    return ImagePart(media_type=match.group(1), data=data)


def _tool_choice(value: Any, param: str, *, responses: bool) -> ToolChoice | None:
    if value is None:
        return None
    if isinstance(value, str):
        mapping: dict[str, ToolChoice] = {"auto": "auto", "none": "none", "required": "any"}
        if value not in mapping:
            raise OpenAIRequestError(
                f"Invalid value: '{value}'. Supported values are: 'none', 'auto', and 'required'.",
                param=param,
                code="invalid_value",
            )
        return mapping[value]
    choice = _expect(value, dict, param, "object")
    if responses:
        name = choice.get("name")
    else:
        function = choice.get("function")
        if function is None:
            raise _missing(f"{param}.function")
        name = _expect(function, dict, f"{param}.function", "object").get("name")
    if name is None:
        raise _missing(f"{param}.name" if responses else f"{param}.function.name")
    return {"tool": str(_expect(name, str, f"{param}.name", "string"))}


# -- chat completions --------------------------------------------------------------------------


def _chat_text(content: Any, param: str, *, allow_images: bool) -> list[TextPart | ImagePart]:
    """A message's ``content``: a string or an array of content parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    parts = _expect(content, list, param, "string or array")
    out: list[TextPart | ImagePart] = []
    for i, part in enumerate(parts):
        where = f"{param}[{i}]"
        _expect(part, dict, where, "object")
        kind = part.get("type")
        if kind in ("text", "refusal"):
            key = str(kind)
            text = part.get(key)
            if text is None:
                raise _missing(f"{where}.{key}")
            out.append(TextPart(_expect(text, str, f"{where}.{key}", "string")))
        elif kind == "image_url" and allow_images:
            image = _expect(part.get("image_url"), dict, f"{where}.image_url", "object")
            out.append(_image(image.get("url"), f"{where}.image_url.url"))
        elif kind is None:
            raise _missing(f"{where}.type")
        else:
            supported = "'text', 'image_url'" if allow_images else "'text', 'refusal'"
            raise OpenAIRequestError(
                f"Invalid value: '{kind}'. Supported values are: {supported}.",
                param=f"{where}.type",
                code="invalid_value",
            )
    return out


def _chat_tool_calls(value: Any, param: str) -> list[ToolCall]:
    calls = _expect(value, list, param, "array")
    out: list[ToolCall] = []
    for i, call in enumerate(calls):
        where = f"{param}[{i}]"
        _expect(call, dict, where, "object")
        call_id = _require(call, "id", f"{where}.id", str, "string")
        function = _require(call, "function", f"{where}.function", dict, "object")
        name = _require(function, "name", f"{where}.function.name", str, "string")
        arguments = _require(function, "arguments", f"{where}.function.arguments", str, "string")
        out.append(ToolCall.from_raw(call_id, name, arguments))
    return out


def _chat_messages(value: Any) -> tuple[str | None, tuple[Message, ...]]:
    if value is None:
        raise _missing("messages")
    items = _expect(value, list, "messages", "array")
    if not items:
        raise OpenAIRequestError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
            "empty array instead.",
            param="messages",
            code="empty_array",
        )
    system: list[str] = []
    messages: list[Message] = []
    pending: dict[str, int] = {}  # tool_call_id -> index of the assistant message awaiting it
    results: list[UserPart] = []

    def flush_results() -> None:
        if results:
            messages.append(UserMessage(content=tuple(results)))
            results.clear()

    for i, msg in enumerate(items):
        where = f"messages[{i}]"
        _expect(msg, dict, where, "object")
        role = msg.get("role")
        if role is None:
            raise _missing(f"{where}.role")
        if role not in _CHAT_ROLES:
            raise OpenAIRequestError(
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                "'function', 'tool', and 'developer'.",
                param=f"{where}.role",
                code="invalid_value",
            )
        if role != "tool" and pending:
            raise _unanswered(pending)
        if role in ("system", "developer"):
            if "content" not in msg:
                raise _missing(f"{where}.content")
            said = _chat_text(msg["content"], f"{where}.content", allow_images=False)
            system.extend(p.text for p in said if isinstance(p, TextPart))
        elif role == "user":
            if "content" not in msg:
                raise _missing(f"{where}.content")
            flush_results()
            parts = _chat_text(msg["content"], f"{where}.content", allow_images=True)
            messages.append(UserMessage(content=tuple(parts)))
        elif role == "assistant":
            flush_results()
            assistant = _chat_assistant(msg, where)
            if msg.get("tool_calls") is None and msg.get("content") is None:
                raise OpenAIRequestError(
                    f"Invalid value for '{where}.content': expected a string, got null.",
                    param=f"{where}.content",
                )
            for call in assistant.tool_calls:
                pending[call.id] = i
            messages.append(assistant)
        elif role == "tool":
            call_id = _require(msg, "tool_call_id", f"{where}.tool_call_id", str, "string")
            if call_id not in pending:
                raise OpenAIRequestError(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{i}].role",
                )
            del pending[call_id]
            if "content" not in msg:
                raise _missing(f"{where}.content")
            pieces = _chat_text(msg["content"], f"{where}.content", allow_images=False)
            text = "".join(p.text for p in pieces if isinstance(p, TextPart))
            results.append(ToolResult(tool_call_id=call_id, content=text))
        else:  # "function": the deprecated single-function result
            name = msg.get("name")
            if name is None:
                raise _missing(f"{where}.name")
            content = msg.get("content")
            results.append(ToolResult(tool_call_id=str(name), content=str(content or "")))
    if pending:
        raise _unanswered(pending)
    flush_results()
    return ("\n\n".join(system) if system else None), tuple(messages)


def _unanswered(pending: dict[str, int]) -> OpenAIRequestError:
    index = min(pending.values())
    ids = ", ".join(k for k, v in pending.items() if v == index)
    return OpenAIRequestError(
        "An assistant message with 'tool_calls' must be followed by tool messages responding to "
        f"each 'tool_call_id'. The following tool_call_ids did not have response messages: {ids}",
        param=f"messages.[{index}].role",
    )


def _chat_assistant(msg: dict[str, Any], where: str) -> AssistantMessage:
    parts: list[AssistantPart] = []
    # OpenRouter (and Moonshot) replay reasoning on assistant turns under these names.
    for key in ("reasoning", "reasoning_content"):
        reasoning = msg.get(key)
        if reasoning is not None:
            text = _expect(reasoning, str, f"{where}.{key}", "string")
            if text:
                parts.append(ThinkingPart(text=text))
            break
    text = _chat_text(msg.get("content"), f"{where}.content", allow_images=False)
    parts.extend(p for p in text if isinstance(p, TextPart))
    if msg.get("tool_calls") is not None:
        parts.extend(_chat_tool_calls(msg["tool_calls"], f"{where}.tool_calls"))
    return AssistantMessage(content=tuple(parts))


def _chat_tools(value: Any) -> tuple[ToolSpec, ...]:
    if value is None:
        return ()
    items = _expect(value, list, "tools", "array")
    out: list[ToolSpec] = []
    for i, tool in enumerate(items):
        where = f"tools[{i}]"
        _expect(tool, dict, where, "object")
        kind = tool.get("type", "function")
        if kind != "function":
            raise OpenAIRequestError(
                f"Invalid value: '{kind}'. Supported values are: 'function' and 'custom'.",
                param=f"{where}.type",
                code="invalid_value",
            )
        function = _require(tool, "function", f"{where}.function", dict, "object")
        name = _tool_name(function.get("name"), f"{where}.function.name")
        description = function.get("description") or ""
        _expect(description, str, f"{where}.function.description", "string")
        schema = _schema(function.get("parameters"), f"{where}.function.parameters")
        out.append(ToolSpec(name=name, description=description, parameters=schema))
    return tuple(out)


def decode_chat(body: bytes) -> ChatRequest:
    """Decode and validate a chat completions request body."""
    data = decode_json_body(body)
    model = _model(data)
    system, messages = _chat_messages(data.get("messages"))
    tools = _chat_tools(data.get("tools"))
    stream = _bool(data, "stream", default=False)
    options = _optional_object(data, "stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise OpenAIRequestError(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        include_usage = _bool(options, "include_usage", default=False)
    max_tokens = _number(data, "max_completion_tokens", 1, 2**31, integer=True)
    if max_tokens is None:
        max_tokens = _number(data, "max_tokens", 1, 2**31, integer=True)
    n = _number(data, "n", 1, 128, integer=True)
    settings = Settings(
        max_tokens=int(max_tokens) if max_tokens is not None else None,
        temperature=_number(data, "temperature", 0, 2),
        top_p=_number(data, "top_p", 0, 1),
        stop_sequences=_stop(data),
        tool_choice=_tool_choice(data.get("tool_choice"), "tool_choice", responses=False),
    )
    _check_choice(settings.tool_choice, tools)
    return ChatRequest(
        model=model,
        conversation=Conversation(messages=messages, system=system, tools=tools, settings=settings),
        stream=stream,
        include_usage=include_usage,
        n=int(n) if n is not None else 1,
        parallel_tool_calls=_bool(data, "parallel_tool_calls", default=True),
        provider=_provider(data),
        reasoning=_optional_object(data, "reasoning"),
        raw=data,
    )


def _check_choice(choice: ToolChoice | None, tools: tuple[ToolSpec, ...]) -> None:
    if choice is None or choice in ("auto", "none"):
        return
    if not tools:
        raise OpenAIRequestError(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            param="tool_choice",
        )
    if isinstance(choice, dict):
        name = choice.get("tool")
        if all(t.name != name for t in tools):
            raise OpenAIRequestError(
                f"Invalid value for 'tool_choice': tool '{name}' is not in 'tools'.",
                param="tool_choice",
            )
