"""The pytest plugin: test your own agent against a bad provider.

Installed with the package and auto-loaded through the ``pytest11`` entry point ``callproof``
(``-p no:callproof`` turns it off). See ``docs/testing.md``.

* :mod:`.plugin` - the hooks, options and fixtures (``callproof_emulator``, ``callproof_env``).
* :mod:`.emulator` - :class:`~callproof.testkit.emulator.CallproofEmulator`, the handle a test
  gets, and the session's pool of servers (one per preset).
* :mod:`.repeat` - the ``callproof_repeat(n, min_pass_rate, gate="point")`` marker.
* :mod:`.env` - the environment variables that point unmodified SDKs at an emulator (shared
  with ``callproof emulate --env-file``); importing it does not import pytest.
"""

from __future__ import annotations

__all__: list[str] = []
