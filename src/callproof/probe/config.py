"""``callproof.toml``: providers, targets, routes, scenarios and defaults.

Read with :func:`load_config`. Pydantic validates at this edge only; the rest of callproof sees
plain :class:`~callproof.targets.Target` objects. Every error is a
:class:`~callproof.errors.ConfigError` that names the file, the line and the dotted key::

    callproof.toml:14: targets.kimi.timeouts.first_event: Input should be a valid number

A provider whose ``endpoint`` is ``"emulator"`` (or omitted) points at the embedded emulator:
its targets carry the placeholder base URL :data:`EMULATOR_URL` until the runner starts the
emulator and calls :meth:`Config.bind_emulator`.

The agent-config JSON of the seeds (``models.providers.NAME.{baseUrl, api, models[]}``) is
read too: each model becomes a target named ``<provider>-<model name>``.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from callproof.dialects import api_family, base_path, get_dialect
from callproof.errors import ConfigError
from callproof.probe.scenarios import ProbeScenario, ScenarioModel, builtins
from callproof.resilience.policy import RouteConfig
from callproof.targets import Api, Auth, Endpoint, Target, Timeouts

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_TOML",
    "EMULATOR_URL",
    "Config",
    "Defaults",
    "EmulatorSettings",
    "RouteConfig",
    "load_config",
    "parse_agent_json",
    "parse_config",
]

#: The file looked for in the working directory.
CONFIG_NAME = "callproof.toml"
#: Placeholder base URL of targets served by the embedded emulator (see ``bind_emulator``).
EMULATOR_URL = "emulator:"

#: The embedded default: the seeds' matrix on the in-process emulator, with clocks that suit it
#: (its healthy first event comes within 0.4 s), so ``callproof run`` takes seconds.
DEFAULT_TOML = """\
[defaults]
n = 10
scenarios = ["tool-result"]
concurrency = 16
timeouts = { connect = 2.0, first_event = 1.5, idle = 1.0, deadline = 10.0 }

[emulator]
preset = "seed"

[providers.bedrock]
api = "bedrock-converse-stream"
endpoint = "emulator"
region = "us-east-1"

[providers.openrouter]
api = "openai-completions"
endpoint = "emulator"

[targets."bedrock-kimi-k2.5"]
provider = "bedrock"
model = "moonshotai.kimi-k2.5"

[targets.bedrock-mistral-large-3]
provider = "bedrock"
model = "mistral.mistral-large-3-675b-instruct"

[targets.bedrock-nova-pro]
provider = "bedrock"
model = "amazon.nova-pro-v1:0"

[targets."openrouter-kimi-k2.5"]
provider = "openrouter"
model = "moonshotai/kimi-k2.5"

[routes.kimi]
targets = ["bedrock-kimi-k2.5", "openrouter-kimi-k2.5"]
"""


# --- the validated result ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmulatorSettings:
    """``[emulator]``: how the embedded emulator is started when a target needs it."""

    preset: str = "seed"
    faults: Path | None = None
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Defaults:
    """``[defaults]``: what ``callproof run`` does without flags."""

    n: int = 10
    concurrency: int = 16
    per_target_concurrency: int | None = None
    #: Attempts started per second over the whole run; ``None`` means no limit.
    rate_limit: float | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: Gate: a pass rate under this fraction makes ``run`` exit 1.
    fail_under: float | None = None
    gate: Literal["point", "lower"] = "point"
    out: str = "callproof-runs"
    #: Targets and routes probed when no ``--target``/``--route`` is given (``None``: all).
    targets: list[str] | None = None
    routes: list[str] | None = None
    scenarios: list[str] = field(default_factory=lambda: ["tool-result"])


@dataclass(frozen=True, slots=True)
class Config:
    """A loaded configuration. ``scenarios`` holds the built-ins and the file's own."""

    targets: dict[str, Target]
    routes: dict[str, RouteConfig]
    scenarios: dict[str, ProbeScenario]
    defaults: Defaults
    emulator: EmulatorSettings = field(default_factory=EmulatorSettings)
    #: The file read, or ``None`` for the embedded default.
    path: Path | None = None
    #: ``[targets.X] compare_with = "Y"``: the target the reports compare X with (else the same
    #: model on another provider, found by model id).
    compare_with: dict[str, str] = field(default_factory=dict)

    @property
    def needs_emulator(self) -> bool:
        """True when some target is served by the embedded emulator."""
        return any(t.endpoint.base_url == EMULATOR_URL for t in self.targets.values())

    def bind_emulator(self, url: str) -> Config:
        """Point emulator targets at a running emulator (each API under its dialect's
        ``base_path``: OpenAI APIs under ``/v1``)."""
        url = url.rstrip("/")
        targets = {
            name: replace(
                t,
                endpoint=replace(t.endpoint, base_url=url + base_path(t.api)),
            )
            if t.endpoint.base_url == EMULATOR_URL
            else t
            for name, t in self.targets.items()
        }
        return replace(self, targets=targets)


