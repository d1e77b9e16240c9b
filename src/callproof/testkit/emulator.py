"""The emulator a test gets: :class:`CallproofEmulator`, and the session's :class:`EmulatorPool`.

One :class:`~callproof.emulator.server.EmulatorServer` (a real socket on a free loopback port)
serves the whole pytest session (each xdist worker has its own); a test asking for another
preset gets a second server, cached for the rest of the session. Each server has one
:class:`~callproof.emulator.schedule.FaultSchedule`; the fixture resets it when a test starts
and when it ends, so each test's schedules and request log are its own. Tests in one process
run one at a time, so this is safe; threads of *one* test share its schedule.

Bad input to :meth:`CallproofEmulator.schedule` and :meth:`CallproofEmulator.fault_rate`
raises :class:`~callproof.testkit.usage.CallproofUsageError`, which the plugin reports as one
line (no traceback).
"""

from __future__ import annotations

from typing import Any

from callproof.emulator.schedule import FaultSchedule, InvalidSchedule
from callproof.emulator.server import EmulatorServer
from callproof.testkit.env import emulator_env
from callproof.testkit.usage import CallproofUsageError

__all__ = ["CallproofEmulator", "EmulatorPool"]


class CallproofEmulator:
    """A test's view of the emulator: URLs, its fault schedule and its request log."""

    def __init__(
        self, server: EmulatorServer, schedule: FaultSchedule, preset: str, seed_base: str
    ) -> None:
        self.server = server
        self.preset = preset
        self._schedule = schedule
        self._seed_base = seed_base
        self._rates = 0

    @property
    def url(self) -> str:
        """The Bedrock ``endpoint_url`` (``http://127.0.0.1:PORT``)."""
        return self.server.url

    @property
    def openai_url(self) -> str:
        """The OpenAI ``base_url``: ``url + "/v1"``."""
        return self.server.url + "/v1"

    @property
    def env(self) -> dict[str, str]:
        """The variables ``callproof_env`` sets (see :mod:`callproof.testkit.env`)."""
        return emulator_env(self.url)

    def schedule(
        self,
        fault: str,
        *,
        times: int = 1,
        model: str | None = None,
        api: str | None = None,
        turn: str | None = None,
    ) -> None:
        """The next ``times`` matching requests get ``fault``; then it is healthy again.

        ``model`` is an id or a glob, ``api`` an API name (``bedrock-converse-stream``,
        ``bedrock-converse``, ``openai-completions``, ``openai-responses``) or family
        (``bedrock``, ``openai``), ``turn`` is ``"first"`` or ``"tool_result"``. Schedules fire
        in the order they were added, so ``schedule("http_error:429", times=2)`` then
        ``schedule("hang_no_events")`` gives two throttles, one hang, then healthy answers.
        """
        try:
            self._schedule.add(fault, times=times, model=model, api=api, turn=turn)
        except InvalidSchedule as exc:
            raise CallproofUsageError(f"schedule(): {exc}") from None

    def fault_rate(
        self,
        fault: str,
        rate: float,
        *,
        model: str | None = None,
        api: str | None = None,
        turn: str | None = None,
        seed: int | str | None = None,
    ) -> None:
        """Each matching request gets ``fault`` with probability ``rate``, from a seeded RNG.

        The stream is fixed by ``seed`` (default: the test's id) and, in a repeated test, the
        repetition's number, so a run is reproducible and repetitions differ.
        """
        self._rates += 1
        base = self._seed_base if seed is None else f"seed={seed!r}"
        try:
            self._schedule.add_rate(
                fault,
                rate,
                model=model,
                api=api,
                turn=turn,
                seed=f"{base}:{self._rates}" if seed is None else self._mix(seed),
            )
        except InvalidSchedule as exc:
            raise CallproofUsageError(f"fault_rate(): {exc}") from None

    def _mix(self, seed: object) -> str | int:
        if isinstance(seed, bool) or not isinstance(seed, int | str):
            return seed  # type: ignore[return-value]  # add_rate names the bad type
        repetition = self._seed_base.rpartition(":")[2]
        return seed if repetition == "0" else f"{seed}:{repetition}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """One dict per model request served in this test: ``model``, ``api``, ``turn``
        (``"first"``/``"tool_result"``), ``fault`` (name or None), ``status``, ``path``,
        ``scheduled`` (True when the fault came from this test's schedule)."""
        return [record.as_dict() for record in self._schedule.requests]

    def reset(self) -> None:
        """Forget this test's schedules and request log (the fixture does it at start and end)."""
        self._schedule.reset()

    def __repr__(self) -> str:
        return f"<CallproofEmulator {self.url} preset={self.preset}>"


class EmulatorPool:
    """The session's emulator servers, one per preset, started on first use."""

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed
        self.started = 0
        self._servers: dict[str, tuple[EmulatorServer, FaultSchedule]] = {}

    def get(self, preset: str) -> tuple[EmulatorServer, FaultSchedule]:
        """The server for ``preset`` (started now if this is its first use) and its schedule."""
        found = self._servers.get(preset)
        if found is None:
            from callproof.emulator.app import create_app

            schedule = FaultSchedule()
            app = create_app(preset=preset, seed=self.seed, schedule=schedule)
            server = EmulatorServer(app=app).start()
            self.started += 1
            found = self._servers[preset] = (server, schedule)
        return found

    @property
    def servers(self) -> dict[str, EmulatorServer]:
        return {preset: server for preset, (server, _) in self._servers.items()}

    def close(self) -> None:
        """Stop every server (hung streams end at once)."""
        for server, _ in self._servers.values():
            server.stop()
        self._servers.clear()
