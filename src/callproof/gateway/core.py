"""The gateway's engine: which router serves a model id, and one routed call as the fronts see it.

Every call goes through a :class:`~callproof.resilience.Router` (one per route; a ``target:``
mapping gets a one-target router), so the gateway, the library and ``call --route`` share one
conduct: watchdogs on decoded events, hedging before the first event, fallback before commit.

:class:`GatewayCall` runs one call. :meth:`GatewayCall.open` waits for the commit point: the
first content event of the winning attempt (streaming), or the end of a successful attempt
(buffered: the route key ``buffered = true``, the header ``x-callproof-mode: buffered``, or a
non-streamed request). Failures before it raise :class:`~callproof.errors.AllAttemptsFailed`,
which the fronts turn into their own HTTP error; failures after it come out of
:meth:`GatewayCall.events` as a :class:`~callproof.errors.CallError` that the fronts send
in-band. Either way the call is appended to the evidence log once it ended.

``x-callproof-fault: NAME[,NAME...]`` on a client request is a test hook for the embedded
emulator: the names are forwarded, one per attempt in order, to the first attempts the call
sends upstream (so ``http_error:500`` alone means "the first attempt fails, once").
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from callproof.conversation import (
    AssistantMessage,
    AssistantPart,
    Conversation,
    Message,
    ToolCall,
    ToolResult,
    UserMessage,
    UserPart,
)
from callproof.emulator.faults import FAULT_HEADER
from callproof.errors import AllAttemptsFailed, CallError
from callproof.events import Event, Response
from callproof.resilience import Router, router_from_config
from callproof.resilience.router import RouteStream
from callproof.targets import Target
from callproof.transforms import TOOL_ID_RULES, valid_id

if TYPE_CHECKING:
    from callproof.client import Client
    from callproof.gateway.config import ServeConfig
    from callproof.gateway.evidence import EvidenceLog

__all__ = [
    "MODE_HEADER",
    "FaultForwardingClient",
    "Gateway",
    "GatewayCall",
    "Resolved",
    "ToolIdMap",
    "stream_wire",
]

#: ``x-callproof-mode: buffered`` asks for a buffered call.
MODE_HEADER = "x-callproof-mode"

log = logging.getLogger("callproof.gateway")

_FORWARD: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "callproof_gateway_fault", default=None
)


class FaultForwardingClient:
    """Wraps the client: the call's forwarded fault names go to its first attempts."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        # the router reads the client's clock and admission gate
        return getattr(self.client, name)

    def stream(self, target: Target, conversation: Conversation, **kwargs: Any) -> Any:
        pending = _FORWARD.get()
        if pending:
            fault = pending.pop(0)
            headers = {**target.endpoint.headers, FAULT_HEADER: fault}
            target = replace(target, endpoint=replace(target.endpoint, headers=headers))
        return self.client.stream(target, conversation, **kwargs)


class ToolIdMap:
    """Tool-call ids made valid for a front, and mapped back when the client returns them.

    An upstream id the front's API accepts is kept as it is; any other gets a stable rewrite
    (:func:`callproof.transforms.valid_id`) remembered here (bounded, oldest dropped), so the
    tool result the client sends back reaches the upstream under the id it issued.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._back: OrderedDict[str, str] = OrderedDict()

    def outward(self, raw: str, api: str) -> str:
        rule = TOOL_ID_RULES[api]
        new = valid_id(raw, rule)
        if new != raw:
            self._back[new] = raw
            self._back.move_to_end(new)
            while len(self._back) > self.limit:
                self._back.popitem(last=False)
        return new

    def inward(self, conversation: Conversation) -> Conversation:
        """``conversation`` with every rewritten id back to the upstream's original."""
        if not self._back:
            return conversation
        back = self._back
        messages: list[Message] = []
        for msg in conversation.messages:
            if isinstance(msg, AssistantMessage):
                parts: list[AssistantPart] = [
                    replace(p, id=back[p.id]) if isinstance(p, ToolCall) and p.id in back else p
                    for p in msg.content
                ]
                messages.append(replace(msg, content=tuple(parts)))
            else:
                uparts: list[UserPart] = [
                    replace(p, tool_call_id=back[p.tool_call_id])
                    if isinstance(p, ToolResult) and p.tool_call_id in back
                    else p
                    for p in msg.content
                ]
                messages.append(UserMessage(content=tuple(uparts)))
        return replace(conversation, messages=tuple(messages))


@dataclass(frozen=True, slots=True)
class Resolved:
    """What serves a model id: ``label`` is ``route:NAME`` or the target's name."""

    label: str
    router: Router