# --- TOML models (the edge) --------------------------------------------------------------------

_STRICT = ConfigDict(extra="forbid")


class _AuthModel(BaseModel):
    model_config = _STRICT
    kind: Literal["sigv4", "bedrock-api-key", "bearer", "none"] = "none"
    env: str | None = None
    profile: str | None = None


class _TimeoutsModel(BaseModel):
    model_config = _STRICT
    connect: float | None = Field(default=None, gt=0)
    first_event: float | None = Field(default=None, gt=0)
    idle: float | None = Field(default=None, gt=0)
    deadline: float | None = Field(default=None, gt=0)

    def over(self, base: Timeouts) -> Timeouts:
        return replace(base, **self.model_dump(exclude_unset=True))


class _ProviderModel(BaseModel):
    model_config = _STRICT
    api: Api
    endpoint: str = Field(default="emulator", validation_alias=AliasChoices("endpoint", "base_url"))
    region: str | None = None
    auth: _AuthModel = Field(default_factory=_AuthModel)
    headers: dict[str, str] = Field(default_factory=dict)
    verify: bool | str = True
    #: Label in reports (defaults to the table's name).
    label: str | None = None


class _TargetModel(BaseModel):
    model_config = _STRICT
    provider: str
    model: str
    #: Overrides the provider's API (one provider may serve several).
    api: Api | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    #: Options of the wire dialect (e.g. ``{max_tokens_field = "max_completion_tokens"}``).
    dialect: dict[str, Any] = Field(default_factory=dict)
    timeouts: _TimeoutsModel = Field(default_factory=_TimeoutsModel)
    #: The target the reports compare this one with (the same model elsewhere).
    compare_with: str | None = None


class _RouteModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    targets: list[str] = Field(min_length=1)


class _EmulatorModel(BaseModel):
    model_config = _STRICT
    preset: str = "seed"
    faults: str | None = None
    seed: int | None = None


class _DefaultsModel(BaseModel):
    model_config = _STRICT
    n: int = Field(default=10, ge=1)
    concurrency: int = Field(default=16, ge=1)
    per_target_concurrency: int | None = Field(default=None, ge=1)
    rate_limit: float | None = Field(default=None, gt=0)
    timeouts: _TimeoutsModel = Field(default_factory=_TimeoutsModel)
    fail_under: float | None = Field(default=None, ge=0, le=100)
    gate: Literal["point", "lower"] = "point"
    out: str = "callproof-runs"
    targets: list[str] | None = None
    routes: list[str] | None = None
    scenarios: list[str] = Field(default_factory=lambda: ["tool-result"], min_length=1)


class _FileModel(BaseModel):
    model_config = _STRICT
    defaults: _DefaultsModel = Field(default_factory=_DefaultsModel)
    emulator: _EmulatorModel = Field(default_factory=_EmulatorModel)
    providers: dict[str, _ProviderModel] = Field(default_factory=dict)
    targets: dict[str, _TargetModel] = Field(default_factory=dict)
    routes: dict[str, _RouteModel] = Field(default_factory=dict)
    scenarios: dict[str, ScenarioModel] = Field(default_factory=dict)
    #: ``[serve]``: read and validated by :mod:`callproof.gateway.config`.
    serve: dict[str, Any] = Field(default_factory=dict)


