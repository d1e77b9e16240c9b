"""One module per wire API (see ``base``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from callproof.dialects.base import API_NAMES, Dialect, RawItem, StreamDecoder, WireRequest
from callproof.errors import ConfigError

if TYPE_CHECKING:
    from callproof.conversation import Conversation

__all__ = [
    "API_NAMES",
    "Dialect",
    "RawItem",
    "StreamDecoder",
    "WireRequest",
    "get_dialect",
    "wire_body",
]


def get_dialect(api: str, **options: Any) -> Dialect:
    """The dialect for one of :data:`API_NAMES`.

    ``options`` go to the dialect's constructor (e.g. ``reasoning_replay="reasoning_content"``
    or ``max_tokens_field="max_completion_tokens"`` for ``openai-completions``); ``stream=False``
    selects the non-streamed form of ``openai-completions`` and ``openai-responses``. An unknown
    name is a :class:`~callproof.errors.ConfigError` listing the valid ones.
    """
    # Imported here so that importing the registry stays cheap.
    from callproof.dialects.bedrock_converse import BedrockConverse, BedrockConverseStream
    from callproof.dialects.openai_chat import OpenAIChat, OpenAIChatJSON
    from callproof.dialects.openai_responses import OpenAIResponses

    classes: dict[str, Any] = {
        "bedrock-converse-stream": BedrockConverseStream,
        "bedrock-converse": BedrockConverse,
        "openai-completions": OpenAIChat,
        "openai-responses": OpenAIResponses,
    }
    cls = classes.get(api)
    if cls is None:
        raise ConfigError(f"unknown api {api!r}; valid: {', '.join(API_NAMES)}")
    if api == "openai-completions" and "stream" in options:
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
