"""The Responses API request: a ``POST /v1/responses`` body decoded and validated into a
:class:`ResponsesRequest` holding a :class:`Conversation` (``input`` items incl.
``function_call``, ``function_call_output`` and ``reasoning``, ``instructions``, function
``tools``), with ``previous_response_id`` and ``item_reference`` resolved against a
:class:`~callproof.emulator.responses_store.ResponseStore`. Errors are OpenAI's own
(:class:`~callproof.emulator.openai_decode.OpenAIRequestError`). Sans-IO.
"""

from __future__ import annotations

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
    ToolResult,
    ToolSpec,
    UserMessage,
    UserPart,
)
from callproof.emulator.openai_decode import (
    OpenAIRequestError,
    _bool,
    _check_choice,
    _expect,
    _image,
    _missing,
    _model,
    _number,
    _optional_object,
    _provider,
    _require,
    _schema,
    _tool_choice,
    _tool_name,
    decode_json_body,
)
from callproof.emulator.responses_store import ResponseStore, resolve_input

__all__ = ["ResponsesRequest", "decode_responses"]


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    """A decoded ``POST /v1/responses`` body."""

    model: str
    conversation: Conversation
    stream: bool = False
    instructions: str | None = None
    store: bool = True
    parallel_tool_calls: bool = True
    tools_raw: tuple[dict[str, Any], ...] = ()
    tool_choice_raw: Any = "auto"
    provider: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    #: The input items after resolution (previous response first, references replaced).
    input_items: tuple[dict[str, Any], ...] = ()
    previous_response_id: str | None = None


# -- decoding ---------------------------------------------------------------------------------


def _responses_content(content: Any, param: str, *, role: str) -> list[TextPart | ImagePart]:
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    parts = _expect(content, list, param, "string or array")
    out: list[TextPart | ImagePart] = []
    for i, part in enumerate(parts):
        where = f"{param}[{i}]"
        _expect(part, dict, where, "object")
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "refusal"):
            key = "refusal" if kind == "refusal" else "text"
            text = part.get(key)
            if text is None:
                raise _missing(f"{where}.{key}")
            out.append(TextPart(_expect(text, str, f"{where}.{key}", "string")))
        elif kind == "input_image" and role == "user":
            out.append(_image(part.get("image_url"), f"{where}.image_url"))
        elif kind is None:
            raise _missing(f"{where}.type")
        else:
            raise OpenAIRequestError(
                f"Invalid value: '{kind}'. Supported values are: 'input_text', 'input_image', "
                "'output_text', and 'refusal'.",
                param=f"{where}.type",
                code="invalid_value",
            )
    return out


def _responses_input(value: Any) -> tuple[list[str], tuple[Message, ...]]:
    if value is None:
        raise _missing("input")
    if isinstance(value, str):
        return [], (UserMessage.text(value),)
    items = _expect(value, list, "input", "string or array")
    system: list[str] = []
    turns = _Turns()
    calls: set[str] = set()
    for i, item in enumerate(items):
        where = f"input[{i}]"
        _expect(item, dict, where, "object")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role is None:
                raise _missing(f"{where}.role")
            if role not in ("user", "assistant", "system", "developer"):
                raise OpenAIRequestError(
                    f"Invalid value: '{role}'. Supported values are: 'assistant', 'system', "
                    "'developer', and 'user'.",
                    param=f"{where}.role",
                    code="invalid_value",
                )
            if "content" not in item:
                raise _missing(f"{where}.content")
            parts = _responses_content(item["content"], f"{where}.content", role=role)
            if role in ("system", "developer"):
                system.extend(p.text for p in parts if isinstance(p, TextPart))
            elif role == "user":
                turns.user(parts)
            else:
                turns.assistant([p for p in parts if isinstance(p, TextPart)])
        elif kind == "function_call":
            call_id = _require(item, "call_id", f"{where}.call_id", str, "string")
            name = _require(item, "name", f"{where}.name", str, "string")
            arguments = _require(item, "arguments", f"{where}.arguments", str, "string")
            turns.assistant([ToolCall.from_raw(call_id, name, arguments)])
            calls.add(call_id)
        elif kind == "function_call_output":
            call_id = _require(item, "call_id", f"{where}.call_id", str, "string")
            if call_id not in calls:
                raise OpenAIRequestError(
                    f"No tool call found for function call output with call_id {call_id}.",
                    param="input",
                )
            output = item.get("output")
            if output is None:
                raise _missing(f"{where}.output")
            if isinstance(output, list):
                text = "".join(
                    p.text
                    for p in _responses_content(output, f"{where}.output", role="tool")
                    if isinstance(p, TextPart)
                )
            else:
                text = _expect(output, str, f"{where}.output", "string or array")
            turns.result(ToolResult(tool_call_id=call_id, content=text))
        elif kind == "reasoning":
            summary = item.get("summary") or []
            _expect(summary, list, f"{where}.summary", "array")
            text = "".join(str(s.get("text", "")) for s in summary if isinstance(s, dict))
            turns.assistant([ThinkingPart(text=text)])
        else:
            raise OpenAIRequestError(
                f"Invalid value: '{kind}'. Supported values are: 'message', 'function_call', "
                "'function_call_output', and 'reasoning'.",
                param=f"{where}.type",
                code="invalid_value",
            )
    messages = turns.finish()
    if not messages:
        raise OpenAIRequestError(
            "Invalid 'input': empty array. Expected an array with minimum length 1, but got an "
            "empty array instead.",
            param="input",
            code="empty_array",
        )
    return system, messages