class Gateway:
    """The routers, the client and the evidence log behind every front."""

    def __init__(
        self, serve: ServeConfig, client: Client, evidence: EvidenceLog | None = None
    ) -> None:
        self.serve = serve
        self.config = serve.config
        self.client = client
        self.upstream = FaultForwardingClient(client)
        self.evidence = evidence
        self.tool_ids = ToolIdMap()
        self.routers: dict[str, Router] = {}
        self.draining = asyncio.Event()
        #: Set when the drain deadline passed: streams still open end with an in-band error.
        self.drain_expired = asyncio.Event()
        self.active = 0
        #: Shared state, metrics, traces, measured order (callproof.telemetry.gateway).
        self.scale: Any = None

    def router(self, kind: str, name: str) -> Router:
        """The one router of ``route:NAME`` or ``target:NAME`` (made on first use)."""
        key = f"{kind}:{name}"
        found = self.routers.get(key)
        if found is None:
            if kind == "route":
                found = router_from_config(self.config, name, self.upstream)
            else:
                found = Router(name, [self.config.targets[name]], client=self.upstream)
            self.routers[key] = found
            if self.scale is not None:
                self.scale.router_created(found)
        return found

    def resolve(self, model_id: str) -> Resolved | None:
        """The router serving ``model_id``: mapped, else a route or target of that name."""
        mapped = self.serve.serve.models.get(model_id)
        if mapped is not None:
            kind, name = mapped
        elif model_id in self.config.routes:
            kind, name = "route", model_id
        elif model_id in self.config.targets:
            kind, name = "target", model_id
        else:
            return None
        label = f"route:{name}" if kind == "route" else name
        return Resolved(label=label, router=self.router(kind, name))

    def model_ids(self) -> list[str]:
        """Every id a client may send (mapped ids, then route and target names)."""
        ids = list(self.serve.serve.models)
        ids += [n for n in self.config.routes if n not in ids]
        ids += [n for n in self.config.targets if n not in ids]
        return ids

    def call(
        self,
        resolved: Resolved,
        conversation: Conversation,
        *,
        front: str,
        requested: str,
        buffered: bool,
        faults: str | None = None,
    ) -> GatewayCall:
        """A call of ``conversation`` through ``resolved`` (see :class:`GatewayCall`)."""
        return GatewayCall(
            self,
            resolved,
            self.tool_ids.inward(conversation),
            front=front,
            requested=requested,
            buffered=buffered or resolved.router.policy.buffered,
            faults=[f.strip() for f in faults.split(",") if f.strip()] if faults else [],
        )

    def drain(self, drain_s: float) -> asyncio.Task[None]:
        """Stop taking calls; after ``drain_s`` end the streams still open (in-band)."""
        self.draining.set()

        async def expire() -> None:
            deadline = time.monotonic() + drain_s
            while self.active and time.monotonic() < deadline:  # noqa: ASYNC110 - a count
                await asyncio.sleep(0.05)
            self.drain_expired.set()

        return asyncio.get_running_loop().create_task(expire())


