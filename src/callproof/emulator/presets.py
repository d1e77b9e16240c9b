"""Presets: the models an emulator serves and their fault rules.

* ``seed`` (the default) reproduces the seed's finding. Bedrock ``moonshotai.kimi-k2.5`` hangs
  with no events (``hang_no_events``) on 40% of the requests that follow a tool result and never
  on a first turn; Bedrock ``mistral.mistral-large-3-675b-instruct`` and ``amazon.nova-pro-v1:0``
  are healthy; OpenAI-compatible ``moonshotai/kimi-k2.5`` (OpenRouter flavour) is healthy. First
  events come after about 0.1-0.4 s.
* ``healthy``: the same models, no faults.
* ``fast``: the same models, no faults and no latency (tests, benchmarks).

A preset takes options after a colon: ``seed:reject_reasoning_replay`` makes the seed's Bedrock
Kimi answer a replayed ``reasoningContent`` block with a ValidationException (the seeds' third
suspect, so ``thinking-replay`` tests it), ``seed:reject_reasoning_replay=hang`` with a hang
before headers. Every preset takes it (the Kimi entries are shared).

Public API: :data:`PRESETS`, :func:`get_preset(name) <get_preset>` -> :class:`Preset` ``(name,
models, rules)``, and :func:`profile_from_mapping` (a ``[[models]]`` table of a fault plan ->
:class:`~callproof.emulator.models.ModelProfile`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from callproof.emulator.faults import Fault, FaultEntry, FaultRule
from callproof.emulator.models import INSTANT, Latency, ModelProfile
from callproof.errors import ConfigError

__all__ = ["PRESETS", "PRESET_OPTIONS", "Preset", "get_preset", "profile_from_mapping"]

SEED_LATENCY = Latency(first_event_s=0.25, tokens_per_s=400.0, jitter=0.15)


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    models: tuple[ModelProfile, ...]
    rules: tuple[FaultRule, ...] = ()


def _seed_models(latency: Latency) -> tuple[ModelProfile, ...]:
    return (
        ModelProfile(
            "moonshotai.kimi-k2.5",
            flavour="bedrock",
            thinking=True,
            kimi_tool_ids=True,
            empty_text_blocks=True,
            latency=latency,
        ),
        ModelProfile("mistral.mistral-large-3-675b-instruct", flavour="bedrock", latency=latency),
        ModelProfile("amazon.nova-pro-v1:0", flavour="bedrock", latency=latency),
        ModelProfile(
            "moonshotai/kimi-k2.5",
            flavour="openrouter",
            thinking=True,
            latency=latency,
            provider="Moonshot AI",
        ),
    )


SEED_RULES = (
    FaultRule(
        model="moonshotai.kimi-k2.5",
        api="bedrock",
        turn="after_tool_result",
        entries=(FaultEntry(Fault("hang_no_events"), 0.4),),
    ),
)


def _seed() -> Preset:
    return Preset("seed", _seed_models(SEED_LATENCY), SEED_RULES)


def _healthy() -> Preset:
    return Preset("healthy", _seed_models(SEED_LATENCY))


def _fast() -> Preset:
    return Preset("fast", _seed_models(INSTANT))


PRESETS: dict[str, Callable[[], Preset]] = {"seed": _seed, "healthy": _healthy, "fast": _fast}


#: Preset options (``NAME:OPTION[=VALUE]``) and the values each takes (the first is the default).
PRESET_OPTIONS: dict[str, tuple[str, ...]] = {"reject_reasoning_replay": ("error", "hang")}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (with options, e.g. ``seed:reject_reasoning_replay``);
    ``ConfigError`` listing the known ones otherwise."""
    base, _, options = name.partition(":")
    try:
        preset = PRESETS[base]()
    except KeyError:
        raise ConfigError(
            f"unknown preset {base!r}; known presets: {', '.join(PRESETS)}", where="--preset"
        ) from None
    for option in filter(None, (o.strip() for o in options.split(","))):
        key, _, value = option.partition("=")
        choices = PRESET_OPTIONS.get(key)
        if choices is None:
            raise ConfigError(
                f"unknown preset option {key!r}; known options: {', '.join(PRESET_OPTIONS)}",
                where="--preset",
            )
        value = value or choices[0]
        if value not in choices:
            raise ConfigError(
                f"preset option {key} takes {' or '.join(choices)}, got {value!r}",
                where="--preset",
            )
        # the Bedrock Kimi entry only: a non-Anthropic model on Bedrock, the seed's case
        models = tuple(
            replace(m, rejects_reasoning_replay=value) if m.id == "moonshotai.kimi-k2.5" else m
            for m in preset.models
        )
        preset = Preset(name, models, preset.rules)
    return preset


_MODEL_KEYS = {
    "id",
    "flavour",
    "thinking",
    "quirks",
    "first_event_s",
    "tokens_per_s",
    "jitter",
    "provider",
}
_QUIRKS = ("kimi_tool_ids", "empty_text_blocks", "inline_think", "rejects_reasoning_replay")


def profile_from_mapping(raw: dict[str, Any], *, where: str) -> ModelProfile:
    """A ``[[models]]`` table -> a profile (``id`` may be a glob such as ``"*"``)."""
    unknown = set(raw) - _MODEL_KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(unknown))}", where=where)
    model_id = raw.get("id")
    if not isinstance(model_id, str) or not model_id:
        raise ConfigError("id must be a non-empty string", where=f"{where}.id")
    flavour = raw.get("flavour", "bedrock")
    if flavour not in ("bedrock", "openai", "openrouter"):
        raise ConfigError(
            f"flavour must be bedrock, openai or openrouter, got {flavour!r}",
            where=f"{where}.flavour",
        )
    quirks = raw.get("quirks", [])
    if not isinstance(quirks, list) or any(q not in _QUIRKS for q in quirks):
        raise ConfigError(f"quirks must be a list of {', '.join(_QUIRKS)}", where=f"{where}.quirks")
    thinking = raw.get("thinking", False)
    if not isinstance(thinking, bool):
        raise ConfigError("thinking must be true or false", where=f"{where}.thinking")
    numbers: dict[str, float] = {}
    for key, default in (
        ("first_event_s", SEED_LATENCY.first_event_s),
        ("tokens_per_s", SEED_LATENCY.tokens_per_s),
        ("jitter", SEED_LATENCY.jitter),
    ):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e6:
            raise ConfigError(f"{key} must be a non-negative number", where=f"{where}.{key}")
        numbers[key] = float(value)
    provider = raw.get("provider")
    if provider is not None and not isinstance(provider, str):
        raise ConfigError("provider must be a string", where=f"{where}.provider")
    return ModelProfile(
        model_id,
        flavour=flavour,
        thinking=thinking,
        kimi_tool_ids="kimi_tool_ids" in quirks,
        empty_text_blocks="empty_text_blocks" in quirks,
        inline_think="inline_think" in quirks,
        rejects_reasoning_replay="error" if "rejects_reasoning_replay" in quirks else None,
        latency=Latency(**numbers),
        provider=provider,
    )