class _Turns:
    """Groups Responses input items into turns: consecutive assistant items (text, reasoning,
    function calls) form one assistant message, consecutive outputs one tool-result message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._assistant: list[AssistantPart] = []
        self._results: list[UserPart] = []

    def _flush(self) -> None:
        if self._assistant:
            self.messages.append(AssistantMessage(content=tuple(self._assistant)))
            self._assistant = []
        if self._results:
            self.messages.append(UserMessage(content=tuple(self._results)))
            self._results = []

    def user(self, parts: list[TextPart | ImagePart]) -> None:
        self._flush()
        self.messages.append(UserMessage(content=tuple(parts)))

    def assistant(self, parts: list[AssistantPart]) -> None:
        if self._results:
            self._flush()
        self._assistant.extend(parts)

    def result(self, part: ToolResult) -> None:
        if self._assistant:
            self._flush()
        self._results.append(part)

    def finish(self) -> tuple[Message, ...]:
        self._flush()
        return tuple(self.messages)


def _responses_tools(value: Any) -> tuple[tuple[ToolSpec, ...], tuple[dict[str, Any], ...]]:
    if value is None:
        return (), ()
    items = _expect(value, list, "tools", "array")
    specs: list[ToolSpec] = []
    raws: list[dict[str, Any]] = []
    for i, tool in enumerate(items):
        where = f"tools[{i}]"
        _expect(tool, dict, where, "object")
        kind = tool.get("type")
        if kind is None:
            raise _missing(f"{where}.type")
        if kind != "function":
            raise OpenAIRequestError(
                f"Invalid value: '{kind}'. Supported values are: 'function'.",
                param=f"{where}.type",
                code="invalid_value",
            )
        name = _tool_name(tool.get("name"), f"{where}.name")
        description = tool.get("description") or ""
        _expect(description, str, f"{where}.description", "string")
        schema = _schema(tool.get("parameters"), f"{where}.parameters")
        specs.append(ToolSpec(name=name, description=description, parameters=schema))
        raws.append(
            {
                "type": "function",
                "name": name,
                "description": description,
                "parameters": schema,
                "strict": tool.get("strict"),
            }
        )
    return tuple(specs), tuple(raws)


def decode_responses(body: bytes, store: ResponseStore | None = None) -> ResponsesRequest:
    """Decode and validate a Responses API request body; with ``store``,
    ``previous_response_id`` and ``item_reference`` items resolve against it."""
    data = decode_json_body(body)
    model = _model(data)
    resolved = resolve_input(data, store)
    system, messages = _responses_input(resolved)
    instructions = data.get("instructions")
    if instructions is not None:
        _expect(instructions, str, "instructions", "string")
        system.insert(0, instructions)
    tools, tools_raw = _responses_tools(data.get("tools"))
    max_tokens = _number(data, "max_output_tokens", 16, 2**31, integer=True)
    choice_raw = data.get("tool_choice", "auto")
    settings = Settings(
        max_tokens=int(max_tokens) if max_tokens is not None else None,
        temperature=_number(data, "temperature", 0, 2),
        top_p=_number(data, "top_p", 0, 1),
        tool_choice=_tool_choice(data.get("tool_choice"), "tool_choice", responses=True),
    )
    _check_choice(settings.tool_choice, tools)
    return ResponsesRequest(
        model=model,
        conversation=Conversation(
            messages=messages,
            system="\n\n".join(system) if system else None,
            tools=tools,
            settings=settings,
        ),
        stream=_bool(data, "stream", default=False),
        instructions=instructions,
        store=_bool(data, "store", default=True),
        parallel_tool_calls=_bool(data, "parallel_tool_calls", default=True),
        tools_raw=tools_raw,
        tool_choice_raw=choice_raw,
        provider=_provider(data),
        reasoning=_optional_object(data, "reasoning"),
        raw=data,
        input_items=tuple(_input_items(resolved)),
        previous_response_id=data.get("previous_response_id"),
    )


def _input_items(value: Any) -> list[dict[str, Any]]:
    """The input as items (a string is one user message), as a store keeps them."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return [dict(i) for i in value if isinstance(i, dict)] if isinstance(value, list) else []
