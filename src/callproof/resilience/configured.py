"""Routers from configuration: the one place a :class:`Router` is built from a route table.

* :func:`router_for` - the router of a :class:`~callproof.resilience.policy.RouteConfig` over its
  resolved targets (perhaps bound to an emulator), with the policy parsed once when the
  configuration was loaded. The probe runner and ``callproof call --route`` use it.
* :func:`router_from_config` - the router of ``[routes.NAME]`` of a loaded
  :class:`callproof.probe.config.Config` (the gateway's way in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from callproof.errors import ConfigError
from callproof.resilience.hedge import StreamingClient
from callproof.resilience.policy import RouteConfig
from callproof.resilience.router import Router
from callproof.targets import Target

__all__ = ["RoutesConfig", "router_for", "router_from_config"]


class RoutesConfig(Protocol):
    """What :func:`router_from_config` reads of a configuration (a
    :class:`callproof.probe.config.Config` has it): resilience never imports the configuration
    layer, which imports it."""

    @property
    def targets(self) -> Mapping[str, Target]: ...

    @property
    def routes(self) -> Mapping[str, RouteConfig]: ...


def router_for(
    route: RouteConfig, targets: Sequence[Target], client: StreamingClient, **kwargs: Any
) -> Router:
    """The :class:`Router` of ``route`` over ``targets`` (its members, resolved). Extra keyword
    arguments (``clock``, ``sleep``) go to :class:`Router`."""
    return Router(route.name, list(targets), client=client, policy=route.route_policy, **kwargs)


def router_from_config(
    config: RoutesConfig, name: str, client: StreamingClient, **kwargs: Any
) -> Router:
    """The :class:`Router` of ``[routes.NAME]`` in ``config`` (extra keyword arguments, such as
    ``clock`` or ``sleep``, go to :class:`Router`). Unknown names raise ConfigError."""
    route = config.routes.get(name)
    if route is None:
        known = ", ".join(sorted(config.routes)) or "none"
        raise ConfigError(f"unknown route {name!r} (configured: {known})", where="--route")
    targets = []
    for member in route.targets:
        if member not in config.targets:
            raise ConfigError(f"unknown target {member!r}", where=f"routes.{name}.targets")
        targets.append(config.targets[member])
    return router_for(route, targets, client, **kwargs)
