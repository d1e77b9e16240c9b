"""Playing a planned answer's steps on the fast fronts: the semantics both share.

An :class:`~callproof.emulator.plans.Answer` is a status, headers and steps
(:mod:`~callproof.emulator.streaming`: Headers, Send with its delay, Sleep, Hang, Trickle, Cut,
Reset). :class:`StepPlayer` walks them with loop timers only (no task, no task group): a
send's delay and a sleep are ``loop.call_later``, a trickle sends timed pieces, a hang parks
the player in its front's set until the client goes or the server stops (then, if no
headers went out yet, the answer becomes an empty 503), consecutive zero-delay sends leave
together, and an answer with nothing to wait for goes out at once. The HTTP/1.1 front
(:mod:`~callproof.emulator.fastfront`) and the h2c front
(:mod:`~callproof.emulator.h2stream`) subclass it and say only how bytes leave: the head,
a body piece, the last piece with the end, a cut or reset, and the flush after a turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from callproof.emulator.plans import Answer
from callproof.emulator.streaming import Cut, Hang, Headers, Reset, Send, Sleep, Step, Trickle

__all__ = ["StepPlayer"]


class StepPlayer:
    """Plays one answer's steps; see the module docstring. Subclasses implement the hooks
    below the ``-- transport --`` line."""

    __slots__ = (
        "answer",
        "begun",
        "current",
        "pending",
        "rate",
        "started",
        "steps",
        "stopped",
        "timer",
        "trickle",
    )

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.steps: Iterator[Step] = iter(answer.steps)
        #: the step being played (examined again after a flush or a trickle), None = the next
        self.current: Step | None = None
        self.begun = False
        self.started = False
        self.stopped = False
        self.pending: list[bytes] = []
        self.rate = 0
        self.timer: asyncio.TimerHandle | None = None
        self.trickle: tuple[bytes, int] | None = None

    # -- transport ------------------------------------------------------------------------------

    def _send_head(self) -> None:
        """Send the status and headers (called once)."""
        raise NotImplementedError

    def _data(self, data: bytes) -> None:
        """Send one piece of the body."""
        raise NotImplementedError

    def _last(self, data: bytes) -> None:
        """Send the last piece (maybe empty) and the end of the body."""
        raise NotImplementedError

    def _instant(self, body: bytes) -> None:
        """Nothing waits: send the head, the whole body and its end at once."""
        self._start()
        self._last(body)

    def _break(self, step: Cut | Reset) -> None:
        """End the answer mid-body: a cut or a reset (the answer is closed first)."""
        raise NotImplementedError

    def _flush_out(self) -> None:
        """Send what a turn of play wrote (after a timer's turn or a trickle's piece)."""
        raise NotImplementedError

    def _after_turn(self, ended: bool) -> None:
        """A timer's turn of play is over (``ended``: the answer ended in it)."""
        raise NotImplementedError

    def _hung(self) -> set[StepPlayer]:
        """The front's set of hung players (the server's stop ends them)."""
        raise NotImplementedError

    def _closing(self) -> bool:
        """Whether the server is stopping (a hang then ends at once)."""
        raise NotImplementedError

    def _empty_503(self) -> None:
        """A hang ended by the server's stop before any header: answer an empty 503."""
        raise NotImplementedError

    # -- play -----------------------------------------------------------------------------------

    def _start(self) -> None:
        if not self.started:
            self.started = True
            self._send_head()

    def run(self) -> bool:
        """Play on from the current step; True when the answer ended now."""
        if self.stopped:
            return False
        if not self.begun:
            self.begun = True
            body = self.answer.body
            if body is not None:
                self._instant(body)
                self._close()
                return True
        return self._play()

    def _play(self) -> bool:  # noqa: C901, PLR0912 - one branch per step kind
        loop = asyncio.get_running_loop()
        while True:
            if self.stopped:
                return False  # the stream ended under the answer
            step = self.current
            if step is None:
                step = self.current = next(self.steps, None)
                if step is None:
                    break
            if isinstance(step, Send):
                if step.delay > 0 and not self.pending:
                    self._start()
                    self.current = None
                    self.timer = loop.call_later(step.delay, self._after_delay, step.data)
                    return False
                if step.delay > 0:
                    if not self._flush():
                        return False
                    continue
                self.pending.append(step.data)
                self.current = None
                continue
            if not self._flush():
                return False  # trickling: this step comes after the last piece
            self.current = None
            if isinstance(step, Cut | Reset):
                self._break(step)
                return False
            if isinstance(step, Trickle):
                self.rate = step.bytes_per_s
            elif isinstance(step, Headers):
                self._start()
            elif isinstance(step, Sleep):
                if step.seconds > 0:
                    self.timer = loop.call_later(step.seconds, self._resume)
                    return False
            elif isinstance(step, Hang):
                if not self._closing():
                    self._hung().add(self)
                    return False
                if not self._hang_ended():
                    break
        if self.rate and not self._flush():
            return False  # the last sends trickle out first
        # the last sends (none after a trickle) and the end of the body together
        self._start()
        data = b"".join(self.pending)
        self.pending.clear()
        self._last(data)
        self._close()
        return True

    def _after_delay(self, data: bytes) -> None:
        self.timer = None
        self.pending.append(data)
        self._resume()

    def _resume(self) -> None:
        self.timer = None
        self._after_turn(self.run())

    def _hang_ended(self) -> bool:
        """After a hang: False (stop playing) when headers were never sent (an empty 503)."""
        if self.started:
            return True
        self._empty_503()
        return False

    def end_hang(self) -> None:
        """The server stops: a hung answer ends (or becomes an empty 503)."""
        self._hung().discard(self)
        if self.stopped:
            return
        if not self._hang_ended():
            self.steps, self.current = iter(()), None
        self._resume()

    def _flush(self) -> bool:
        """Send what is pending; False when it goes out as a trickle (play resumes after)."""
        if not self.pending:
            return True
        self._start()
        data = b"".join(self.pending)
        self.pending.clear()
        if not self.rate:
            self._data(data)
            return True
        self.trickle = (data, 0)
        self._piece()
        return False

    def _piece(self) -> None:
        assert self.trickle is not None
        data, offset = self.trickle
        piece = data[offset : offset + max(1, self.rate // 10)]
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(len(piece) / self.rate, self._send_piece, piece)

    def _send_piece(self, piece: bytes) -> None:
        self.timer = None
        assert self.trickle is not None
        data, offset = self.trickle
        self._data(piece)
        self._flush_out()
        offset += len(piece)
        if offset < len(data):
            self.trickle = (data, offset)
            self._piece()
            return
        self.trickle = None
        self._resume()

    def _close(self) -> None:
        """The answer is over (its slot released once)."""
        self.stopped = True
        self.answer.release()

    def stop(self) -> None:
        """The client or the stream went away: timers off, slot released."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._hung().discard(self)
        self._close()