class GatewayCall:
    """One call through the gateway; see the module docstring."""

    def __init__(
        self,
        gateway: Gateway,
        resolved: Resolved,
        conversation: Conversation,
        *,
        front: str,
        requested: str,
        buffered: bool,
        faults: list[str],
    ) -> None:
        self.gateway = gateway
        self.resolved = resolved
        self.conversation = conversation
        self.front = front
        self.requested = requested
        self.buffered = buffered
        self.started = time.monotonic()
        self.started_at = time.time()
        self._faults = faults
        self._stream: RouteStream | None = None
        self._first: Event | None = None
        self._done = False
        self._active = False
        self._recorded = False
        #: True once the call passed its commit point (headers can go out).
        self.committed = False
        self.error: CallError | None = None
        #: Seconds from the call's start to its first event ready for the caller.
        self.first_chunk_s: float | None = None

    # -- what the fronts need ---------------------------------------------------------------

    @property
    def winner(self) -> Target | None:
        s = self._stream
        return s.winner.target if s is not None and s.winner is not None else None

    @property
    def served_by(self) -> str | None:
        target = self.winner
        return target.name if target is not None else None

    @property
    def model(self) -> str:
        """The serving target's model (the requested id until one served)."""
        target = self.winner
        return target.model if target is not None else self.requested

    @property
    def attempts(self) -> int:
        """HTTP requests the call has sent upstream so far."""
        return self._stream.requests if self._stream is not None else 0

    @property
    def route_attempts(self) -> list[dict[str, Any]]:
        """The route's records of the call's attempts so far."""
        return self._stream.attempts if self._stream is not None else []

    @property
    def response(self) -> Response | None:
        return self._stream.response if self._stream is not None else None

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def headers(self) -> dict[str, str]:
        """``x-callproof-served-by``, ``x-callproof-attempts`` and, when known,
        ``x-callproof-raw-stop-reason``."""
        out = {"x-callproof-attempts": str(self.attempts)}
        if self.served_by is not None:
            out["x-callproof-served-by"] = self.served_by
        response = self.response
        if response is not None and response.raw_stop_reason is not None:
            out["x-callproof-raw-stop-reason"] = response.raw_stop_reason
        return out

    def more_ready(self) -> bool:
        """Whether the next event is already decoded (so a front can write several events
        in one send instead of one system call each)."""
        s = self._stream
        run = s.winner if s is not None else None
        return run is not None and not run.events.empty()

    def tool_id(self, raw: str, api: str) -> str:
        return self.gateway.tool_ids.outward(raw, api)

    # -- running ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Run until the commit point; raises AllAttemptsFailed or the provider's own
        CallError (a refusal that does not fall over) when nothing was committed."""
        self._active = True
        self.gateway.active += 1
        if self.gateway.scale is not None:
            self.gateway.scale.call_started(self)
        token = _FORWARD.set(list(self._faults))
        try:
            router = self.resolved.router
            self._stream = router.stream(self.conversation, buffered=self.buffered)
            try:
                self._first = await self._stream.__anext__()
            except StopAsyncIteration:
                self._done = True
            self.committed = True
            self.first_chunk_s = time.monotonic() - self.started
        except (AllAttemptsFailed, CallError) as failed:
            # nothing was committed: a route that ran out of attempts, or a refusal (context
            # length, content filter, validation, auth) that does not fall over
            self.record(failed)
            self.close_sync()
            raise
        except BaseException:
            self.close_sync()
            raise
        finally:
            _FORWARD.reset(token)

    async def events(self) -> AsyncIterator[Event]:
        """The committed events; raises CallError when the stream fails after commit."""
        assert self._stream is not None
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        if self._done:
            return
        stream = self._stream
        draining = self.gateway.draining
        expired = self.gateway.drain_expired
        while True:
            if not draining.is_set():  # the hot path: no task per event
                try:
                    event = await stream.__anext__()
                except StopAsyncIteration:
                    return
                yield event
                continue
            # draining: every wait races the drain deadline
            step = asyncio.ensure_future(stream.__anext__())
            if not expired.is_set():
                stopper = asyncio.ensure_future(expired.wait())
                await asyncio.wait({step, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
            if not step.done():
                step.cancel()
                await asyncio.wait({step})  # the route's generator has stopped running
                raise CallError("the gateway is shutting down; the drain deadline passed")
            try:
                event = step.result()
            except StopAsyncIteration:
                return
            yield event

    async def aclose(self, error: BaseException | None = None) -> None:
        """End the call (stopping any attempt still running) and record it."""
        try:
            if self._stream is not None:
                await self._stream.aclose()
        except Exception:  # a route cut short (drain deadline) may not close cleanly
            log.debug("closing the call to %s", self.requested, exc_info=True)
        finally:
            self.record(error)
            self.close_sync()

    def close_sync(self) -> None:
        """Count the call out of the gateway's active calls (once)."""
        if self._active:
            self._active = False
            self.gateway.active -= 1
            if self.gateway.scale is not None:
                self.gateway.scale.call_ended(self)

    def record(self, error: BaseException | None) -> None:
        """Append the call to the evidence log (once)."""
        if self._recorded:
            return
        self._recorded = True
        if isinstance(error, CallError):
            self.error = error
        log = self.gateway.evidence
        if log is not None:
            log.append(self, error)
        if self.gateway.scale is not None:
            self.gateway.scale.call_recorded(self, error)


async def stream_wire(
    call: GatewayCall,
    encode: Callable[[Event], bytes],
    in_band: Callable[[CallError], bytes],
) -> AsyncIterator[bytes]:
    """A committed stream's bytes, for every front: each event through ``encode``, sent in one
    write per batch that is ready; a failure after the commit point becomes ``in_band(err)``
    (an exception frame, an SSE error chunk), never a clean end. A client that went away stops
    the upstream."""
    error: BaseException | None = None
    pending: list[bytes] = []
    try:
        async for event in call.events():
            data = encode(event)
            if data:
                pending.append(data)
            if pending and not call.more_ready():  # one send for what is ready
                yield b"".join(pending)
                pending.clear()
        if pending:
            yield b"".join(pending)
    except CallError as err:
        if pending:
            yield b"".join(pending)
        error = err
        log.info("call to %s failed after commit: %s", call.requested, err.outcome)
        yield in_band(err)
    except BaseException as exc:  # the client went away (cancelled): stop the upstream
        error = exc
        raise
    finally:
        await call.aclose(error)