# --- locating keys in the source text ----------------------------------------------------------

_KEY = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?")
_ASSIGN = re.compile(rf"^\s*({_DOTTED})\s*=")
_PART = re.compile(_KEY)


def _split_key(dotted: str) -> tuple[str, ...]:
    return tuple(p.strip("\"'") for p in _PART.findall(dotted))


class _TomlLocator:
    """Maps key paths (as pydantic reports them) to 1-based lines of a TOML text.

    A line scanner, not a parser: it knows table headers, arrays of tables and dotted keys;
    keys inside inline tables or multi-line arrays resolve to the line of the nearest key that
    holds them.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[str | int, ...], int] = {}
        counts: dict[tuple[str | int, ...], int] = {}
        table: tuple[str | int, ...] = ()
        depth = 0  # open brackets of a multi-line value
        for lineno, line in enumerate(text.splitlines(), start=1):
            if depth > 0:
                depth += _bracket_balance(line)
                continue
            if m := _HEADER.match(line):
                path: tuple[str | int, ...] = _split_key(m.group(2))
                if m.group(1) == "[[":
                    index = counts.get(path, 0)
                    counts[path] = index + 1
                    path = (*path, index)
                table = path
                self.lines.setdefault(table, lineno)
                continue
            if m := _ASSIGN.match(line):
                key = (*table, *_split_key(m.group(1)))
                self.lines.setdefault(key, lineno)
                depth = max(0, _bracket_balance(line[m.end() :]))

    def line(self, loc: Sequence[str | int]) -> int | None:
        for end in range(len(loc), 0, -1):
            if (found := self.lines.get(tuple(loc[:end]))) is not None:
                return found
        return None


def _bracket_balance(text: str) -> int:
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', "", text.split("#", 1)[0])
    return text.count("[") + text.count("{") - text.count("]") - text.count("}")


class _JsonLocator:
    """The same for JSON: finds each key of the path in order through the text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def line(self, loc: Sequence[str | int]) -> int | None:
        pos, found = 0, None
        for part in loc:
            if isinstance(part, int):
                continue
            i = self.text.find(json.dumps(part), pos)
            if i < 0:
                break
            pos, found = i, i
        return None if found is None else self.text.count("\n", 0, found) + 1


_UNION_TAG = re.compile(r"^(?:[A-Z][A-Za-z]*Model|literal\[.*\]|function-.*)$")


def _dotted(loc: Sequence[str | int]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in loc).replace(".[", "[")


class _Source:
    """A config text with a way to turn a key path into ``file:line: key``."""

    def __init__(self, name: str, locator: _TomlLocator | _JsonLocator) -> None:
        self.name = name
        self.locator = locator

    def error(self, loc: Sequence[str | int], message: str) -> ConfigError:
        line = self.locator.line(loc)
        where = f"{self.name}:{line}" if line else self.name
        if loc:
            where += f": {_dotted(loc)}"
        return ConfigError(message, where=where)

    def from_validation(
        self, exc: ValidationError, prefix: Sequence[str | int] = ()
    ) -> ConfigError:
        err = exc.errors()[0]
        loc = [*prefix, *(p for p in err["loc"] if isinstance(p, (str, int)))]
        # pydantic names the union member it tried ("ToolModel", "literal['x']"): noise to a user
        loc = [p for p in loc if not (isinstance(p, str) and _UNION_TAG.match(p))]
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        more = len(exc.errors()) - 1
        if more:
            message += f" (and {more} more error{'s' if more > 1 else ''})"
        return self.error(loc, message)


# --- loading -----------------------------------------------------------------------------------


def load_config(path: Path | None = None) -> Config:
    """Load ``path``; with ``None``, ``./callproof.toml`` when present, else the embedded
    default. ``.json`` files are read as the seeds' agent config. Raises ``ConfigError``."""
    if path is None:
        local = Path.cwd() / CONFIG_NAME
        if not local.is_file():
            return parse_config(DEFAULT_TOML, name="<embedded default>")
        path = local
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from None
    if path.suffix.lower() == ".json":
        return parse_agent_json(text, name=str(path), path=path)
    return parse_config(text, name=str(path), path=path)


