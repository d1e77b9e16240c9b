"""One call, as ``callproof call`` makes it: the target from flags (an explicit endpoint, or the
embedded emulator when none is given) or from the configuration (a target, or a route's
targets), then one attempt or one routed call.

* :class:`CallSpec` - what was asked for (the command's flags);
* :func:`plan_call` - the targets, a label and the route, starting the emulator when needed;
* :func:`make_call` - plan and run: an :class:`~callproof.attempt.Attempt` and its label;
* :func:`explicit_auth` - how ``--auth auto`` authenticates to an explicit endpoint.

Usage and configuration errors are :class:`~callproof.errors.ConfigError`; failed calls are
attempts with an outcome, never exceptions.
"""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from callproof.attempt import Attempt, run_attempt
from callproof.client import Client
from callproof.dialects import api_family, base_path
from callproof.emulator import EmulatorServer
from callproof.endpoints import Signer, is_loopback
from callproof.errors import ConfigError
from callproof.probe.config import load_config
from callproof.redact import redact_url
from callproof.resilience import RouteConfig, router_for, run_route_attempt
from callproof.scenarios import Scenario
from callproof.targets import Auth, Endpoint, Target, Timeouts

__all__ = [
    "EMULATOR_TIMEOUTS",
    "CallSpec",
    "PlannedCall",
    "explicit_auth",
    "make_call",
    "plan_call",
]

log = logging.getLogger(__name__)

#: Clocks used against the embedded emulator when none are given: its healthy answers start
#: within half a second, so a few seconds tells a hang from a slow model.
EMULATOR_TIMEOUTS = Timeouts(connect=5.0, first_event=3.0, idle=3.0, deadline=30.0)


@dataclass(slots=True)
class CallSpec:
    """The flags of one call (``None``: not given)."""

    api: str | None = None
    model: str | None = None
    endpoint: str | None = None
    region: str | None = None
    api_key_env: str | None = None
    #: ``auto``, ``sigv4``, ``bedrock-api-key``, ``bearer`` or ``none``.
    auth: str = "auto"
    profile: str | None = None
    target_name: str | None = None
    route_name: str | None = None
    config_path: Path | None = None
    #: (first event, idle, deadline) seconds over the target's own clocks.
    clocks: tuple[float | None, float | None, float | None] = (None, None, None)
    capture: Path | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: TLS verification over the target's (``None``: the target's own).
    verify: bool | str | None = None


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """Where a call goes: one target, or a route's targets with the route."""

    targets: list[Target]
    label: str
    route: RouteConfig | None = None


def explicit_auth(
    api: str, auth: str, api_key_env: str | None, profile: str | None, url: str
) -> Auth:
    """The auth for an explicit endpoint. ``auto`` does what botocore and the openai SDK do,
    and lets a local endpoint (an emulator) go unauthenticated when no credentials exist."""
    if auth != "auto":
        if auth == "bearer" and not api_key_env:
            raise ConfigError("--auth bearer needs --api-key-env NAME")
        return Auth(kind=auth, env=api_key_env, profile=profile)  # type: ignore[arg-type]
    if api_family(api) != "bedrock":
        return Auth(kind="bearer", env=api_key_env) if api_key_env else Auth(kind="none")
    if api_key_env or (
        os.environ.get("AWS_BEARER_TOKEN_BEDROCK") and url.lower().startswith("https:")
    ):
        return Auth(kind="bedrock-api-key", env=api_key_env)
    if is_loopback(url) and not Signer().has_credentials(profile):
        log.info("no AWS credentials: calling %s unsigned", redact_url(url))
        return Auth(kind="none")
    return Auth(kind="sigv4", profile=profile)


def _timeouts(
    base: Timeouts, first: float | None, idle: float | None, deadline: float | None
) -> Timeouts:
    return Timeouts(
        connect=base.connect,
        first_event=first if first is not None else base.first_event,
        idle=idle if idle is not None else base.idle,
        deadline=deadline if deadline is not None else base.deadline,
    )


