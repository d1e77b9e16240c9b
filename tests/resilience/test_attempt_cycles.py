"""A finished attempt is freed by reference counting, not left for a full collection.

Under load every attempt outlives a few young collections, so an attempt kept alive by a
reference cycle (its error's traceback, its cancelled task) lands in the oldest generation;
at 1,000 concurrent routed calls the full collections that freed them paused the event loop for
60-200 ms each. These tests run with the collector off: an attempt that is still alive once its
last outside reference is dropped is held by a cycle.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from callproof.conversation import Conversation
from callproof.errors import StallNoEvents
from callproof.resilience.hedge import AttemptRun, cancel_runs
from callproof.targets import Target, Timeouts

from .fakes import target


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Client:
    """``stream()`` fails with a watchdog error, or hangs until cancelled."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    @asynccontextmanager
    async def _stream(self) -> AsyncIterator[Any]:
        if self.mode == "fail":
            raise StallNoEvents("no event within 1 s", elapsed_s=1.0, limit_s=1.0)
        await asyncio.Event().wait()  # until cancelled
        yield None

    def stream(
        self, target: Target, conversation: Conversation, *, timeouts: Timeouts | None = None
    ) -> Any:
        return self._stream()


def _run(number: int = 1) -> AttemptRun:
    t = target("a")
    return AttemptRun(
        number=number,
        target=t,
        timeouts=t.timeouts,
        hedge=False,
        started=0.0,
        breaker_state="closed",
    )


def _signals(run: AttemptRun, signal: str) -> None:
    pass


def _task_of(run: AttemptRun) -> object:
    return run.task


async def test_a_failed_attempt_is_freed_by_refcount_and_keeps_its_traceback(
    no_gc: None,
) -> None:
    run = _run()
    run.start(_Client("fail"), Conversation(messages=()), _signals)
    assert run.task is not None
    await asyncio.wait([run.task])
    await asyncio.sleep(0)  # the done callback runs
    assert _task_of(run) is None
    err = run.error
    assert isinstance(err, StallNoEvents)
    assert err.__traceback__ is not None  # where it was raised is still known
    ref = weakref.ref(run)
    del run
    assert ref() is None
    assert err.target == "a"


async def test_a_cancelled_attempt_is_freed_by_refcount(no_gc: None) -> None:
    run = _run()
    run.start(_Client("hang"), Conversation(messages=()), _signals)
    await asyncio.sleep(0.01)
    await cancel_runs([run])
    await asyncio.sleep(0)
    ref = weakref.ref(run)
    del run
    assert ref() is None


async def test_without_breaking_the_cycle_the_attempt_outlives_its_references(
    no_gc: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above can fail: with the cycle left in place the attempt stays alive."""
    monkeypatch.setattr(AttemptRun, "_finished", lambda self, task: None)
    run = _run()
    run.start(_Client("fail"), Conversation(messages=()), _signals)
    assert run.task is not None
    await asyncio.wait([run.task])
    await asyncio.sleep(0)
    ref = weakref.ref(run)
    del run
    assert ref() is not None
    gc.collect()
    assert ref() is None
