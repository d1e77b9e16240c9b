"""One module per wire API (see ``base``), and the registry of them.

Every per-API fact callproof uses is read here from the dialect classes (their ``name``,
``family``, ``base_path``, ``request_path`` and ``tool_ids``): :data:`API_NAMES`,
:func:`api_family`, :func:`base_path`, :func:`api_of_path` and :func:`tool_id_rule`. Adding a
wire API is adding a dialect class to :data:`DIALECTS` (and its name to
:data:`~callproof.dialects.base.ApiName`).
"""

from __future__ import annotations

import json
from typing import Any

from callproof.conversation import Conversation
from callproof.dialects.base import (
    ApiName,
    Dialect,
    Family,
    RawItem,
    StreamDecoder,
    ToolIdRule,
    WireRequest,
)
from callproof.dialects.bedrock_converse import BedrockConverse, BedrockConverseStream
from callproof.dialects.openai_chat import OpenAIChat, OpenAIChatJSON
from callproof.dialects.openai_responses import OpenAIResponses
from callproof.errors import ConfigError

__all__ = [
    "API_NAMES",
    "DIALECTS",
    "ApiName",
    "Dialect",
    "Family",
    "RawItem",
    "StreamDecoder",
    "ToolIdRule",
    "WireRequest",
    "api_family",
    "api_of_path",
    "base_path",
    "dialect_class",
    "get_dialect",
    "tool_id_rule",
    "wire_body",
]

#: The dialect class of each wire API, by its ``name`` (the streamed form where an API has two:
#: ``get_dialect(api, stream=False)`` picks the other).
DIALECTS: dict[str, type[Dialect]] = {
    cls.name: cls for cls in (BedrockConverseStream, BedrockConverse, OpenAIChat, OpenAIResponses)
}
#: The wire APIs, by the names used everywhere in callproof.
API_NAMES: tuple[str, ...] = tuple(DIALECTS)


def dialect_class(api: str) -> type[Dialect]:
    """The class of ``api``; an unknown name is a :class:`~callproof.errors.ConfigError`
    listing the valid ones."""
    cls = DIALECTS.get(api)
    if cls is None:
        raise ConfigError(f"unknown api {api!r}; valid: {', '.join(API_NAMES)}")
    return cls


def api_family(api: str) -> Family:
    """``"bedrock"`` or ``"openai"``: the family ``api`` belongs to."""
    return dialect_class(api).family


def base_path(api: str) -> str:
    """The path ``api`` lives under on a server serving every API (``""`` or ``"/v1"``)."""
    return dialect_class(api).base_path


def api_of_path(path: str) -> str | None:
    """The wire API a request path (without the base URL's own path) belongs to, if any."""
    for name, cls in DIALECTS.items():
        if cls.request_path.search(path):
            return name
    return None


def tool_id_rule(api: str) -> ToolIdRule:
    """What ``api`` accepts as a tool-call id."""
    return dialect_class(api).tool_ids


def get_dialect(api: str, **options: Any) -> Dialect:
    """The dialect for one of :data:`API_NAMES`.

    ``options`` go to the dialect's constructor (e.g. ``reasoning_replay="reasoning_content"``
    or ``max_tokens_field="max_completion_tokens"`` for ``openai-completions``); ``stream=False``
    selects the non-streamed form of ``openai-completions`` and ``openai-responses``. An unknown
    name is a :class:`~callproof.errors.ConfigError` listing the valid ones.
    """
    cls: type[Any] = dialect_class(api)
    if cls is OpenAIChat and "stream" in options:
        options = dict(options)
        if options.pop("stream") is False:
            cls = OpenAIChatJSON
    try:
        dialect: Dialect = cls(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for api {api!r}: {exc}") from exc
    return dialect


def wire_body(api: str, model: str, conversation: Conversation, **options: Any) -> dict[str, Any]:
    """The JSON body ``api`` sends for ``conversation``, as a dict: the exact request, e.g. to
    hand to boto3 (``converse_stream(modelId=model, **body)``; Bedrock puts the model in the
    path, not the body) or to the openai SDK (``chat.completions.create(**body)``)."""
    body: dict[str, Any] = json.loads(
        get_dialect(api, **options).encode_request(model, conversation).body
    )
    return body
