"""The emulator's state: model profiles, the fault plan, seeded RNGs and limits.

Public API (stable; the Bedrock and OpenAI routes both build on it). One
:class:`EmulatorState` lives on ``app.state.emulator``:

* ``state.profile(api, model_id) -> ModelProfile | None`` (``api`` is ``"bedrock"`` or
  ``"openai"``); exact ids first, then glob ids declared in a fault plan (e.g. ``"*"``).
* ``state.choose_fault(api, model_id, conversation, forced) -> Fault | None``: ``forced`` is the
  ``x-callproof-fault`` header value (parsed with ``Fault.parse``; raises ``InvalidFault``),
  otherwise one seeded draw from the plan for (api, model, turn type).
* ``state.request_rng(model_id) -> random.Random``: a fresh RNG per request for ids, padding and
  jitter, derived from the seed and a request counter.
* ``state.request_id(rng) -> str`` (uuid-shaped), ``state.fresh_request_id()`` (the same
  without an RNG of its own; the request counter advances as for ``request_rng``) and
  ``state.openai_request_id()``; all unique per process, even for two emulators with the same
  seed.
* ``state.open_stream() -> bool`` / ``state.close_stream()``: the concurrent-stream bound.
* ``state.responses``: the :class:`~callproof.emulator.responses_store.ResponseStore`.
* ``state.limits`` (:class:`Limits`: ``max_body_bytes``, ``max_streams``), ``state.seed``,
  ``state.closing`` (a ``threading.Event`` set when the server stops; pass it to
  :class:`~callproof.emulator.streaming.StepResponse`).
"""

from __future__ import annotations

import fnmatch
import itertools
import random
import secrets
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from callproof.conversation import Conversation
from callproof.emulator.faults import CURRENT_ATTEMPT_KEY, Fault, FaultPlan, turn_type
from callproof.emulator.models import ModelProfile
from callproof.emulator.presets import get_preset, profile_from_mapping
from callproof.emulator.responses_store import ResponseStore

__all__ = ["EmulatorState", "Limits", "uuid4_text"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep a hostile or runaway client from exhausting the emulator."""

    max_body_bytes: int = 8 * 1024 * 1024
    max_streams: int = 2048
    #: Seconds for the whole request body to arrive (a client trickling it is cut off).
    body_timeout_s: float = 30.0
    #: Responses kept for ``previous_response_id`` / ``item_reference`` (oldest dropped first).
    max_stored_responses: int = 1024


_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_4 = (4 << 76) | (0x8000 << 48)


def uuid4_text(bits: int) -> str:
    """``str(uuid.UUID(int=bits, version=4))``, without building the UUID object."""
    h = f"{(bits & _VERSION_MASK) | _VERSION_4:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class EmulatorState:
    """Everything the routes share; see the module docstring."""

    def __init__(
        self,
        *,
        preset: str = "seed",
        faults: str | Path | FaultPlan | None = None,
        seed: int | None = None,
        limits: Limits | None = None,
    ) -> None:
        chosen = get_preset(preset)
        if isinstance(faults, FaultPlan):
            plan: FaultPlan | None = faults
        else:
            plan = FaultPlan.load(faults) if faults is not None else None
        self.preset = chosen.name
        # a fault plan replaces the preset's rules; its models add to the preset's
        self.plan = plan if plan is not None else FaultPlan(rules=chosen.rules)
        if seed is None:
            seed = plan.seed if plan is not None and plan.seed is not None else None
        self.seed: int = seed if seed is not None else secrets.randbits(32)
        self.limits = limits or Limits()
        self.closing = threading.Event()
        self._exact: dict[tuple[str, str], ModelProfile] = {}
        self._globs: list[tuple[str, ModelProfile]] = []
        for profile in chosen.models:
            self._exact[(profile.api, profile.id)] = profile
        for i, raw in enumerate(self.plan.models):
            where = f"{self.plan.source or '<faults>'}: models[{i}]"
            profile = profile_from_mapping(raw, where=where)
            if any(ch in profile.id for ch in "*?["):
                self._globs.append((profile.id, profile))
            else:
                self._exact[(profile.api, profile.id)] = profile
        self._fault_rngs: dict[tuple[str, str, str], random.Random] = {}
        self._counter = itertools.count()
        self._salt = secrets.randbits(128)
        self._ids = random.Random(secrets.randbits(128))
        self._lock = threading.Lock()
        self.active_streams = 0
        #: Stored Responses API answers (``previous_response_id``, ``item_reference``).
        self.responses = ResponseStore(self.limits.max_stored_responses)

    @property
    def models(self) -> list[ModelProfile]:
        """Every model with an exact id, in declaration order."""
        return list(self._exact.values())

    def profile(self, api: str, model_id: str) -> ModelProfile | None:
        found = self._exact.get((api, model_id))
        if found is not None:
            return found
        for pattern, profile in self._globs:
            if profile.api == api and fnmatch.fnmatchcase(model_id, pattern):
                return profile.with_id(model_id)
        return None

    def choose_fault(
        self, api: str, model_id: str, conversation: Conversation, forced: str | None = None
    ) -> Fault | None:
        if forced:
            return Fault.parse(forced)
        turn = turn_type(conversation)
        attempt = CURRENT_ATTEMPT_KEY.get()
        if attempt:  # a keyed probe attempt: its own draw, whatever the order of requests
            keyed = FaultPlan.rng_for_attempt(self.seed, attempt, api, model_id, turn)
            return self.plan.draw(api, model_id, turn, keyed)
        key = (api, model_id, turn)
        with self._lock:
            rng = self._fault_rngs.get(key)
            if rng is None:
                rng = self._fault_rngs[key] = FaultPlan.rng_for(self.seed, api, model_id, turn)
            return self.plan.draw(api, model_id, turn, rng)

    def request_rng(self, model_id: str) -> random.Random:
        return random.Random(f"{self.seed}:request:{model_id}:{next(self._counter)}")

    def request_id(self, rng: random.Random) -> str:
        """A uuid-shaped request id, unique per process even under the same seed (as real ids
        are): the seeded bits are mixed with a salt drawn when the state was made, so the
        seeded draws that follow stay the same."""
        return str(uuid.UUID(int=rng.getrandbits(128) ^ self._salt, version=4))

    def fresh_request_id(self) -> str:
        """``request_id(request_rng(...))`` without the string seeding: the request counter
        advances exactly as it did (so the seeded draws that follow are the same), and the id
        comes from the state's own unseeded stream, mixed with the same salt. The seeded id
        bits never reached the wire unsalted, so no seeded outcome changes."""
        next(self._counter)
        return uuid4_text(self._ids.getrandbits(128) ^ self._salt)

    def openai_request_id(self) -> str:
        """An OpenAI ``x-request-id`` (``req_`` + 32 hex), unique per process."""
        return "req_" + secrets.token_hex(16)

    def open_stream(self) -> bool:
        """Take a stream slot; False when ``limits.max_streams`` are already open."""
        with self._lock:
            if self.active_streams >= self.limits.max_streams:
                return False
            self.active_streams += 1
            return True

    def close_stream(self) -> None:
        with self._lock:
            self.active_streams = max(0, self.active_streams - 1)
