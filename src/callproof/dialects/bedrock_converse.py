"""The Bedrock Converse dialects: ``bedrock-converse-stream`` and ``bedrock-converse``.

Request mapping lives in :mod:`~callproof.dialects.bedrock_request`, response decoding in
:mod:`~callproof.dialects.bedrock_events`; this module joins them and types HTTP errors the way
botocore's rest-json parser does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from callproof.conversation import Conversation
from callproof.dialects._common import body_text, header, json_value, retry_after_s
from callproof.dialects.base import ApiName, Family, StreamDecoder, ToolIdRule, WireRequest
from callproof.dialects.bedrock_events import ConverseBodyDecoder, ConverseStreamDecoder
from callproof.dialects.bedrock_request import encode_converse_request
from callproof.errors import HTTPStatusError

__all__ = ["BedrockConverse", "BedrockConverseStream", "bedrock_error_type", "decode_bedrock_error"]


def _clean_type(code: str) -> str | None:
    # "ThrottlingException:http://internal.amazon.com/coral/..." and
    # "com.amazon.coral.service#ValidationException" both name ValidationException.
    code = code.split(":", 1)[0].rsplit("#", 1)[-1].strip()
    return code or None


def bedrock_error_type(headers: Mapping[str, str], body: Mapping[str, Any]) -> str | None:
    """The error code as botocore derives it: the ``x-amzn-ErrorType`` header, else the body's
    ``code``/``Code``, else ``__type``."""
    value = header(headers, "x-amzn-errortype")
    if value:
        return _clean_type(value)
    for key in ("code", "Code", "__type"):
        code = body.get(key)
        if isinstance(code, str) and code:
            return _clean_type(code)
    return None


def decode_bedrock_error(status: int, headers: Mapping[str, str], body: bytes) -> HTTPStatusError:
    """A non-2xx Bedrock answer as a typed error: type, message, status, request id and the
    wait the server asked for (``Retry-After`` seconds or ``x-amz-retry-after`` ms)."""
    try:
        parsed = json_value(body) if body.strip() else {}
    except ValueError:
        parsed = {}
    doc: Mapping[str, Any] = parsed if isinstance(parsed, dict) else {}
    message = doc.get("message") or doc.get("Message") or body_text(body) or f"HTTP {status}"
    return HTTPStatusError(
        str(message),
        error_type=bedrock_error_type(headers, doc),
        status=status,
        retry_after_s=retry_after_s(headers),
        body=dict(doc) if doc else body_text(body),
        request_id=header(headers, "x-amzn-requestid") or header(headers, "x-amz-request-id"),
    )


class BedrockConverseStream:
    """``POST /model/{modelId}/converse-stream``; the body is an AWS eventstream."""

    name: ClassVar[ApiName] = "bedrock-converse-stream"
    family: ClassVar[Family] = "bedrock"
    base_path: ClassVar[str] = ""
    request_path: ClassVar[re.Pattern[str]] = re.compile(r"^/model/.+/converse-stream$")
    #: ToolUseId ``[a-zA-Z0-9_.:-]{1,64}`` (the bedrock-runtime service model).
    tool_ids: ClassVar[ToolIdRule] = ToolIdRule.of("a-zA-Z0-9_.:-", 64)
    streaming: ClassVar[bool] = True

    def encode_request(
        self, model: str, conversation: Conversation, *, extra: Mapping[str, Any] | None = None
    ) -> WireRequest:
        """The request for ``model`` (percent-encoded into the path) with ``extra`` merged."""
        return encode_converse_request(model, conversation, streaming=self.streaming, extra=extra)

    def stream_decoder(self) -> StreamDecoder:
        """A decoder for one eventstream body."""
        return ConverseStreamDecoder()

    def decode_error(self, status: int, headers: Mapping[str, str], body: bytes) -> HTTPStatusError:
        """A non-2xx answer as :class:`~callproof.errors.HTTPStatusError`."""
        return decode_bedrock_error(status, headers, body)


class BedrockConverse(BedrockConverseStream):
    """``POST /model/{modelId}/converse``; one JSON document, decoded at ``close``."""

    name: ClassVar[ApiName] = "bedrock-converse"
    request_path: ClassVar[re.Pattern[str]] = re.compile(r"^/model/.+/converse$")
    streaming: ClassVar[bool] = False

    def stream_decoder(self) -> StreamDecoder:
        """A decoder that buffers the JSON body and emits its events at ``close``."""
        return ConverseBodyDecoder()
