"""Programmable fault schedules and a request log for one emulator (the pytest plugin's engine).

A :class:`FaultSchedule` sits in front of the emulator's fault plan. ``create_app(schedule=s)``
gives an app whose state consults it on every model request:

* ``s.add(fault, times=N, model=..., api=..., turn=...)``: the next N matching requests get
  ``fault``, then the schedule is spent.
* ``s.add_rate(fault, rate, ..., seed=...)``: each matching request gets ``fault`` with
  probability ``rate``, drawn from ``random.Random(seed)`` (reproducible).
* ``s.requests``: one :class:`RequestRecord` per model request served since the last
  ``s.reset()``, with ``api`` (the project's API name), ``model``, ``turn`` (``"first"`` or
  ``"tool_result"``) and ``fault`` (the fault name applied, or None).

Precedence per request: the ``x-callproof-fault`` header, then the schedule's entries in the
order they were added (the first that fires wins), then the preset's or plan's own draw.

Filters: ``model`` is an exact id or a glob (``"amazon.nova-*"``); ``api`` is one of
:data:`API_NAMES` or a family (``"bedrock"``, ``"openai"``); ``turn`` is one of :data:`TURNS`.
Bad input raises :class:`InvalidSchedule` (a ``ConfigError`` and a ``ValueError``). The schedule
is thread-safe; it is *one* schedule per server, so tests sharing a server must run one at a time
(the plugin resets it at each test's start and end).
"""

from __future__ import annotations

import contextvars
import fnmatch
import random
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias
from urllib.parse import unquote

from starlette.middleware import Middleware

from callproof.conversation import Conversation
from callproof.dialects import API_NAMES as _DIALECT_API_NAMES
from callproof.dialects import api_family
from callproof.emulator.faults import Fault, FaultPlan, InvalidFault, turn_type
from callproof.emulator.state import EmulatorState, Limits
from callproof.errors import ConfigError

__all__ = [
    "API_FAMILIES",
    "API_NAMES",
    "TURNS",
    "FaultSchedule",
    "InvalidSchedule",
    "RequestRecord",
    "ScheduledState",
    "api_for_path",
]

#: The project's API names, as the emulator labels requests by their route (the dialects'
#: own names: :data:`callproof.dialects.API_NAMES`).
API_NAMES: tuple[str, ...] = _DIALECT_API_NAMES
#: Families accepted by the ``api`` filter: each matches its APIs.
API_FAMILIES: dict[str, tuple[str, ...]] = {
    family: tuple(name for name in API_NAMES if api_family(name) == family)
    for family in dict.fromkeys(api_family(name) for name in API_NAMES)
}
#: Turn values: a first user turn, or the turn after a tool result.
TURNS: tuple[str, ...] = ("first", "tool_result")

Turn: TypeAlias = Literal["first", "tool_result"]
_Scope: TypeAlias = MutableMapping[str, Any]
_Receive: TypeAlias = Callable[[], Awaitable[_Scope]]
_Send: TypeAlias = Callable[[_Scope], Awaitable[None]]
_ASGIApp: TypeAlias = Callable[[_Scope, _Receive, _Send], Awaitable[None]]


class InvalidSchedule(ConfigError, ValueError):
    """A scheduled fault, rate, count or filter is not valid."""


def api_for_path(path: str) -> tuple[str, str | None] | None:
    """``(api name, model id or None)`` for a model route's path; None for other paths."""
    if path.startswith("/model/"):
        rest = path[len("/model/") :]
        model, sep, operation = rest.rpartition("/")
        if not sep:
            return None
        if operation == "converse-stream":
            return "bedrock-converse-stream", unquote(model)
        if operation == "converse":
            return "bedrock-converse", unquote(model)
        return None
    if path.rstrip("/") == "/v1/chat/completions":
        return "openai-completions", None
    if path.rstrip("/") == "/v1/responses":
        return "openai-responses", None
    return None


@dataclass(slots=True)
class RequestRecord:
    """One model request the emulator received (filled in as the request is handled)."""

    api: str
    model: str | None
    path: str
    turn: Turn | None = None
    fault: str | None = None
    status: int | None = None
    scheduled: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "model": self.model,
            "turn": self.turn,
            "fault": self.fault,
            "status": self.status,
            "path": self.path,
            "scheduled": self.scheduled,
        }


@dataclass(frozen=True, slots=True)
class _Filter:
    model: str | None
    apis: tuple[str, ...] | None
    turn: Turn | None

    def matches(self, api: str, model: str, turn: Turn) -> bool:
        return (
            (self.apis is None or api in self.apis)
            and (self.turn is None or self.turn == turn)
            and (self.model is None or fnmatch.fnmatchcase(model, self.model))
        )


@dataclass(slots=True)
class _Entry:
    fault: Fault
    filter: _Filter
    remaining: int | None = None  # a count schedule
    rate: float = 1.0  # a rate schedule
    rng: random.Random | None = None

    def fire(self) -> bool:
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
            return True
        assert self.rng is not None
        return self.rng.random() < self.rate


