"""Bedrock Converse request bodies -> the neutral :class:`Conversation`, validated as the real
service validates them, with its real messages (see wire-facts.md §2 and the quoted errors in
public bug reports):

* "A conversation must alternate between user and assistant roles. ..."
* "Expected toolResult blocks at messages.2.content for the following Ids: ..."
* "The number of toolResult blocks at messages.2.content exceeds the number of toolUse blocks of
  previous turn."
* "The text field in the ContentBlock object at messages.0.content.0 is blank. ..."
* "The content field in the Message object at messages.1 is empty. ..."
* "The toolUse blocks at messages.1.content contain duplicate Ids: ..."
* "1 validation error detected: Value at 'messages.2.member.content.1.member.toolUse.name'
  failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+"
* inferenceConfig bounds: "Value '0' at 'inferenceConfig.maxTokens' failed to satisfy
  constraint: Member must have value greater than or equal to 1".

Every failure is a :class:`BedrockError` (status, ``x-amzn-ErrorType``, message). Sans-IO.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
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

__all__ = ["BedrockError", "decode_request", "parse_body"]

TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]+")
TOOL_USE_ID = re.compile(r"[a-zA-Z0-9_.:-]+")
MALFORMED = "Malformed input request, please reformat your input and try again."


class BedrockError(Exception):
    """An error the Bedrock routes answer with: ``{"message": ...}`` and ``x-amzn-ErrorType``."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        fields: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = headers or {}
        #: members of the error body besides ``message`` (e.g. ``originalStatusCode``)
        self.fields = fields or {}


def _invalid(message: str) -> BedrockError:
    return BedrockError(400, "ValidationException", message)


