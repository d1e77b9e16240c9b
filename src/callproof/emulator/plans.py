"""Response plans: each Bedrock request body is parsed, validated and scripted once.

The Bedrock routes spent about 90% of their CPU on their own per-request Python (issue 14):
building 20 frames (a dict copy, ``json`` encoding and three CRC32s each), validation, the
scripted turn, event building and RNG seeding. A :class:`BedrockPlanner` keeps, per identical
(model id, operation, body bytes), an LRU-bounded :class:`_Prepared` entry: the parsed and
validated conversation, the model profile and, per fault, the scripted turn and its events with
every frame encoded once per padding length (62 variants; the bytes are the ones
:func:`~callproof.emulator.bedrock_wire.frame` gives, a test holds them equal). Per request
only the request id, the seeded draws (the fault, the latency jitter, the paddings) and the
timing are left. Memory stays bounded: at most :data:`MAX_PREPARED` bodies (none larger than
:data:`MAX_PREPARED_BODY`, so no client pins big bodies) and :data:`CACHE_BYTES` of frames and
answer bodies per planner (past it they are encoded per request, as before).

The seeded outcome sequence is a contract (same ``--seed``, same outcomes and bytes), so the
draws are made exactly as before: the same fault draw, the same per-request RNG (seeded from the
seed and the request counter) and the same calls on it, in the same order. A scripted turn is
cached only when scripting it drew nothing from the RNG (tool-call ids are drawn): such turns
are scripted per request, as before. The request id no longer seeds an RNG of its own (it is
salted per process anyway; :meth:`EmulatorState.fresh_request_id` advances the counter the
same).

:meth:`BedrockPlanner.answer` is synchronous and framework-free: the Starlette route, the bare
ASGI hot route and the fast HTTP/1.1 front (:mod:`callproof.emulator.fastfront`) all call it
with the body in hand and play the :class:`Answer` it gives (status, headers, steps).
"""

from __future__ import annotations

import json
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from starlette.responses import Response

from callproof.conversation import Conversation
from callproof.emulator.bedrock_auth import BedrockAuth
from callproof.emulator.bedrock_validation import (
    MALFORMED,
    BedrockError,
    decode_request,
    parse_body,
)
from callproof.emulator.bedrock_wire import (
    EVENTSTREAM,
    HTTP_ERRORS,
    Event,
    converse_body,
    converse_steps,
    frame_steps,
    http_error,
    pad_length,
    padded_frame,
    planned_delays,
    stream_events,
    stream_exception_as_http,
)
from callproof.emulator.body import lone_surrogates
from callproof.emulator.faults import (
    FAULT_HEADER,
    Fault,
    InvalidFault,
    apply_to_turn,
    replay_rejection,
    replays_reasoning,
)
from callproof.emulator.models import ModelProfile, Turn, script_turn
from callproof.emulator.state import EmulatorState
from callproof.emulator.streaming import Hang, Headers, Send, Sleep, Step, instant_body

__all__ = [
    "INVALID_MODEL",
    "REASONING_REPLAY_REJECTED",
    "Answer",
    "BedrockPlanner",
    "merged",
    "split_path",
]

log = logging.getLogger("callproof.emulator.bedrock")

INVALID_MODEL = "The provided model identifier is invalid."
#: Bedrock's answer to a reasoning block replayed to a model that does not take one (a real
#: message: langchain-ai/langchain-aws#401, DeepSeek R1 on Converse).
REASONING_REPLAY_REJECTED = (
    "User messages cannot contain reasoning content. Please remove the reasoning content and "
    "try again."
)
_THROTTLED = "Too many requests, please wait before trying again."

#: Bodies kept prepared (least recently used dropped first).
MAX_PREPARED = 64
#: Bodies larger than this are prepared per request (never kept: no client can pin memory).
MAX_PREPARED_BODY = 64 * 1024
#: Bytes of frames and answer bodies kept per planner, at most (past it, encoded per request).
CACHE_BYTES = 16 * 1024 * 1024
#: Distinct ``latencyMs`` values whose metadata frames are kept per plan (jittered latencies
#: give many; past this they are encoded per request).
_MAX_METADATA = 256


