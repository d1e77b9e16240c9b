"""Response plans for OpenAI chat completions and Responses: each body decoded and encoded once.

Without plans, a streamed chat answer on the fast front cost about 500 us of CPU (decoding and
validating the body, scripting the turn, ``json`` encoding every chunk, an asyncio task, a
Starlette request), against 68-112 us for a planned Bedrock stream. An :class:`OpenAIPlanner`
keeps, per identical body (and route), the decoded request and its model profile, and per
fault (none, or ``latency:S``) the scripted turn and its SSE events (or its JSON body) encoded
once as templates: literal bytes with slots for the response id, the ``created`` second, the
Responses output item ids and each event's ``obfuscation``. Per request only those, the
seeded draws and the timing are left; an unpaced model's events are filled from one joined
template and sent as one step.

The seeded outcome sequence is a contract, so the draws are the route's, in its order: the
fault draw, then on the request's RNG the turn (cached only when scripting it drew nothing),
the ids (the real encoders draw them), the ``openai-processing-ms`` header, the output item
ids, each event's obfuscation, then the delays. The bytes are the route's too:
tests/emulator/test_fastfront.py holds them equal to hypercorn's, cold and warm, for both
flavours, with seeded faults. A stored Responses answer is stored once its steps are played,
as the route does.

What the plans do not cover goes the route's way (:func:`~callproof.emulator.openai_routes.
respond`, the same code as before): other faults, requests the route refuses (the async
handler reads and judges the body itself), forced faults that do not parse, and Responses
bodies that read the response store (``previous_response_id``, ``item_reference``: the body
alone does not fix their answer).
"""

from __future__ import annotations

import functools
import json
import random
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from starlette.responses import Response

from callproof.emulator.body import lone_surrogates
from callproof.emulator.faults import (
    FAULT_HEADER,
    Fault,
    InvalidFault,
    apply_to_turn,
    replay_rejection,
)
from callproof.emulator.ids import token_bytes
from callproof.emulator.models import ModelProfile, Turn, script_turn
from callproof.emulator.openai_chat import ChatEncoder, Piece, finish_reason_for
from callproof.emulator.openai_decode import ChatRequest, OpenAIRequestError, decode_chat
from callproof.emulator.openai_responses import (
    ResponsesEncoder,
    ResponsesRequest,
    decode_responses,
)
from callproof.emulator.openai_routes import (
    KEEPALIVE_INTERVAL_S,
    REASONING_REPLAY_REJECTED,
    _paced,
    _reasoning_off,
    _storing,
    _stream_headers,
    _with_headers,
    error_response,
    openai_headers,
    respond,
    too_many_streams,
)
from callproof.emulator.plans import MAX_PREPARED, MAX_PREPARED_BODY, Answer, merged
from callproof.emulator.state import EmulatorState
from callproof.emulator.streaming import Headers, Send, Sleep, Step

__all__ = ["OpenAIPlanner"]

#: Slot markers written where the per-request values go (private-use characters: JSON keeps
#: them as they are with ``ensure_ascii=False``; bodies holding one are never planned).
_ID = "\ue000I\ue000"
#: what a template encoder's RNG gives for an obfuscation (one draw of one character)
_OBFUSCATION = "\ue002"
_CREATED = 7_319_664_805_210_937_457
_ITEM = "\ue001{}\ue001"  # the k-th output item id (Responses)
_SPLIT = re.compile(f"(\ue000I\ue000|\ue002|\ue001[0-9]+\ue001|{_CREATED})".encode())
_SLOT_ID, _SLOT_OBFUSCATION, _SLOT_CREATED, _SLOT_ITEMS = 0, 1, 2, 3
_RESPONSES_OBFUSCATION = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ID_MARK, _CREATED_MARK = _ID.encode(), str(_CREATED).encode()
_SLOTS = {_ID_MARK: _SLOT_ID, _OBFUSCATION.encode(): _SLOT_OBFUSCATION}
_SLOTS[str(_CREATED).encode()] = _SLOT_CREATED
#: A template: literal bytes and slot numbers, in order.
Template = tuple[bytes | int, ...]


