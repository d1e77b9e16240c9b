"""The seam between our neutral types and one wire API.

A dialect is sans-IO: it turns a :class:`~callproof.conversation.Conversation` into a
:class:`WireRequest`, and bytes back into typed :mod:`~callproof.events`. It knows nothing of
URLs' hosts, auth, sockets or clocks; :mod:`callproof.endpoints` and :mod:`callproof.client` do.
One module per wire API, named after it.

Each dialect class declares its own wire facts (:class:`Dialect`): its API ``name``, its
``family`` (``bedrock``: AWS hosts, SigV4, a region; ``openai``: OpenAI-compatible, bearer
keys), the ``base_path`` its endpoints end in on a host that serves every API, the
``request_path`` it posts to, and the ``tool_ids`` rule its tool-call ids must satisfy. The
registry in :mod:`callproof.dialects` derives the API list and every per-API lookup from those
classes; :data:`ApiName` is the same list spelled for the type checker (a test holds the two
equal).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from callproof.conversation import Conversation
from callproof.errors import HTTPStatusError
from callproof.events import Event

__all__ = [
    "ApiName",
    "Dialect",
    "Family",
    "RawItem",
    "StreamDecoder",
    "ToolIdRule",
    "WireRequest",
]

#: The wire APIs by the names used everywhere in callproof, for the type checker: the
#: dialect classes' ``name`` (see :data:`callproof.dialects.API_NAMES`).
ApiName = Literal[
    "bedrock-converse-stream", "bedrock-converse", "openai-completions", "openai-responses"
]
#: Wire-API families: ``bedrock`` (AWS runtime hosts, SigV4 or a Bedrock API key, a region) and
#: ``openai`` (OpenAI-compatible servers under ``/v1``, bearer keys).
Family = Literal["bedrock", "openai"]


@dataclass(frozen=True, slots=True)
class ToolIdRule:
    """What a tool-call id may look like for one API."""

    pattern: re.Pattern[str]
    max_length: int
    #: Characters kept when an id is rewritten (the complement becomes ``_``).
    invalid_chars: re.Pattern[str]

    @classmethod
    def of(cls, chars: str, max_length: int) -> ToolIdRule:
        """The rule "1 to ``max_length`` characters of the class ``[chars]``"."""
        return cls(
            re.compile(f"[{chars}]{{1,{max_length}}}"), max_length, re.compile(f"[^{chars}]")
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
    """One wire API, with its facts as class attributes."""

    name: ClassVar[ApiName]
    family: ClassVar[Family]
    #: The path the API lives under on a server that serves every API at one address (the
    #: emulator, the gateway): ``""`` for Bedrock's ``/model/...``, ``"/v1"`` for OpenAI's.
    base_path: ClassVar[str]
    #: The request paths of the API (relative to the base URL; matched with ``search``).
    request_path: ClassVar[re.Pattern[str]]
    #: What the API accepts as a tool-call id (:func:`callproof.transforms.prepare` rewrites
    #: ids recorded elsewhere to fit).
    tool_ids: ClassVar[ToolIdRule]
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