class _Constraints:
    """Collects Coral-style field constraint violations, reported together."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, value: Any, path: str, constraint: str) -> None:
        shown = "" if value is None else f" '{value}'"
        if isinstance(value, str) and len(value) > 80:
            shown = ""
        self.items.append(
            f"Value{shown} at '{path}' failed to satisfy constraint: Member must {constraint}"
        )

    def raise_if_any(self) -> None:
        if self.items:
            n = len(self.items)
            noun = "error" if n == 1 else "errors"
            raise _invalid(f"{n} validation {noun} detected: " + "; ".join(self.items))


def parse_body(body: bytes) -> dict[str, Any]:
    """The request JSON object; ``SerializationException`` when it is not one."""
    try:
        data = json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BedrockError(400, "SerializationException", MALFORMED) from None
    if not isinstance(data, dict):
        raise BedrockError(400, "SerializationException", MALFORMED)
    return data


def _expect(value: Any, kind: type | tuple[type, ...], path: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
        raise BedrockError(400, "SerializationException", f"{MALFORMED} ({path})")
    return value


def decode_request(data: dict[str, Any]) -> Conversation:
    """Validate a Converse/ConverseStream body and give back its conversation."""
    errors = _Constraints()
    if data.get("messages") is None:
        errors.add(None, "messages", "not be null")
        errors.raise_if_any()
    raw_messages: list[Any] = _expect(data.get("messages"), list, "messages")
    tools, choice = _tool_config(data.get("toolConfig"), errors)
    settings = _settings(data.get("inferenceConfig"), choice, errors)
    system = _system(data.get("system"))
    messages = [_message(m, i, errors) for i, m in enumerate(raw_messages)]
    errors.raise_if_any()
    _check_turns(raw_messages, messages, tools_declared=data.get("toolConfig") is not None)
    return Conversation(
        messages=tuple(messages), system=system, tools=tuple(tools), settings=settings
    )


def _system(raw: Any) -> str | None:
    if raw is None:
        return None
    _expect(raw, list, "system")
    texts = []
    for block in raw:
        _expect(block, dict, "system")
        if "text" in block:
            texts.append(str(_expect(block["text"], str, "system.text")))
    return "\n".join(texts) if texts else None


def _tool_config(raw: Any, errors: _Constraints) -> tuple[list[ToolSpec], ToolChoice | None]:
    if raw is None:
        return [], None
    _expect(raw, dict, "toolConfig")
    tools: list[ToolSpec] = []
    raw_tools = _expect(raw.get("tools", []), list, "toolConfig.tools")
    if not raw_tools:
        errors.add(None, "toolConfig.tools", "have length greater than or equal to 1")
    for i, entry in enumerate(raw_tools):
        _expect(entry, dict, f"toolConfig.tools.{i + 1}")
        spec = entry.get("toolSpec")
        if spec is None:
            continue  # cachePoint or systemTool entries
        _expect(spec, dict, f"toolConfig.tools.{i + 1}.member.toolSpec")
        name = spec.get("name")
        where = f"toolConfig.tools.{i + 1}.member.toolSpec.name"
        if not isinstance(name, str):
            errors.add(None, where, "not be null")
            continue
        _check_name(name, where, errors)
        schema = spec.get("inputSchema", {})
        _expect(schema, dict, f"toolConfig.tools.{i + 1}.member.toolSpec.inputSchema")
        parameters = schema.get("json", {"type": "object", "properties": {}})
        if isinstance(parameters, str):  # a document sent as a JSON string
            try:
                parameters = json.loads(parameters)
            except ValueError:
                raise _invalid(MALFORMED) from None
        _expect(parameters, dict, "inputSchema.json")
        description = spec.get("description", "")
        tools.append(ToolSpec(name=name, description=str(description), parameters=parameters))
    choice: ToolChoice | None = None
    raw_choice = raw.get("toolChoice")
    if raw_choice is not None:
        _expect(raw_choice, dict, "toolConfig.toolChoice")
        if "any" in raw_choice:
            choice = "any"
        elif "tool" in raw_choice:
            named = _expect(raw_choice["tool"], dict, "toolConfig.toolChoice.tool")
            choice = {"tool": str(named.get("name", ""))}
        else:
            choice = "auto"
    return tools, choice


def _check_name(name: str, where: str, errors: _Constraints) -> None:
    if not 1 <= len(name) <= 64:
        errors.add(name, where, "have length less than or equal to 64")
    elif not TOOL_NAME.fullmatch(name):
        errors.add(None, where, f"satisfy regular expression pattern: {TOOL_NAME.pattern}")


def _check_id(tool_id: Any, where: str, errors: _Constraints) -> str:
    if not isinstance(tool_id, str) or not tool_id:
        errors.add(None, where, "have length greater than or equal to 1")
        return ""
    if len(tool_id) > 64:
        errors.add(None, where, "have length less than or equal to 64")
    elif not TOOL_USE_ID.fullmatch(tool_id):
        errors.add(None, where, f"satisfy regular expression pattern: {TOOL_USE_ID.pattern}")
    return tool_id


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BedrockError(400, "SerializationException", f"{MALFORMED} ({path})")
    return float(value)


def _settings(raw: Any, choice: ToolChoice | None, errors: _Constraints) -> Settings:
    if raw is None:
        return Settings(tool_choice=choice)
    _expect(raw, dict, "inferenceConfig")
    max_tokens = raw.get("maxTokens")
    if max_tokens is not None:
        value = _number(max_tokens, "inferenceConfig.maxTokens")
        if value < 1:
            errors.add(
                int(value), "inferenceConfig.maxTokens", "have value greater than or equal to 1"
            )
        max_tokens = int(value)
    bounded: dict[str, float | None] = {}
    for key in ("temperature", "topP"):
        value = raw.get(key)
        if value is None:
            bounded[key] = None
            continue
        number = _number(value, f"inferenceConfig.{key}")
        if number < 0:
            errors.add(value, f"inferenceConfig.{key}", "have value greater than or equal to 0")
        elif number > 1:
            errors.add(value, f"inferenceConfig.{key}", "have value less than or equal to 1")
        bounded[key] = number
    stops = _expect(raw.get("stopSequences", []), list, "inferenceConfig.stopSequences")
    if len(stops) > 2500:
        errors.add(None, "inferenceConfig.stopSequences", "have length less than or equal to 2500")
    for i, stop in enumerate(stops):
        if not isinstance(stop, str) or not stop:
            errors.add(
                None,
                f"inferenceConfig.stopSequences.{i + 1}.member",
                "have length greater than or equal to 1",
            )
    return Settings(
        max_tokens=max_tokens,
        temperature=bounded["temperature"],
        top_p=bounded["topP"],
        stop_sequences=tuple(s for s in stops if isinstance(s, str) and s),
        tool_choice=choice,
    )


def _message(raw: Any, index: int, errors: _Constraints) -> Message:
    _expect(raw, dict, f"messages.{index}")
    role = raw.get("role")
    if role not in ("user", "assistant"):
        errors.add(
            role,
            f"messages.{index + 1}.member.role",
            "satisfy enum value set: [assistant, user]",
        )
        role = "user"
    content = raw.get("content")
    if content is None:
        errors.add(None, f"messages.{index + 1}.member.content", "not be null")
        content = []
    _expect(content, list, f"messages.{index}.content")
    if not content:
        raise _invalid(
            f"The content field in the Message object at messages.{index} is empty. "
            "Add a ContentBlock object to the content field and try again."
        )
    user_parts: list[UserPart] = []
    assistant_parts: list[AssistantPart] = []
    for j, block in enumerate(content):
        _expect(block, dict, f"messages.{index}.content.{j}")
        where = f"messages.{index + 1}.member.content.{j + 1}.member"
        if "text" in block:
            text = _expect(block["text"], str, f"messages.{index}.content.{j}.text")
            if not text.strip():
                raise _invalid(
                    f"The text field in the ContentBlock object at messages.{index}.content.{j} "
                    "is blank. Add text to the text field, and try again."
                )
            user_parts.append(TextPart(text))
            assistant_parts.append(TextPart(text))
        elif "toolUse" in block:
            use = _expect(block["toolUse"], dict, f"{where}.toolUse")
            tool_id = _check_id(use.get("toolUseId"), f"{where}.toolUse.toolUseId", errors)
            name = use.get("name")
            if isinstance(name, str):
                _check_name(name, f"{where}.toolUse.name", errors)
            else:
                errors.add(None, f"{where}.toolUse.name", "not be null")
                name = ""
            args = use.get("input", {})
            raw_args = json.dumps(args)
            assistant_parts.append(
                ToolCall(
                    id=tool_id,
                    name=name,
                    arguments=args if isinstance(args, dict) else None,
                    arguments_raw=raw_args,
                )
            )
        elif "toolResult" in block:
            result = _expect(block["toolResult"], dict, f"{where}.toolResult")
            tool_id = _check_id(result.get("toolUseId"), f"{where}.toolResult.toolUseId", errors)
            items = _expect(result.get("content", []), list, f"{where}.toolResult.content")
            is_error = result.get("status") == "error"
            if is_error and not items:
                raise _invalid(
                    f"The content field at messages.{index}.content.{j}.toolResult cannot be "
                    "empty when status value is error."
                )
            user_parts.append(ToolResult(tool_id, _result_content(items), is_error))
        elif "reasoningContent" in block:
            reasoning = _expect(block["reasoningContent"], dict, f"{where}.reasoningContent")
            assistant_parts.append(_thinking(reasoning, where))
        elif "image" in block:
            image = _expect(block["image"], dict, f"{where}.image")
            user_parts.append(_image(image, where))
        # document, video, audio, cachePoint, guardContent, citations: accepted, not modelled
    if role == "assistant":
        return AssistantMessage(content=tuple(assistant_parts))
    return UserMessage(content=tuple(user_parts))


def _result_content(items: list[Any]) -> str | dict[str, Any] | list[Any]:
    if len(items) == 1 and isinstance(items[0], dict):
        only = items[0]
        if "json" in only and isinstance(only["json"], dict | list):
            return only["json"]
        if "text" in only and isinstance(only["text"], str):
            return only["text"]
    texts = [i["text"] for i in items if isinstance(i, dict) and isinstance(i.get("text"), str)]
    if len(texts) == len(items):
        return "\n".join(texts)
    return [i.get("json", i.get("text")) if isinstance(i, dict) else i for i in items]


def _thinking(raw: dict[str, Any], where: str) -> ThinkingPart:
    if "redactedContent" in raw:
        return ThinkingPart(redacted=_blob(raw["redactedContent"], where))
    text_block = raw.get("reasoningText", {})
    _expect(text_block, dict, f"{where}.reasoningContent.reasoningText")
    text = text_block.get("text", "")
    signature = text_block.get("signature")
    return ThinkingPart(text=str(text), signature=signature if isinstance(signature, str) else None)


def _blob(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise BedrockError(400, "SerializationException", f"{MALFORMED} ({where})")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BedrockError(400, "SerializationException", f"{MALFORMED} ({where})") from None


def _image(raw: dict[str, Any], where: str) -> ImagePart:
    fmt = str(raw.get("format", "png"))
    source = raw.get("source", {})
    _expect(source, dict, f"{where}.image.source")
    data = _blob(source.get("bytes", ""), f"{where}.image.source.bytes")
    return ImagePart(media_type=f"image/{fmt}", data=data)


def _check_turns(raw: list[Any], messages: list[Message], *, tools_declared: bool) -> None:
    if not messages or messages[0].role != "user":
        raise _invalid(
            "A conversation must start with a user message. "
            "Try again with a conversation that starts with a user message."
        )
    uses_tools = False
    for i, message in enumerate(messages):
        if i and message.role == messages[i - 1].role:
            raise _invalid(
                "A conversation must alternate between user and assistant roles. Make sure the "
                "conversation alternates between user and assistant roles and try again."
            )
        if isinstance(message, AssistantMessage):
            uses_tools = uses_tools or bool(message.tool_calls)
            counts = Counter(c.id for c in message.tool_calls)
            duplicates = sorted(d for d, n in counts.items() if n > 1)
            if duplicates:
                raise _invalid(
                    f"The toolUse blocks at messages.{i}.content contain duplicate Ids: "
                    + ", ".join(duplicates)
                )
            continue
        results = [p for p in message.content if isinstance(p, ToolResult)]
        uses_tools = uses_tools or bool(results)
        previous = messages[i - 1] if i else None
        calls = previous.tool_calls if isinstance(previous, AssistantMessage) else []
        if len(results) > len(calls):
            raise _invalid(
                f"The number of toolResult blocks at messages.{i}.content exceeds the number "
                "of toolUse blocks of previous turn."
            )
        answered = {r.tool_call_id for r in results}
        missing = [c.id for c in calls if c.id not in answered]
        if missing:
            raise _invalid(
                f"Expected toolResult blocks at messages.{i}.content for the following Ids: "
                + ", ".join(missing)
            )
    if uses_tools and not tools_declared:
        raise _invalid(
            "The toolConfig field must be defined when using toolUse and toolResult content blocks."
        )