def parse_config(text: str, *, name: str = CONFIG_NAME, path: Path | None = None) -> Config:
    """Validate a ``callproof.toml`` text (``name`` is used in error messages)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        if m:
            where = f"{name}:{m.group(1)}"
        else:  # "(at end of document)"
            where = f"{name}:{max(1, len(text.splitlines()))}"
        raise ConfigError(f"invalid TOML: {exc}", where=where) from None
    return _build(data, _Source(name, _TomlLocator(text)), path)


def parse_agent_json(text: str, *, name: str = "config.json", path: Path | None = None) -> Config:
    """Read the seeds' agent config: ``models.providers.NAME.{baseUrl, api, models[{id,name}]}``.

    Bedrock APIs sign with SigV4 (region from ``region`` or the ``bedrock-runtime.<region>``
    host); OpenAI-compatible ones send ``Authorization: Bearer $<NAME>_API_KEY``.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON: {exc.msg}", where=f"{name}:{exc.lineno}") from None
    source = _Source(name, _JsonLocator(text))
    try:
        agent = _AgentFile.model_validate(data)
    except ValidationError as exc:
        raise source.from_validation(exc) from None
    providers: dict[str, Any] = {}
    targets: dict[str, Any] = {}
    for pname, prov in agent.models.providers.items():
        is_bedrock = api_family(prov.api) == "bedrock"
        region = prov.region
        if region is None and (m := re.search(r"bedrock-runtime[.-]([a-z0-9-]+)\.", prov.baseUrl)):
            region = m.group(1)
        env = re.sub(r"[^A-Z0-9]+", "_", pname.upper()) + "_API_KEY"
        auth = {"kind": "sigv4"} if is_bedrock else {"kind": "bearer", "env": env}
        providers[pname] = {"api": prov.api, "endpoint": prov.baseUrl, "auth": auth}
        if region:
            providers[pname]["region"] = region
        for model in prov.models:
            label = model.name or re.split(r"[/.]", model.id)[-1]
            slug = re.sub(r"[^a-z0-9.]+", "-", label.lower()).strip("-")
            targets[f"{pname}-{slug}"] = {"provider": pname, "model": model.id}
    return _build({"providers": providers, "targets": targets}, source, path)


class _AgentModel(BaseModel):
    id: str
    name: str | None = None


class _AgentProvider(BaseModel):
    baseUrl: str  # noqa: N815 - the agent config's own spelling
    api: Api
    region: str | None = None
    models: list[_AgentModel] = Field(min_length=1)


class _AgentProviders(BaseModel):
    providers: dict[str, _AgentProvider] = Field(min_length=1)


class _AgentFile(BaseModel):
    models: _AgentProviders