@dataclass(slots=True)
class Answer:
    """What to send: ``status``, ``headers`` (lowercase names, in order; ``content-type``
    included) and ``steps`` (played by :class:`~callproof.emulator.streaming.StepResponse` or
    the fast front). ``body`` is the whole body when nothing waits or breaks (the steps are
    headers and zero-delay sends only), else None. ``on_close`` releases the stream slot."""

    status: int
    headers: dict[str, str]
    steps: list[Step]
    body: bytes | None = None
    on_close: Callable[[], None] | None = None

    @classmethod
    def of(
        cls,
        steps: list[Step],
        headers: dict[str, str],
        *,
        status: int = 200,
        on_close: Callable[[], None] | None = None,
    ) -> Answer:
        return cls(status, headers, steps, instant_body(steps), on_close)

    @classmethod
    def from_response(cls, response: Response) -> Answer:
        """A complete Starlette response (the JSON errors) as an answer."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in response.raw_headers}
        body = bytes(response.body)
        return cls(response.status_code, headers, [Send(body)], body)

    def release(self) -> None:
        """Run ``on_close`` (the slot's release) once: later calls do nothing."""
        callback, self.on_close = self.on_close, None
        if callback is not None:
            callback()


def merged(steps: list[Step]) -> list[Step]:
    """``steps`` with each run of sends that go out together (every send after the first
    without a delay) as one send: the same bytes in the same chunk, since both players
    (:class:`~callproof.emulator.streaming.StepResponse` and the fast front) join zero-delay
    sends into one write. Fewer steps make a held stream's resumption cheap."""
    out: list[Step] = []
    parts: list[bytes] = []
    delay = 0.0
    for step in steps:
        if isinstance(step, Send):
            if parts and step.delay <= 0:
                parts.append(step.data)
                continue
            if parts:
                out.append(Send(b"".join(parts), delay))
            parts, delay = [step.data], step.delay
            continue
        if parts:
            out.append(Send(b"".join(parts), delay))
            parts = []
        out.append(step)
    if parts:
        out.append(Send(b"".join(parts), delay))
    return out


def split_path(raw_path: bytes) -> tuple[str, str] | None:
    """``/model/<id>/<operation>`` -> (decoded model id, operation)."""
    path = raw_path.decode("latin-1").split("?", 1)[0]
    if not path.startswith("/model/"):
        return None
    encoded, _, operation = path[len("/model/") :].rpartition("/")
    if not encoded or operation not in ("converse", "converse-stream"):
        return None
    return unquote(encoded), operation


class _Budget:
    """Bytes the cached frames and bodies of one planner may still take."""

    __slots__ = ("left",)

    def __init__(self, size: int) -> None:
        self.left = size


class _StreamPlan:
    """One scripted turn's ConverseStream events, with frames cached per padding length."""

    __slots__ = ("budget", "events", "frames", "metadata", "size")

    def __init__(self, events: list[Event], budget: _Budget) -> None:
        self.events = events
        self.budget = budget
        self.size = 0
        # frames[i][pad] for every event but the last (metadata, whose latencyMs varies)
        self.frames: list[dict[int, bytes]] = [{} for _ in events[:-1]]
        self.metadata: dict[tuple[int, int], bytes] = {}

    def _keep(self, data: bytes) -> bool:
        if self.budget.left < len(data):
            return False  # the budget is spent: encoded per request, as before
        self.budget.left -= len(data)
        self.size += len(data)
        return True

    def frame(self, index: int, pad: int) -> bytes:
        cached = self.frames[index].get(pad)
        if cached is None:
            cached = padded_frame(self.events[index], pad)
            if self._keep(cached):
                self.frames[index][pad] = cached
        return cached

    def last_frame(self, latency_ms: int, pad: int) -> bytes:
        key = (latency_ms, pad)
        cached = self.metadata.get(key)
        if cached is None:
            last = self.events[-1]
            metrics = {"latencyMs": latency_ms}
            cached = padded_frame(Event(last.type, {**last.payload, "metrics": metrics}), pad)
            if len(self.metadata) < _MAX_METADATA and self._keep(cached):
                self.metadata[key] = cached
        return cached


@dataclass(slots=True)
class _Prepared:
    """One request body, parsed and validated for one model and operation."""

    profile: ModelProfile
    conversation: Conversation
    replays: bool
    #: per fault: the scripted turn (after the fault's content changes), when scripting it
    #: drew nothing from the RNG; absent = script per request
    turns: dict[Fault | None, Turn] = field(default_factory=dict)
    streams: dict[Fault | None, _StreamPlan] = field(default_factory=dict)
    bodies: dict[tuple[Fault | None, int], bytes] = field(default_factory=dict)
    #: False once scripting this conversation was seen to draw from the RNG
    turn_free: bool = True
    #: bytes of ``bodies`` (the frames count in their plans)
    size: int = 0

    def release(self, budget: _Budget) -> None:
        """Give this entry's cached bytes back (it left the LRU)."""
        budget.left += self.size + sum(plan.size for plan in self.streams.values())


def _instant(profile: ModelProfile) -> bool:
    latency = profile.latency
    return latency.first_event_s <= 0 and latency.tokens_per_s <= 0


class BedrockPlanner:
    """Plans for the Bedrock Converse and ConverseStream routes of one emulator state."""

    def __init__(self, state: EmulatorState, auth: BedrockAuth) -> None:
        self.state = state
        self.auth = auth
        self._prepared: OrderedDict[tuple[str, str, bytes], _Prepared] = OrderedDict()
        self.budget = _Budget(CACHE_BYTES)

    def _prepare(self, model_id: str, operation: str, body: bytes) -> _Prepared:
        key = (model_id, operation, body)
        prepared = self._prepared.get(key)
        if prepared is not None:
            self._prepared.move_to_end(key)
            return prepared
        data = parse_body(body)
        if lone_surrogates(body):
            # no UTF-8 string holds one: the service refuses the input (a 400, never a 500)
            raise BedrockError(400, "ValidationException", MALFORMED)
        profile = self.state.profile("bedrock", model_id)
        if profile is None:
            raise BedrockError(400, "ValidationException", INVALID_MODEL)
        conversation = decode_request(data)
        prepared = _Prepared(profile, conversation, replays_reasoning(conversation))
        if len(body) <= MAX_PREPARED_BODY:
            self._prepared[key] = prepared
            while len(self._prepared) > MAX_PREPARED:
                _, dropped = self._prepared.popitem(last=False)
                dropped.release(self.budget)
        return prepared

    def _turn(
        self, prepared: _Prepared, fault: Fault | None, model_id: str, rng: random.Random
    ) -> Turn:
        turn = prepared.turns.get(fault)
        if turn is not None:
            return turn
        before = rng.getstate() if prepared.turn_free else None
        scripted = script_turn(prepared.profile, prepared.conversation, rng)
        turn = apply_to_turn(fault, scripted, prepared.conversation, model_id)
        if before is not None:
            if rng.getstate() == before:
                prepared.turns[fault] = turn
            else:
                prepared.turn_free = False
        return turn

    def answer(
        self,
        *,
        method: str,
        raw_path: bytes,
        model_id: str,
        operation: str,
        scheme: str,
        headers: Mapping[str, str],
        body: bytes,
        request_id: str,
    ) -> Answer:
        """The answer to one Converse/ConverseStream request; raises :class:`BedrockError`
        (the caller answers it with :func:`~callproof.emulator.bedrock.bedrock_error_response`).
        ``headers`` is case-insensitive or has lowercase names."""
        state = self.state
        host = headers.get("host", "localhost")
        url = f"{scheme}://{host}{raw_path.decode('latin-1')}"
        self.auth.check(method=method, url=url, headers=headers, body=body)
        prepared = self._prepare(model_id, operation, body)
        profile, conversation = prepared.profile, prepared.conversation
        try:
            fault = state.choose_fault("bedrock", model_id, conversation, headers.get(FAULT_HEADER))
        except InvalidFault as exc:
            raise BedrockError(400, "ValidationException", f"{FAULT_HEADER}: {exc}") from None
        rejection = replay_rejection(fault, profile, conversation) if prepared.replays else None
        if fault is not None and fault.name == "reject_reasoning_replay" and rejection is None:
            fault = None  # nothing replayed: the request is answered as usual
        answer_headers = {"x-amzn-requestid": request_id}
        if rejection is not None:
            log.debug("request %s to %s: reasoning replay rejected", request_id, model_id)
            if rejection.arg == "hang":
                return self._slot([Hang()], answer_headers, EVENTSTREAM)
            raise BedrockError(400, "ValidationException", REASONING_REPLAY_REJECTED)
        if fault is not None:
            log.debug("request %s to %s: fault %s", request_id, model_id, fault)
            if fault.name == "http_error":
                raise http_error(fault.status)
            if fault.name == "stream_exception" and operation == "converse":
                raise stream_exception_as_http(fault.value)
        rng = state.request_rng(model_id)
        turn = self._turn(prepared, fault, model_id, rng)
        steps: list[Step]
        if operation == "converse-stream":
            media_type = EVENTSTREAM
            steps = self._stream(prepared, turn, fault, rng)
        else:
            media_type = "application/json"
            delay = profile.latency.response_delay(rng, turn.output_tokens)
            if fault is not None:
                delay += fault.added_latency
            payload = self._converse_payload(prepared, turn, fault, int(delay * 1000))
            plain = converse_steps(payload, delay, fault)
            steps = [Sleep(delay), Send(payload)] if plain is None else plain
            answer_headers["content-length"] = str(len(payload))
        return self._slot(steps, answer_headers, media_type)

    def _stream(
        self, prepared: _Prepared, turn: Turn, fault: Fault | None, rng: random.Random
    ) -> list[Step]:
        profile = prepared.profile
        cached = prepared.turns.get(fault) is turn
        plan = prepared.streams.get(fault) if cached else None
        if plan is None:
            plan = _StreamPlan(stream_events(profile, turn, 0), self.budget)
            if cached:
                prepared.streams[fault] = plan
        if _instant(profile):
            delays = [0.0] * len(plan.events)
        else:
            delays = planned_delays(plan.events, profile.latency, rng)
        extra = fault.added_latency if fault is not None else 0.0
        latency_ms = int((sum(delays) + extra) * 1000)
        last = len(plan.events) - 1
        stream_plan = plan

        def make_frames() -> list[bytes]:
            frames = [stream_plan.frame(i, pad_length(rng)) for i in range(last)]
            frames.append(stream_plan.last_frame(latency_ms, pad_length(rng)))
            return frames

        if (fault is None or fault.name == "latency") and not any(delays):
            # every frame goes out at once (after the fault's wait, if any): one send, the
            # same chunk both players make of zero-delay sends, and a cheap resumption
            steps: list[Step] = [Headers()]
            if extra:
                steps.append(Sleep(extra))
            steps.append(Send(b"".join(make_frames())))
            return steps
        return frame_steps(make_frames, delays, fault)

    def _converse_payload(
        self, prepared: _Prepared, turn: Turn, fault: Fault | None, latency_ms: int
    ) -> bytes:
        cached = prepared.turns.get(fault) is turn
        key = (fault, latency_ms)
        payload = prepared.bodies.get(key) if cached else None
        if payload is None:
            payload = json.dumps(converse_body(turn, latency_ms, prepared.profile)).encode()
            budget = self.budget
            if cached and len(prepared.bodies) < _MAX_METADATA and budget.left >= len(payload):
                budget.left -= len(payload)
                prepared.size += len(payload)
                prepared.bodies[key] = payload
        return payload

    def _slot(self, steps: list[Step], headers: dict[str, str], media_type: str) -> Answer:
        # the slot is taken last, once nothing can fail before the answer releases it
        headers["content-type"] = media_type  # last, where StepResponse's media_type put it
        state = self.state
        if not state.open_stream():
            raise BedrockError(429, "ThrottlingException", _THROTTLED)
        return Answer.of(steps, headers, on_close=state.close_stream)

    def internal_error(self) -> BedrockError:
        """The 500 a bug answers with (never a dead worker)."""
        return BedrockError(500, "InternalServerException", HTTP_ERRORS[500][1])