def _from_config(stack: ExitStack, spec: CallSpec) -> PlannedCall:
    """The target named (or the route's), the emulator started for the rest of ``stack`` when
    the configuration serves one from it, with ``spec``'s headers, TLS and clocks over them."""
    if spec.api or spec.model or spec.endpoint:
        raise ConfigError("--target/--route take the API, model and endpoint from the config")
    config = load_config(spec.config_path)
    route: RouteConfig | None = None
    if spec.route_name:
        route = config.routes.get(spec.route_name)
        if route is None:
            known = ", ".join(sorted(config.routes)) or "none"
            raise ConfigError(f"no route {spec.route_name!r}; routes: {known}")
        names = route.targets
    else:
        assert spec.target_name is not None
        if spec.target_name not in config.targets:
            known = ", ".join(sorted(config.targets)) or "none"
            raise ConfigError(f"no target {spec.target_name!r}; targets: {known}")
        names = [spec.target_name]
    if config.needs_emulator:
        settings = config.emulator
        server = stack.enter_context(
            EmulatorServer(preset=settings.preset, faults=settings.faults, seed=settings.seed)
        )
        config = config.bind_emulator(str(server.url))
    targets = [
        replace(
            t,
            endpoint=replace(
                t.endpoint,
                headers={**t.endpoint.headers, **spec.headers},
                verify=t.endpoint.verify if spec.verify is None else spec.verify,
            ),
            timeouts=_timeouts(t.timeouts, *spec.clocks),
        )
        for t in (config.targets[n] for n in names)
    ]
    label = f"route {spec.route_name}" if spec.route_name else f"target {spec.target_name}"
    return PlannedCall(targets=targets, label=label, route=route)


def _explicit(stack: ExitStack, spec: CallSpec) -> PlannedCall:
    """``--api`` and ``--model`` at ``--endpoint``, or at the embedded emulator (seed preset)."""
    api, model, region = spec.api, spec.model, spec.region
    if not api:
        raise ConfigError("--api is required (or --target NAME)")
    if not model:
        raise ConfigError("--model is required (or --target NAME)")
    base = Timeouts()
    if spec.endpoint is None:
        server = stack.enter_context(EmulatorServer(preset="seed"))
        endpoint = str(server.url).rstrip("/") + base_path(api)
        endpoint_obj = Endpoint(
            base_url=endpoint,
            region=region or "us-east-1",
            auth=explicit_auth(api, spec.auth, spec.api_key_env, spec.profile, endpoint),
            headers=spec.headers,
        )
        base = EMULATOR_TIMEOUTS
    else:
        endpoint = spec.endpoint
        if (
            region is None
            and is_loopback(endpoint)
            and not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
        ):
            region = "us-east-1"  # a local endpoint has no region; SigV4 needs one
        endpoint_obj = Endpoint(
            base_url=endpoint,
            region=region,
            auth=explicit_auth(api, spec.auth, spec.api_key_env, spec.profile, endpoint),
            headers=spec.headers,
            verify=True if spec.verify is None else spec.verify,
        )
    target = Target(
        name=f"{api}:{model}",
        api=api,  # type: ignore[arg-type]
        model=model,
        endpoint=endpoint_obj,
        timeouts=_timeouts(base, *spec.clocks),
    )
    return PlannedCall(targets=[target], label=f"{target.name} at {redact_url(endpoint)}")


def plan_call(stack: ExitStack, spec: CallSpec) -> PlannedCall:
    """Where ``spec`` goes; an emulator it needs runs until ``stack`` closes."""
    if spec.target_name and spec.route_name:
        raise ConfigError("give --target or --route, not both")
    if spec.route_name and spec.capture is not None:
        raise ConfigError("--capture records one target's attempt; it cannot follow a route")
    if spec.target_name or spec.route_name:
        return _from_config(stack, spec)
    return _explicit(stack, spec)


async def _run(planned: PlannedCall, scenario: Scenario, spec: CallSpec, keep: bool) -> Attempt:
    # a route's -v shows the serving attempt's events: its client always keeps them
    async with Client(keep_events=keep or planned.route is not None) as client:
        if planned.route is not None:
            router = router_for(planned.route, planned.targets, client)
            routed: Attempt = await run_route_attempt(router, scenario)
            return routed
        return await run_attempt(client, planned.targets[0], scenario, capture=spec.capture)


def make_call(spec: CallSpec, scenario: Scenario, *, keep_events: bool) -> tuple[Attempt, str]:
    """Plan ``spec`` and send ``scenario`` once: the attempt and a label of where it went.
    ``keep_events`` keeps every decoded event on the response (for ``-v``)."""
    with ExitStack() as stack:
        planned = plan_call(stack, spec)
        return asyncio.run(_run(planned, scenario, spec, keep_events)), planned.label