def _build(data: Mapping[str, Any], source: _Source, path: Path | None) -> Config:
    try:
        model = _FileModel.model_validate(data)
    except ValidationError as exc:
        raise source.from_validation(exc) from None
    d = model.defaults
    base_timeouts = d.timeouts.over(Timeouts())
    targets = {
        name: _target(name, t, model.providers, base_timeouts, source)
        for name, t in model.targets.items()
    }
    routes = {name: _route(name, r, targets, source) for name, r in model.routes.items()}
    scenarios = builtins()
    for name, s in model.scenarios.items():
        if name in scenarios:
            raise source.error(("scenarios", name), f"{name!r} is a built-in scenario name")
        for key in ("text_regex",):
            pattern = getattr(s.expect, key)
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise source.error(
                        ("scenarios", name, "expect", key), f"invalid regex: {exc}"
                    ) from None
        scenarios[name] = s.to_probe(name)
    _check_names(d, targets, routes, scenarios, source)
    compare_with: dict[str, str] = {}
    for name, t in model.targets.items():
        if t.compare_with is None:
            continue
        if t.compare_with not in targets or t.compare_with == name:
            known = ", ".join(n for n in targets if n != name) or "none"
            raise source.error(
                ("targets", name, "compare_with"),
                f"compare_with names no other target: {t.compare_with!r} (targets: {known})",
            )
        compare_with[name] = t.compare_with
    faults = None
    if model.emulator.faults:
        faults = Path(model.emulator.faults)
        if not faults.is_absolute() and path is not None:
            faults = path.parent / faults
        if not faults.is_file():
            raise source.error(("emulator", "faults"), f"fault plan not found: {faults}")
    fail_under = (
        d.fail_under / 100 if d.fail_under is not None and d.fail_under > 1 else d.fail_under
    )
    return Config(
        targets=targets,
        routes=routes,
        scenarios=scenarios,
        defaults=Defaults(
            n=d.n,
            concurrency=d.concurrency,
            per_target_concurrency=d.per_target_concurrency,
            rate_limit=d.rate_limit,
            timeouts=base_timeouts,
            fail_under=fail_under,
            gate=d.gate,
            out=d.out,
            targets=d.targets,
            routes=d.routes,
            scenarios=d.scenarios,
        ),
        emulator=EmulatorSettings(
            preset=model.emulator.preset, faults=faults, seed=model.emulator.seed
        ),
        path=path,
        compare_with=compare_with,
    )


def _target(
    name: str,
    t: _TargetModel,
    providers: Mapping[str, _ProviderModel],
    base_timeouts: Timeouts,
    source: _Source,
) -> Target:
    prov = providers.get(t.provider)
    if prov is None:
        known = ", ".join(sorted(providers)) or "none defined"
        raise source.error(
            ("targets", name, "provider"), f"unknown provider {t.provider!r} (known: {known})"
        )
    api: Api = t.api or prov.api
    emulated = prov.endpoint.strip().lower() == "emulator"
    if not emulated and not re.match(r"^https?://", prov.endpoint):
        raise source.error(
            ("providers", t.provider, "endpoint"),
            f'endpoint must be an http(s) URL or "emulator", not {prov.endpoint!r}',
        )
    endpoint = Endpoint(
        base_url=EMULATOR_URL if emulated else prov.endpoint.rstrip("/"),
        region=prov.region or ("us-east-1" if api_family(api) == "bedrock" else None),
        auth=Auth(kind=prov.auth.kind, env=prov.auth.env, profile=prov.auth.profile),
        headers=dict(prov.headers),
        verify=prov.verify,
    )
    if t.dialect:
        try:
            get_dialect(api, **t.dialect)
        except ConfigError as exc:
            raise source.error(("targets", name, "dialect"), exc.message) from None
    return Target(
        name=name,
        api=api,
        model=t.model,
        endpoint=endpoint,
        extra=dict(t.extra),
        timeouts=t.timeouts.over(base_timeouts),
        provider=prov.label or t.provider,
        dialect_options=dict(t.dialect),
    )


def _route(
    name: str, r: _RouteModel, targets: Mapping[str, Target], source: _Source
) -> RouteConfig:
    for i, member in enumerate(r.targets):
        if member not in targets:
            raise source.error(("routes", name, "targets", i), f"unknown target {member!r}")
    try:
        return RouteConfig(name=name, targets=list(r.targets), policy=dict(r.model_extra or {}))
    except ConfigError as exc:
        # exc.where is "routes.NAME.section.key": locate its line, keep the bare message
        keys = (exc.where or "").split(".")[2:]
        raise source.error(("routes", name, *keys), exc.message) from None


def _check_names(
    d: _DefaultsModel,
    targets: Mapping[str, Target],
    routes: Mapping[str, RouteConfig],
    scenarios: Mapping[str, ProbeScenario],
    source: _Source,
) -> None:
    for key, names, known in (
        ("targets", d.targets, targets),
        ("routes", d.routes, routes),
        ("scenarios", d.scenarios, scenarios),
    ):
        for i, item in enumerate(names or ()):
            if item not in known:
                raise source.error(
                    ("defaults", key, i), f"unknown {key[:-1]} {item!r} (known: {', '.join(known)})"
                )