def _template(data: bytes) -> Template:
    parts = _SPLIT.split(data)
    out: list[bytes | int] = []
    for i, part in enumerate(parts):
        if i % 2:
            slot = _SLOTS.get(part)
            out.append(_SLOT_ITEMS + int(part[3:-3]) if slot is None else slot)
        elif part:
            out.append(part)
    return tuple(out)


class _NoDraws:
    """The RNG of a template encoder: it has no draws, so an encoder path that still drew
    would fail loudly here instead of baking random characters into a template (every
    obfuscation goes through the encoders' ``_pad``, which the template encoders override)."""


class _TemplateChat(ChatEncoder):
    """A :class:`ChatEncoder` that writes slot markers instead of the id, ``created`` and the
    obfuscation (same key order, same bytes around them)."""

    def __init__(self, profile: ModelProfile, *, model: str, include_usage: bool) -> None:
        real = ChatEncoder(
            profile, model=model, created=0, rng=random.Random(0), include_usage=include_usage
        )
        self.profile, self.openrouter, self.model = profile, real.openrouter, model
        self.created, self.include_usage = _CREATED, include_usage
        self.rng = _NoDraws()  # type: ignore[assignment]  # one marker per obfuscation
        self.id, self.fingerprint = _ID, real.fingerprint

    def _pad(self) -> str:
        return _OBFUSCATION  # the slot marker


class _TemplateResponses(ResponsesEncoder):
    """A :class:`ResponsesEncoder` that writes slot markers instead of the id, ``created``,
    the output item ids (in the order they are drawn) and the obfuscations."""

    def __init__(self, profile: ModelProfile, request: ResponsesRequest) -> None:
        self.profile, self.request, self.model = profile, request, request.model
        self.openrouter = profile.flavour == "openrouter"
        self.created, self.seq, self.output_items = _CREATED, 0, []
        self.rng = _NoDraws()  # type: ignore[assignment]  # one marker per obfuscation
        self.id = _ID
        self.items = 0

    def _item_id(self, prefix: str) -> str:
        self.items += 1
        return _ITEM.format(self.items - 1)

    def _pad(self) -> str:
        return _OBFUSCATION  # the slot marker


@dataclass(slots=True)
class _Chunks:
    """A streamed answer's pieces as templates (kind, tokens and final kept), and for an
    unpaced answer the keep-alive comments before the first event (``head``) and the rest
    (``tail``) each joined into one template."""

    pieces: list[tuple[Template, Piece]]
    head: Template = ()
    tail: Template = ()


def _joined(templates: list[Template]) -> Template:
    out: list[bytes | int] = []
    for template in templates:
        for part in template:
            if isinstance(part, bytes) and out and isinstance(out[-1], bytes):
                out[-1] += part
            else:
                out.append(part)
    return tuple(out)


def _unpaced(profile: ModelProfile) -> bool:
    latency = profile.latency
    return latency.first_event_s <= 0 and latency.tokens_per_s <= 0


@dataclass(slots=True)
class _Prepared:
    """One request body (chat completions or Responses), decoded and validated, with its
    model."""

    request: ChatRequest | ResponsesRequest
    profile: ModelProfile
    #: per fault (None or a ``latency`` fault's key): the scripted turn, when scripting it
    #: drew nothing from the RNG
    turns: dict[str | None, Turn] = field(default_factory=dict)
    streams: dict[str | None, _Chunks] = field(default_factory=dict)
    bodies: dict[str | None, Template] = field(default_factory=dict)
    turn_free: bool = True


def _planned(fault: Fault) -> bool:
    return fault.name == "latency"


#: Bytes no planned body may hold: a marker (raw or JSON-escaped) could be echoed back; and
#: Responses bodies that read the response store (their answer is not fixed by the body).
_UNPLANNED = (b"\xee\x80\x80", b"\xee\x80\x81", b"\xee\x80\x82", b"\\ue00", str(_CREATED).encode())
_STORE_READS = (b"previous_response_id", b"item_reference")


