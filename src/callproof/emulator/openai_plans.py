"""Response plans for OpenAI chat completions: each request body decoded and encoded once.

Without plans, a streamed chat answer on the fast front cost about 500 us of CPU (decoding and
validating the body, scripting the turn, ``json`` encoding every chunk, an asyncio task, a
Starlette request), against 68-112 us for a planned Bedrock stream. An :class:`OpenAIPlanner`
keeps, per identical body, the decoded request and its model profile, and per fault (none, or
``latency:S``) the scripted turn and its chunks (or its ``chat.completion`` body) encoded once
as templates: literal bytes with three slots, the response id, the ``created`` second and each
chunk's ``obfuscation``. Per request only those, the seeded draws and the timing are left.

The seeded outcome sequence is a contract, so the draws are the route's, in its order: the
fault draw, then on the request's RNG the turn (cached only when scripting it drew nothing),
the ids (:class:`~callproof.emulator.openai_chat.ChatEncoder` itself draws them), the
``openai-processing-ms`` header, each chunk's obfuscation, then the delays. The bytes are the
route's too (tests/emulator/test_fastfront.py holds them equal to hypercorn's, cold and warm).

What the plans do not cover goes the route's way (:func:`~callproof.emulator.openai_routes.
respond`, the same code as before): other faults, requests the route refuses (answered by the
async handler, which reads and judges the body itself), forced faults that do not parse, and
the Responses API (its decoding reads the response store, so a body does not fix its answer).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response

from callproof.emulator.body import lone_surrogates
from callproof.emulator.faults import (
    FAULT_HEADER,
    Fault,
    InvalidFault,
    apply_to_turn,
    replay_rejection,
)
from callproof.emulator.models import ModelProfile, Turn, script_turn
from callproof.emulator.openai_chat import ChatEncoder, Piece, _random_id, finish_reason_for
from callproof.emulator.openai_decode import ChatRequest, OpenAIRequestError, decode_chat
from callproof.emulator.openai_routes import (
    KEEPALIVE_INTERVAL_S,
    REASONING_REPLAY_REJECTED,
    _paced,
    _reasoning_off,
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
_OBFUSCATION = "\ue000O\ue000"
_CREATED = 7_319_664_805_210_937_457
_MARKS = [_ID.encode(), _OBFUSCATION.encode(), str(_CREATED).encode()]
_SPLIT = re.compile(b"(" + b"|".join(re.escape(m) for m in _MARKS) + b")")
_SLOT_ID, _SLOT_OBFUSCATION, _SLOT_CREATED = 0, 1, 2
_SLOTS = {mark: slot for slot, mark in enumerate(_MARKS)}
#: A template: literal bytes and slot numbers, in order.
Template = tuple[bytes | int, ...]


def _template(data: bytes) -> Template:
    parts = _SPLIT.split(data)
    out: list[bytes | int] = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(_SLOTS[part])
        elif part:
            out.append(part)
    return tuple(out)


class _NoDraws:
    """The RNG of a template encoder: obfuscations are marked, never drawn."""

    def randint(self, a: int, b: int) -> int:
        return 0

    def choice(self, seq: str) -> str:  # pragma: no cover - nothing draws with length 0
        raise AssertionError("a template draws nothing")


class _TemplateChat(ChatEncoder):
    """A :class:`ChatEncoder` that writes slot markers instead of the id, ``created`` and the
    obfuscation (same key order, same bytes around them)."""

    def __init__(self, profile: ModelProfile, *, model: str, include_usage: bool) -> None:
        real = ChatEncoder(
            profile, model=model, created=0, rng=random.Random(0), include_usage=include_usage
        )
        self.profile, self.openrouter, self.model = profile, real.openrouter, model
        self.created, self.include_usage = _CREATED, include_usage
        self.rng = _NoDraws()  # type: ignore[assignment]  # only randint, always 0
        self.id, self.fingerprint = _ID, real.fingerprint

    def chunk(
        self,
        choices: list[dict[str, Any]],
        *,
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        out = super().chunk(choices, usage=usage, error=error)
        if "obfuscation" in out:
            out["obfuscation"] = _OBFUSCATION
        return out


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
    """One chat completions body, decoded and validated, with its model."""

    request: ChatRequest
    profile: ModelProfile
    #: per fault (None or a ``latency`` fault's key): the scripted turn, when scripting it
    #: drew nothing from the RNG
    turns: dict[str | None, Turn] = field(default_factory=dict)
    streams: dict[str | None, _Chunks] = field(default_factory=dict)
    bodies: dict[str | None, Template] = field(default_factory=dict)
    turn_free: bool = True


def _planned(fault: Fault) -> bool:
    return fault.name == "latency"


class OpenAIPlanner:
    """Plans for ``POST /v1/chat/completions`` of one emulator state (see the module doc)."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._prepared: OrderedDict[bytes, _Prepared] = OrderedDict()

    def _prepare(self, body: bytes) -> _Prepared | None:
        prepared = self._prepared.get(body)
        if prepared is not None:
            self._prepared.move_to_end(body)
            return prepared
        if b"\\ue000" in body.lower() or _MARKS[2] in body or _ID[0].encode() in body:
            return None  # a marker in the input could be echoed: the route answers it
        if lone_surrogates(body):
            return None
        try:
            request = decode_chat(body)
        except OpenAIRequestError:
            return None  # the route answers it (the same decoding, the same error)
        profile = self.state.profile("openai", request.model)
        if profile is None:
            return None
        prepared = _Prepared(request, profile)
        if len(body) <= MAX_PREPARED_BODY:
            self._prepared[body] = prepared
            while len(self._prepared) > MAX_PREPARED:
                self._prepared.popitem(last=False)
        return prepared

    def chat(self, headers: Mapping[str, str], body: bytes) -> Answer | Response | None:
        """The answer to one chat completions request: an :class:`Answer` from the plan, a
        complete response from the route (a fault the plans do not cover), or None when the
        async route must judge the request (nothing was drawn yet)."""
        prepared = self._prepare(body)
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
        encoder = ChatEncoder(
            profile,
            model=request.model,
            created=created,
            rng=rng,
            include_usage=request.include_usage or profile.flavour == "openrouter",
        )
        extra = fault.added_latency if fault is not None else 0.0
        values = (encoder.id.encode(), b"", str(created).encode())
        steps: list[Step]
        if request.stream:
            answer_headers = _stream_headers(profile, encoder.id, rng)
            chunks = self._chunks(prepared, key, turn, encoder.include_usage)
            keepalive = None
            if profile.flavour == "openrouter":
                keepalive = encoder.keepalive().data
            if _unpaced(profile) and (keepalive is None or extra <= KEEPALIVE_INTERVAL_S):
                # what _paced gives an unpaced model, merged: the keep-alive comments at
                # once, then every event after the fault's wait (no draws for delays)
                steps = [Headers()]
                if chunks.head:
                    steps.append(Send(_fill(chunks.head, values, rng)))
                steps.append(Send(_fill(chunks.tail, values, rng), extra))
                steps = merged(steps)
            else:
                pieces = [
                    Piece(_fill(template, values, rng), piece.kind, piece.tokens, piece.final)
                    for template, piece in chunks.pieces
                ]
                paced = _paced(pieces, profile, rng, extra, keepalive)
                steps = [Headers(), *merged(list(paced))]
        else:
            data = _fill(self._body(prepared, key, turn), values, rng)
            wait = profile.latency.response_delay(rng, turn.output_tokens) + extra
            answer_headers = {"content-type": "application/json", "content-length": str(len(data))}
            steps = [Sleep(wait), Send(data)]
        if not state.open_stream():
            return _with_headers(state, too_many_streams(), profile)
        if profile.flavour != "openrouter":
            for name, value in openai_headers(state, 200).items():
                answer_headers.setdefault(name, value)
        return Answer.of(steps, answer_headers, on_close=state.close_stream)

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

    def _encoder(self, prepared: _Prepared, *, include_usage: bool) -> _TemplateChat:
        return _TemplateChat(
            prepared.profile, model=prepared.request.model, include_usage=include_usage
        )

    def _chunks(
        self, prepared: _Prepared, key: str | None, turn: Turn, include_usage: bool
    ) -> _Chunks:
        cached = prepared.turns.get(key) is turn
        chunks = prepared.streams.get(key) if cached else None
        if chunks is None:
            encoder = self._encoder(prepared, include_usage=include_usage)
            finish, native = finish_reason_for(turn.stop_reason), turn.stop_reason
            native = finish  # no stop_reason fault is planned
            pieces = encoder.stream(turn, finish=finish, native=native)
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

    def _body(self, prepared: _Prepared, key: str | None, turn: Turn) -> Template:
        cached = prepared.turns.get(key) is turn
        template = prepared.bodies.get(key) if cached else None
        if template is None:
            encoder = self._encoder(prepared, include_usage=False)
            finish = finish_reason_for(turn.stop_reason)
            body = encoder.completion(turn, finish=finish, native=finish)
            template = _template(json.dumps(body, ensure_ascii=False).encode())
            if cached:
                prepared.bodies[key] = template
        return template


def _fill(template: Template, values: tuple[bytes, bytes, bytes], rng: random.Random) -> bytes:
    """The template's bytes with this request's id, ``created`` and obfuscations (drawn here,
    in order, as :meth:`ChatEncoder.chunk` draws them)."""
    out: list[bytes] = []
    for part in template:
        if isinstance(part, bytes):
            out.append(part)
        elif part == _SLOT_OBFUSCATION:
            out.append(_random_id(rng, rng.randint(0, 12)).encode())
        else:
            out.append(values[part])
    return b"".join(out)
