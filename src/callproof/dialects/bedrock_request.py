"""Request mapping for Bedrock Converse and ConverseStream: a neutral
:class:`~callproof.conversation.Conversation` to the JSON body of
``POST /model/{modelId}/converse-stream`` (or ``/converse``).

Shapes follow the bedrock-runtime service model (botocore ``bedrock-runtime/2023-09-30``);
the tests validate every body with botocore's own parameter validation.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from callproof.conversation import (
    AssistantMessage,
    Conversation,
    ImagePart,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolSpec,
    UserMessage,
)
from callproof.dialects._common import dumps, merge_extra
from callproof.dialects.base import WireRequest

__all__ = ["converse_body", "converse_path", "encode_converse_request", "tool_input"]

log = logging.getLogger(__name__)

#: Image formats Bedrock accepts, by media subtype.
_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}


def converse_path(model: str, *, streaming: bool) -> str:
    """``/model/{modelId}/converse[-stream]`` with the model id percent-encoded (``:`` and the
    ``/`` of ARNs included), as botocore sends it."""
    op = "converse-stream" if streaming else "converse"
    return f"/model/{quote(model, safe='')}/{op}"


def tool_input(call: ToolCall) -> Any:
    """The JSON document sent as a toolUse ``input``.

    Malformed arguments (``arguments`` is None) cannot be replayed as a document; the raw text
    is sent if it parses as JSON at all, else ``{}``, and the change is logged.
    """
    if call.arguments is not None:
        return call.arguments
    try:
        return json.loads(call.arguments_raw)
    except ValueError:
        log.debug("tool call %s: malformed arguments %r sent as {}", call.id, call.arguments_raw)
        return {}


def _text_block(text: str, where: str) -> dict[str, Any] | None:
    # Bedrock rejects blank text blocks ("The text field in the ContentBlock object ... is blank").
    if not text.strip():
        log.debug("dropped a blank text block in %s (Bedrock rejects blank text)", where)
        return None
    return {"text": text}


def _image_block(part: ImagePart) -> dict[str, Any]:
    subtype = part.media_type.split("/")[-1].lower()
    fmt = _IMAGE_FORMATS.get(subtype, subtype)
    return {"image": {"format": fmt, "source": {"bytes": base64.b64encode(part.data).decode()}}}


def _tool_result_block(part: ToolResult) -> dict[str, Any]:
    content: list[dict[str, Any]]
    if isinstance(part.content, dict):
        content = [{"json": part.content}]
    elif isinstance(part.content, list):
        # A JSON array is not a document every model accepts as a tool result; send it as text.
        content = [{"text": json.dumps(part.content, ensure_ascii=False)}]
    else:
        content = [{"text": part.content}]
    return {
        "toolResult": {
            "toolUseId": part.tool_call_id,
            "content": content,
            "status": "error" if part.is_error else "success",
        }
    }


def _reasoning_block(part: ThinkingPart) -> dict[str, Any] | None:
    if part.redacted is not None:
        return {"reasoningContent": {"redactedContent": base64.b64encode(part.redacted).decode()}}
    if not part.text:
        log.debug("dropped an empty reasoning block")
        return None
    text: dict[str, Any] = {"text": part.text}
    if part.signature:
        text["signature"] = part.signature
    return {"reasoningContent": {"reasoningText": text}}


def _user_content(msg: UserMessage, where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in msg.content:
        if isinstance(part, TextPart):
            block = _text_block(part.text, where)
            if block is not None:
                blocks.append(block)
        elif isinstance(part, ImagePart):
            blocks.append(_image_block(part))
        else:
            blocks.append(_tool_result_block(part))
    return blocks


def _assistant_content(msg: AssistantMessage, where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in msg.content:
        if isinstance(part, TextPart):
            block = _text_block(part.text, where)
        elif isinstance(part, ThinkingPart):
            block = _reasoning_block(part)
        else:
            block = {
                "toolUse": {"toolUseId": part.id, "name": part.name, "input": tool_input(part)}
            }
        if block is not None:
            blocks.append(block)
    return blocks


def _tool_spec(tool: ToolSpec) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": tool.parameters}}
    if tool.description:  # the model requires 1+ characters when present
        spec["description"] = tool.description
    return {"toolSpec": spec}


def _tool_choice(choice: ToolChoice) -> dict[str, Any] | None:
    if isinstance(choice, dict):
        return {"tool": {"name": choice["tool"]}}
    if choice == "auto":
        return {"auto": {}}
    if choice == "any":
        return {"any": {}}
    # Converse has no "none"; leaving toolChoice out lets the model decide.
    log.debug("tool_choice 'none' has no Converse equivalent; toolChoice omitted")
    return None


def converse_body(conversation: Conversation) -> dict[str, Any]:
    """The request body (everything but the ``modelId`` that goes in the path)."""
    messages = []
    for i, msg in enumerate(conversation.messages):
        where = f"messages.{i}"
        if isinstance(msg, UserMessage):
            messages.append({"role": "user", "content": _user_content(msg, where)})
        else:
            messages.append({"role": "assistant", "content": _assistant_content(msg, where)})
    body: dict[str, Any] = {"messages": messages}
    if conversation.system and conversation.system.strip():
        body["system"] = [{"text": conversation.system}]
    settings = conversation.settings
    inference: dict[str, Any] = {}
    if settings.max_tokens is not None:
        inference["maxTokens"] = settings.max_tokens
    if settings.temperature is not None:
        inference["temperature"] = settings.temperature
    if settings.top_p is not None:
        inference["topP"] = settings.top_p
    if settings.stop_sequences:
        inference["stopSequences"] = list(settings.stop_sequences)
    if inference:
        body["inferenceConfig"] = inference
    if conversation.tools:
        tool_config: dict[str, Any] = {"tools": [_tool_spec(t) for t in conversation.tools]}
        if settings.tool_choice is not None:
            choice = _tool_choice(settings.tool_choice)
            if choice is not None:
                tool_config["toolChoice"] = choice
        body["toolConfig"] = tool_config
    return body


def encode_converse_request(
    model: str,
    conversation: Conversation,
    *,
    streaming: bool,
    extra: Mapping[str, Any] | None = None,
) -> WireRequest:
    """The whole wire request; ``extra`` fields (e.g. ``additionalModelRequestFields``) are
    merged into the body."""
    body = merge_extra(converse_body(conversation), extra)
    return WireRequest(
        method="POST",
        path=converse_path(model, streaming=streaming),
        body=dumps(body),
        headers={"content-type": "application/json"},
    )