class OpenAIPlanner:
    """Plans for ``POST /v1/chat/completions`` and ``POST /v1/responses`` of one emulator
    state (see the module doc)."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._prepared: OrderedDict[tuple[bool, bytes], _Prepared] = OrderedDict()

    def _prepare(self, body: bytes, *, responses: bool) -> _Prepared | None:
        key = (responses, body)
        prepared = self._prepared.get(key)
        if prepared is not None:
            self._prepared.move_to_end(key)
            return prepared
        lowered = body.lower()
        if any(mark in lowered for mark in _UNPLANNED) or lone_surrogates(body):
            return None  # the route answers it
        if responses and any(name in body for name in _STORE_READS):
            return None
        try:
            request = (
                decode_responses(body, self.state.responses) if responses else (decode_chat(body))
            )
        except OpenAIRequestError:
            return None  # the route answers it (the same decoding, the same error)
        profile = self.state.profile("openai", request.model)
        if profile is None:
            return None
        prepared = _Prepared(request, profile)
        if len(body) <= MAX_PREPARED_BODY:
            self._prepared[key] = prepared
            while len(self._prepared) > MAX_PREPARED:
                self._prepared.popitem(last=False)
        return prepared

    def chat(self, headers: Mapping[str, str], body: bytes) -> Answer | Response | None:
        """A chat completions request; see :meth:`answer`."""
        return self.answer(headers, body, responses=False)

    def answer(
        self, headers: Mapping[str, str], body: bytes, *, responses: bool
    ) -> Answer | Response | None:
        """The answer to one request: an :class:`Answer` from the plan, a complete response
        from the route (a fault the plans do not cover), or None when the async route must
        judge the request (nothing was drawn yet)."""
        prepared = self._prepare(body, responses=responses)
        if prepared is None:
            return None
        request, profile, state = prepared.request, prepared.profile, self.state
        forced = headers.get(FAULT_HEADER)
        try:
            fault = state.choose_fault("openai", request.model, request.conversation, forced)
        except InvalidFault:
            return None  # the route's 400 (a forced fault is parsed before any draw)
        rejection = replay_rejection(fault, profile, request.conversation)
        if fault is not None and fault.name == "reject_reasoning_replay" and rejection is None:
            fault = None  # nothing replayed: answered as usual
        if rejection is not None:
            if rejection.arg != "hang":
                error = OpenAIRequestError(
                    REASONING_REPLAY_REJECTED,
                    param="messages",
                    code="invalid_request_message_order",
                )
                return _with_headers(state, error_response(error), profile)
            fault = Fault("hang_before_headers")  # the hang variant
        if fault is not None and not _planned(fault):
            return _with_headers(state, respond(state, request, profile, fault), profile)
        key = None if fault is None else str(fault)
        rng = state.request_rng(request.model)
        turn = self._turn(prepared, key, fault, rng)
        created = int(time.time())
        extra = fault.added_latency if fault is not None else 0.0
        if isinstance(request, ResponsesRequest):
            return self._responses(prepared, request, key, turn, created, extra, rng)
        encoder = ChatEncoder(
            profile,
            model=request.model,
            created=created,
            rng=rng,
            include_usage=request.include_usage or profile.flavour == "openrouter",
        )
        values = [encoder.id.encode(), b"", str(created).encode()]

        def draw() -> bytes:
            return token_bytes(rng, rng.randint(0, 12))

        steps: list[Step]
        if request.stream:
            answer_headers = _stream_headers(profile, encoder.id, rng)
            chunks = self._chunks(prepared, key, turn, encoder.include_usage)
            keepalive = encoder.keepalive().data if encoder.openrouter else None
            steps = self._stream(chunks, values, draw, extra, keepalive, rng, profile)
        else:
            steps, answer_headers = self._whole(prepared, key, turn, values, draw, rng, extra)
        return self._answer(profile, steps, answer_headers)

    def _responses(
        self,
        prepared: _Prepared,
        request: ResponsesRequest,
        key: str | None,
        turn: Turn,
        created: int,
        extra: float,
        rng: random.Random,
    ) -> Answer | Response:
        profile = prepared.profile
        encoder = ResponsesEncoder(profile, request, created=created, rng=rng)
        answer_headers = _stream_headers(profile, encoder.id, rng) if request.stream else None
        items = encoder._items(turn)  # the item ids, drawn as the route draws them
        encoder.output_items = [item for _, item in items]
        values = [encoder.id.encode(), b"", str(created).encode()]
        values += [item["id"].encode() for _, item in items]

        def draw() -> bytes:
            size = rng.randint(2, 15)
            return token_bytes(rng, size, _RESPONSES_OBFUSCATION)

        steps: list[Step]
        if answer_headers is not None:
            chunks = self._chunks(prepared, key, turn, include_usage=False)
            keepalive = b": \n\n" if encoder.openrouter else None
            steps = self._stream(chunks, values, draw, extra, keepalive, rng, profile)
        else:
            steps, answer_headers = self._whole(prepared, key, turn, values, draw, rng, extra)
        if request.store and encoder.output_items:
            # stored once every step is played, as the route's own steps do
            stored = _storing(self.state, request, encoder, iter(steps))
            return self._answer(profile, stored, answer_headers)
        return self._answer(profile, steps, answer_headers)

    def _answer(
        self, profile: ModelProfile, steps: Iterable[Step], headers: dict[str, str]
    ) -> Answer | Response:
        state = self.state
        if not state.open_stream():
            return _with_headers(state, too_many_streams(), profile)
        if profile.flavour != "openrouter":
            for name, value in openai_headers(state, 200).items():
                headers.setdefault(name, value)
        return Answer.of(steps, headers, on_close=state.close_stream)  # type: ignore[arg-type]

    def _stream(
        self,
        chunks: _Chunks,
        values: list[bytes],
        draw: Callable[[], bytes],
        extra: float,
        keepalive: bytes | None,
        rng: random.Random,
        profile: ModelProfile,
    ) -> list[Step]:
        if _unpaced(profile) and (keepalive is None or extra <= KEEPALIVE_INTERVAL_S):
            # what _paced gives an unpaced model, merged: the keep-alive comments at once,
            # then every event after the fault's wait (no draws for delays)
            steps: list[Step] = [Headers()]
            if chunks.head:
                steps.append(Send(_fill(chunks.head, values, draw)))
            steps.append(Send(_fill(chunks.tail, values, draw), extra))
            return merged(steps)
        pieces = [
            Piece(_fill(template, values, draw), piece.kind, piece.tokens, piece.final)
            for template, piece in chunks.pieces
        ]
        return [Headers(), *merged(list(_paced(pieces, profile, rng, extra, keepalive)))]

    def _turn(
        self, prepared: _Prepared, key: str | None, fault: Fault | None, rng: random.Random
    ) -> Turn:
        turn = prepared.turns.get(key)
        if turn is not None:
            return turn
        request = prepared.request
        before = rng.getstate() if prepared.turn_free else None
        turn = script_turn(prepared.profile, request.conversation, rng)
        if not request.parallel_tool_calls and len(turn.tool_calls) > 1:
            turn = turn.replace(tool_calls=turn.tool_calls[:1])
        turn = apply_to_turn(fault, turn, request.conversation, request.model)
        if _reasoning_off(request):
            turn = turn.replace(reasoning="")
        if before is not None:
            if rng.getstate() == before:
                prepared.turns[key] = turn
            else:
                prepared.turn_free = False
        return turn

    def _encoder(
        self, prepared: _Prepared, *, include_usage: bool
    ) -> _TemplateChat | _TemplateResponses:
        request = prepared.request
        if isinstance(request, ResponsesRequest):
            return _TemplateResponses(prepared.profile, request)
        return _TemplateChat(prepared.profile, model=request.model, include_usage=include_usage)

    def _chunks(
        self, prepared: _Prepared, key: str | None, turn: Turn, include_usage: bool
    ) -> _Chunks:
        cached = prepared.turns.get(key) is turn
        chunks = prepared.streams.get(key) if cached else None
        if chunks is None:
            encoder = self._encoder(prepared, include_usage=include_usage)
            if isinstance(encoder, _TemplateResponses):
                pieces = encoder.stream(turn)
            else:
                finish = finish_reason_for(turn.stop_reason)
                pieces = encoder.stream(turn, finish=finish, native=finish)
                if encoder.openrouter:
                    pieces.insert(0, encoder.keepalive())
            templates = [(_template(p.data), p) for p in pieces]
            first = next(i for i, p in enumerate(pieces) if p.kind != "keepalive")
            chunks = _Chunks(
                templates,
                _joined([t for t, _ in templates[:first]]),
                _joined([t for t, _ in templates[first:]]),
            )
            if cached:
                prepared.streams[key] = chunks
        return chunks

    def _whole(
        self,
        prepared: _Prepared,
        key: str | None,
        turn: Turn,
        values: list[bytes],
        draw: Callable[[], bytes],
        rng: random.Random,
        extra: float,
    ) -> tuple[list[Step], dict[str, str]]:
        """A non-streamed answer (chat or Responses): its JSON body after the model's delay."""
        data = _fill(self._body(prepared, key, turn), values, draw)
        wait = prepared.profile.latency.response_delay(rng, turn.output_tokens) + extra
        headers = {"content-type": "application/json", "content-length": str(len(data))}
        return [Sleep(wait), Send(data)], headers

    def _body(self, prepared: _Prepared, key: str | None, turn: Turn) -> Template:
        cached = prepared.turns.get(key) is turn
        template = prepared.bodies.get(key) if cached else None
        if template is None:
            encoder = self._encoder(prepared, include_usage=False)
            if isinstance(encoder, _TemplateResponses):
                body = encoder.body(turn)
            else:
                finish = finish_reason_for(turn.stop_reason)
                body = encoder.completion(turn, finish=finish, native=finish)
            template = _template(json.dumps(body, ensure_ascii=False).encode())
            if cached:
                prepared.bodies[key] = template
        return template


