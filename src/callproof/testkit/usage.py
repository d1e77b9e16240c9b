"""Usage errors of the test kit, kept light: the plugin checks options and markers with this
module without importing the emulator (pytest imports plugins in every run)."""

from __future__ import annotations

from callproof.errors import ConfigError

__all__ = ["CallproofUsageError", "check_preset"]


class CallproofUsageError(ConfigError, ValueError):
    """The test kit was used wrongly (a bad fault, rate, count, filter, marker or preset).

    ``pytest.UsageError`` is final, so this is callproof's ``ConfigError``; the plugin turns it
    into a ``pytest.UsageError`` at collection and into a one-line failure inside a test."""


def check_preset(preset: object, where: str) -> str:
    """``preset`` when it names a preset; :class:`CallproofUsageError` otherwise."""
    from callproof.emulator.presets import PRESETS

    if not isinstance(preset, str) or preset not in PRESETS:
        known = ", ".join(PRESETS)
        raise CallproofUsageError(
            f"unknown emulator preset {preset!r}; known: {known}", where=where
        )
    return preset