def _parse_fault(fault: str | Fault) -> Fault:
    if isinstance(fault, Fault):
        return fault
    if not isinstance(fault, str):
        raise InvalidSchedule(f"fault must be a fault name such as 'hang_no_events', got {fault!r}")
    try:
        return Fault.parse(fault)
    except InvalidFault as exc:
        raise InvalidSchedule(str(exc)) from None


def _filter(model: str | None, api: str | None, turn: str | None) -> _Filter:
    if model is not None and (not isinstance(model, str) or not model):
        raise InvalidSchedule(f"model must be a model id or glob, got {model!r}")
    apis: tuple[str, ...] | None = None
    if api is not None:
        if api in API_NAMES:
            apis = (api,)
        elif api in API_FAMILIES:
            apis = API_FAMILIES[api]
        else:
            known = ", ".join([*API_NAMES, *API_FAMILIES])
            raise InvalidSchedule(f"unknown api {api!r}; known: {known}")
    if turn == "after_tool_result":  # the fault plans' spelling
        turn = "tool_result"
    if turn is not None and turn not in TURNS:
        raise InvalidSchedule(f"turn must be 'first' or 'tool_result', got {turn!r}")
    return _Filter(model, apis, turn)  # type: ignore[arg-type]  # checked just above


_CURRENT: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "callproof_request", default=None
)


class FaultSchedule:
    """Scheduled faults and the request log of one emulator; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []
        self._log: list[RequestRecord] = []

    def add(
        self,
        fault: str | Fault,
        *,
        times: int = 1,
        model: str | None = None,
        api: str | None = None,
        turn: str | None = None,
    ) -> None:
        """The next ``times`` requests matching the filters get ``fault``."""
        parsed = _parse_fault(fault)
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise InvalidSchedule(f"times must be a whole number of at least 1, got {times!r}")
        entry = _Entry(parsed, _filter(model, api, turn), remaining=times)
        with self._lock:
            self._entries.append(entry)

    def add_rate(
        self,
        fault: str | Fault,
        rate: float,
        *,
        model: str | None = None,
        api: str | None = None,
        turn: str | None = None,
        seed: int | str | None = None,
    ) -> None:
        """Each request matching the filters gets ``fault`` with probability ``rate``."""
        parsed = _parse_fault(fault)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise InvalidSchedule(f"rate must be a number from 0 to 1, got {rate!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | str)):
            raise InvalidSchedule(f"seed must be an integer or a string, got {seed!r}")
        rng = random.Random(seed if seed is not None else 0)
        entry = _Entry(parsed, _filter(model, api, turn), rate=float(rate), rng=rng)
        with self._lock:
            self._entries.append(entry)

    def reset(self) -> None:
        """Forget every scheduled fault and the request log."""
        with self._lock:
            self._entries.clear()
            self._log.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        """The model requests received since the last reset, oldest first (a copy)."""
        with self._lock:
            return list(self._log)

    def choose(self, api: str, model: str, turn: Turn) -> Fault | None:
        """The scheduled fault for this request, or None (consumes a count schedule)."""
        with self._lock:
            for entry in self._entries:
                if entry.filter.matches(api, model, turn) and entry.fire():
                    return entry.fault
        return None

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)

    def new_state(
        self,
        *,
        preset: str = "seed",
        faults: str | Path | FaultPlan | None = None,
        seed: int | None = None,
        limits: Limits | None = None,
    ) -> ScheduledState:
        """An emulator state that consults this schedule (``create_app(schedule=...)``)."""
        return ScheduledState(self, preset=preset, faults=faults, seed=seed, limits=limits)

    def middleware(self) -> Middleware:
        """The ASGI middleware that logs every model request and labels it with its API."""
        return Middleware(_Recorder, schedule=self)


class ScheduledState(EmulatorState):
    """An :class:`EmulatorState` whose fault choice consults a :class:`FaultSchedule` first."""

    def __init__(self, schedule: FaultSchedule, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.schedule = schedule

    def choose_fault(
        self, api: str, model_id: str, conversation: Conversation, forced: str | None = None
    ) -> Fault | None:
        record = _CURRENT.get()
        turn: Turn = "tool_result" if turn_type(conversation) == "after_tool_result" else "first"
        if record is not None:
            record.model = model_id
            record.turn = turn
        fault: Fault | None = None
        if not forced and record is not None:
            fault = self.schedule.choose(record.api, model_id, turn)
            record.scheduled = fault is not None
        if fault is None:
            fault = super().choose_fault(api, model_id, conversation, forced)
        if record is not None:
            record.fault = None if fault is None else str(fault)
        return fault


class _Recorder:
    """Pure ASGI middleware: a :class:`RequestRecord` per model request, in a context var."""

    def __init__(self, app: _ASGIApp, schedule: FaultSchedule) -> None:
        self.app = app
        self.schedule = schedule

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        route = api_for_path(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        record = RequestRecord(api=route[0], model=route[1], path=scope["path"])
        self.schedule._record(record)

        async def send_status(message: _Scope) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
            await send(message)

        token = _CURRENT.set(record)
        try:
            await self.app(scope, receive, send_status)
        finally:
            _CURRENT.reset(token)
