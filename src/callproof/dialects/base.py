"""The seam between our neutral types and one wire API.

A dialect is sans-IO: it turns a :class:`~callproof.conversation.Conversation` into a
:class:`WireRequest`, and bytes back into typed :mod:`~callproof.events`. It knows nothing of
URLs' hosts, auth, sockets or clocks; :mod:`callproof.endpoints` and :mod:`callproof.client` do.
One module per wire API, named after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from callproof.conversation import Conversation
from callproof.errors import HTTPStatusError
from callproof.events import Event

__all__ = ["API_NAMES", "Dialect", "RawItem", "StreamDecoder", "WireRequest"]

#: The four wire APIs, by the names used everywhere in callproof.
API_NAMES = (
    "bedrock-converse-stream",
    "bedrock-converse",
    "openai-completions",
    "openai-responses",
)


@dataclass(frozen=True, slots=True)
class WireRequest:
    """An HTTP request before the endpoint adds its base URL and auth."""

    method: str
    #: Path relative to the endpoint's base URL, already percent-encoded (e.g.
    #: ``/model/moonshotai.kimi-k2.5/converse-stream`` or ``/chat/completions``).
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RawItem:
    """One raw wire unit as decoded (an eventstream frame or an SSE line/event), for capture
    and ``-v`` output."""

    kind: str  # "frame" | "sse" | "comment" | "body"
    data: Any


class StreamDecoder(Protocol):
    """Bytes of one response body in, typed events out.

    ``close`` is called at the end of the body; it raises
    :class:`~callproof.errors.IncompleteStreamError` when the terminal event never came and
    :class:`~callproof.errors.ProtocolError` for undecodable input.
    """

    #: Keep-alive comments seen so far (they are recorded, never events).
    keepalives: int
    #: Whether raw units are kept for :meth:`raw_items`; the client turns it off when nothing
    #: records them (no capture), so decoding does no work for nobody.
    record_raw: bool

    def feed(self, data: bytes) -> list[Event]: ...

    def close(self) -> list[Event]: ...

    def raw_items(self) -> list[RawItem]:
        """Raw units decoded since the last call (drained), for capture and ``-v``."""
        ...


class Dialect(Protocol):
    """One wire API."""

    name: ClassVar[str]
    #: True when the response body is a stream of events; False for one JSON document.
    streaming: ClassVar[bool]

    def encode_request(
        self, model: str, conversation: Conversation, *, extra: Mapping[str, Any] | None = None
    ) -> WireRequest: ...

    def stream_decoder(self) -> StreamDecoder:
        """A decoder for one response body (non-streaming dialects decode the whole JSON body
        at close, so the client has one code path)."""
        ...

    def decode_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> HTTPStatusError: ...
