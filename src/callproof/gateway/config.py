"""``[serve]`` of ``callproof.toml``: what ``callproof serve`` exposes and how.

::

    [serve]
    auth = "none"                       # loopback binds only; else:
    # auth = { kind = "keys", env = "CALLPROOF_SERVE_KEYS" }
    evidence = "callproof-runs/serve"   # a run directory (default: <data dir>/serve/<stamp>)
    drain_s = 10                        # SIGTERM: seconds in-flight streams may still run
    state = "redis://127.0.0.1:6379/0"  # replicas share breakers, latencies, cooldowns
                                        # (default: in-process; see docs/scale.md)

    [serve.models]                      # the model id a client sends -> a route or a target
    "moonshotai.kimi-k2.5" = "route:kimi"
    "gpt-4o" = "target:openai-gpt-4o"

An id that is not mapped but names a route or a target of the file is served by it; any other
id gets the front's own not-found error. The rest of the file (providers, targets, routes,
``[emulator]``) is read by :func:`callproof.probe.config.load_config`, so one file serves the
probe and the gateway. Every error is a :class:`~callproof.errors.ConfigError` naming the file,
the line and the key (exit code 2).
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from callproof.errors import ConfigError
from callproof.probe.config import (
    CONFIG_NAME,
    DEFAULT_TOML,
    Config,
    _Source,
    _TomlLocator,
    load_config,
    parse_config,
)
from callproof.state import state_from_url

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_PORT",
    "KEYS_ENV",
    "AuthSettings",
    "ServeConfig",
    "ServeSettings",
    "check_bind",
    "is_loopback",
    "load_serve_config",
    "parse_serve_config",
]

DEFAULT_PORT = 4020
#: The environment variable client keys are read from by default.
KEYS_ENV = "CALLPROOF_SERVE_KEYS"
#: The embedded default's mapping: the seeds' Kimi ids, on both fronts, to route ``kimi``.
DEFAULT_MODELS: dict[str, str] = {
    "moonshotai.kimi-k2.5": "route:kimi",
    "moonshotai/kimi-k2.5": "route:kimi",
}


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """``kind = "none"`` (loopback only) or ``"keys"`` read from the variable ``env``."""

    kind: Literal["none", "keys"] = "none"
    env: str = KEYS_ENV


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """The validated ``[serve]`` table."""

    auth: AuthSettings = field(default_factory=AuthSettings)
    #: model id -> ``("route" | "target", NAME)``
    models: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: The evidence run directory; ``None``: the default location; ``False``: off.
    evidence: Path | Literal[False] | None = None
    drain_s: float = 10.0
    #: ``redis://HOST:PORT/DB`` to share router state across replicas; ``None``: in-process.
    state: str | None = None


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """A loaded configuration for the gateway: the probe's :class:`Config` and ``[serve]``."""

    config: Config
    serve: ServeSettings
    #: Where messages point (the file name, or ``<embedded default>``).
    name: str = "<embedded default>"


_STRICT = ConfigDict(extra="forbid")


class _KeysModel(BaseModel):
    model_config = _STRICT
    kind: Literal["keys", "none"]
    env: str = Field(default=KEYS_ENV, min_length=1)


class _ServeModel(BaseModel):
    model_config = _STRICT
    auth: Literal["none"] | _KeysModel = "none"
    models: dict[str, str] = Field(default_factory=dict)
    evidence: str | bool | None = None
    drain_s: float = Field(default=10.0, ge=0)
    state: str | None = None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_serve_config(path: Path | None = None) -> ServeConfig:
    """Load ``path`` (or ``./callproof.toml``, else the embedded default: the seed-preset
    emulator with route ``kimi`` behind both Kimi ids)."""
    if path is None and not (Path.cwd() / CONFIG_NAME).is_file():
        return parse_serve_config(DEFAULT_TOML, name="<embedded default>", embedded=True)
    path = Path(path) if path is not None else Path.cwd() / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}", where="--config")
    config = load_config(path)
    if path.suffix.lower() == ".json":
        return ServeConfig(config=config, serve=ServeSettings(), name=str(path))
    text = path.read_text(encoding="utf-8")
    return _with_serve(config, text, str(path), path.parent, embedded=False)


def parse_serve_config(
    text: str, *, name: str = CONFIG_NAME, base: Path | None = None, embedded: bool = False
) -> ServeConfig:
    """Validate a whole ``callproof.toml`` text for the gateway."""
    config = parse_config(text, name=name)
    return _with_serve(config, text, name, base or Path.cwd(), embedded=embedded)


def _with_serve(config: Config, text: str, name: str, base: Path, *, embedded: bool) -> ServeConfig:
    source = _Source(name, _TomlLocator(text))
    raw: Any = tomllib.loads(text).get("serve", {})
    try:
        model = _ServeModel.model_validate(raw)
    except ValidationError as exc:
        raise source.from_validation(exc, prefix=("serve",)) from None
    models: dict[str, tuple[str, str]] = {}
    mapping = dict(DEFAULT_MODELS) if embedded else {}
    mapping.update(model.models)
    for model_id, value in mapping.items():
        kind, sep, target = value.partition(":")
        where = ("serve", "models", model_id)
        if not sep or kind not in ("route", "target") or not target:
            raise source.error(where, f'expected "route:NAME" or "target:NAME", got {value!r}')
        known = config.routes if kind == "route" else config.targets
        if target not in known:
            names = ", ".join(sorted(known)) or "none"
            raise source.error(where, f"unknown {kind} {target!r} (configured: {names})")
        models[model_id] = (kind, target)
    evidence: Path | Literal[False] | None
    if model.evidence is True or model.evidence is None:
        evidence = None
    elif model.evidence is False or model.evidence == "":
        evidence = False
    else:
        evidence = Path(model.evidence)
        if not evidence.is_absolute():
            evidence = base / evidence
    auth = (
        AuthSettings()
        if isinstance(model.auth, str)
        else AuthSettings(kind=model.auth.kind, env=model.auth.env)
    )
    if model.state is not None:
        try:
            state_from_url(model.state)
        except ConfigError as exc:
            raise source.error(("serve", "state"), exc.message) from None
    settings = ServeSettings(
        auth=auth, models=models, evidence=evidence, drain_s=model.drain_s, state=model.state
    )
    return ServeConfig(config=config, serve=settings, name=name)


def check_bind(serve: ServeConfig, host: str) -> None:
    """``auth = "none"`` is accepted only on a loopback bind (ConfigError otherwise)."""
    if serve.serve.auth.kind == "none" and not is_loopback(host):
        raise ConfigError(
            f'auth = "none" is allowed only on a loopback bind, not {host}; set '
            f'auth = {{ kind = "keys", env = "{KEYS_ENV}" }}',
            where=f"{serve.name}: serve.auth",
        )
