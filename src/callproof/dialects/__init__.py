"""One module per wire API (see ``base``)."""

from __future__ import annotations

from typing import Any

from callproof.dialects.base import API_NAMES, Dialect, RawItem, StreamDecoder, WireRequest
from callproof.errors import ConfigError

__all__ = ["API_NAMES", "Dialect", "RawItem", "StreamDecoder", "WireRequest", "get_dialect"]


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
