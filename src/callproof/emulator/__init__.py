"""The emulator: a local Bedrock Runtime and OpenAI-compatible server with seeded faults.

* :func:`create_app` - the ASGI app (for ``httpx.ASGITransport`` or any ASGI server).
* :class:`EmulatorServer` - the real server (hypercorn: HTTP/1.1 and HTTP/2) on a background
  thread (``with EmulatorServer() as server: server.url``).

Shared internals: :mod:`.models` (scripted models), :mod:`.faults` (faults and plans),
:mod:`.presets`, :mod:`.state`, :mod:`.streaming`. See ``docs/emulator.md`` and ``docs/faults.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["EmulatorServer", "create_app"]

if TYPE_CHECKING:
    from callproof.emulator.app import create_app
    from callproof.emulator.server import EmulatorServer


def __getattr__(name: str) -> Any:
    # lazy, so importing the shared modules does not pull in hypercorn and Starlette routing
    if name == "create_app":
        from callproof.emulator.app import create_app

        return create_app
    if name == "EmulatorServer":
        from callproof.emulator.server import EmulatorServer

        return EmulatorServer
    raise AttributeError(name)
