"""A route's policy is parsed once, when the configuration is loaded, and every router of the
route is built from that parse (callproof.resilience.configured)."""

from __future__ import annotations

from typing import Any

import pytest

from callproof.errors import ConfigError
from callproof.probe.config import DEFAULT_TOML, parse_config
from callproof.resilience import RouteConfig, RoutePolicy, router_for, router_from_config
from callproof.resilience.policy import MeasuredSettings

ROUTED = """
[providers.p]
api = "openai-completions"
endpoint = "http://127.0.0.1:9/v1"

[targets.a]
provider = "p"
model = "m"

[targets.b]
provider = "p"
model = "m2"

[routes.r]
targets = ["a", "b"]
hedge = "off"
order = "measured"
measured = { min_attempts = 5 }
retry = { max_attempts = 2 }
"""


class _NoClient:
    def stream(self, *args: Any, **kwargs: Any) -> Any:  # never called: no call is made
        raise AssertionError("no request expected")


def test_the_embedded_default_route_has_the_default_policy() -> None:
    route = parse_config(DEFAULT_TOML).routes["kimi"]
    assert route.route_policy == RoutePolicy()
    assert route.measured == MeasuredSettings()
    assert route.policy == {}


def test_a_route_table_is_parsed_into_its_policy_and_measured_order() -> None:
    route = parse_config(ROUTED).routes["r"]
    assert route.route_policy.hedge.mode == "off"
    assert route.route_policy.retry.max_attempts == 2
    assert route.measured.enabled
    assert route.measured.min_attempts == 5
    # the table as written is kept for run.json
    assert route.policy["hedge"] == "off"


def test_every_router_of_a_route_uses_the_one_parse() -> None:
    config = parse_config(ROUTED)
    route = config.routes["r"]
    built = router_for(route, [config.targets["a"], config.targets["b"]], _NoClient())
    assert built.policy is route.route_policy
    assert [t.name for t in built.targets] == ["a", "b"]
    assert router_from_config(config, "r", _NoClient()).policy is route.route_policy
    with pytest.raises(ConfigError, match="unknown route"):
        router_from_config(config, "nope", _NoClient())


def test_a_bad_key_names_its_place() -> None:
    with pytest.raises(ConfigError) as info:
        RouteConfig("r", ["a"], {"hedge": {"bogus": 1}})
    assert info.value.where == "routes.r.hedge.bogus"
    with pytest.raises(ConfigError) as info:
        RouteConfig("r", ["a"], {"measured": {"window": "soon"}})
    assert info.value.where == "routes.r.measured.window"


def test_a_bad_key_in_the_file_names_its_line() -> None:
    text = ROUTED.replace("retry = { max_attempts = 2 }", "retry = { max_attempts = 0 }")
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert "routes.r.retry.max_attempts" in str(info.value)
    assert f":{text.splitlines().index('retry = { max_attempts = 0 }') + 1}:" in str(info.value)