@functools.lru_cache(maxsize=4096)
def _compiled(template: Template) -> tuple[tuple[bytes, ...], int, tuple[bytes, ...]]:
    """A template as its literal stretches between obfuscation slots (the id, ``created`` and
    item ids left in them as their markers), the number of obfuscations, and the item
    markers present: filling it is then one join and a few ``bytes.replace`` calls, in C,
    instead of a Python step per part. Templates live in the bounded plans; the cache is
    bounded too."""
    segments: list[bytes] = []
    current: list[bytes] = []
    items: list[bytes] = []
    for part in template:
        if isinstance(part, bytes):
            current.append(part)
        elif part == _SLOT_OBFUSCATION:
            segments.append(b"".join(current))
            current = []
        elif part == _SLOT_ID:
            current.append(_ID_MARK)
        elif part == _SLOT_CREATED:
            current.append(_CREATED_MARK)
        else:
            marker = _ITEM.format(part - _SLOT_ITEMS).encode()
            current.append(marker)
            items.append(marker)
    segments.append(b"".join(current))
    return tuple(segments), len(segments) - 1, tuple(dict.fromkeys(items))


def _fill(template: Template, values: list[bytes], draw: Callable[[], bytes]) -> bytes:
    """The template's bytes with this request's id, ``created``, item ids and obfuscations
    (drawn here, in order, as the encoders draw them).

    The markers cannot be made by what is put in: obfuscations are at most 15 letters and
    digits between JSON quotes, ``created`` and the ids hold no private-use character, and
    ``created`` goes in first (the 19-digit marker cannot appear inside an id after it)."""
    segments, pads, items = _compiled(template)
    if pads:
        out: list[bytes] = [b""] * (2 * pads + 1)
        out[0::2] = segments
        out[1::2] = [draw() for _ in range(pads)]
        data = b"".join(out)
    else:
        data = segments[0]
    data = data.replace(_CREATED_MARK, values[_SLOT_CREATED]).replace(_ID_MARK, values[_SLOT_ID])
    for marker in items:
        data = data.replace(marker, values[_SLOT_ITEMS + int(marker[3:-3])])
    return data
