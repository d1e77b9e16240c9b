"""Reporting what served: the serving target is named (RouteStream.served_by, the record's
``served``, resilience.served_by), and only its attempt's usage is the response's usage."""

from __future__ import annotations

from collections.abc import Callable

from callproof.client import Client
from callproof.events import Usage
from callproof.resilience import HedgePolicy, RoutePolicy, Router, served_by
from callproof.scenarios import tool_result
from callproof.targets import Target

from .conftest import ScriptedFaults
from .fakes import FakeClient, Play, target

CONV = tool_result().conversation
NO_HEDGE = RoutePolicy(hedge=HedgePolicy(mode="off"))


async def test_the_serving_target_and_only_its_usage_are_reported(
    make_target: Callable[..., Target],
) -> None:
    # a answers a complete, empty stream (with usage of its own), b serves
    transport = ScriptedFaults(["empty_response", None])
    a = make_target("a", "amazon.nova-pro-v1:0")
    b = make_target("b", "mistral.mistral-large-3-675b-instruct")
    async with Client(transport=transport) as client:
        router = Router("r", [a, b], client=client, policy=NO_HEDGE)
        async with router.stream(CONV, buffered=True) as s:
            async for _ in s:
                pass
    resp = s.response
    assert resp is not None
    assert (s.served_by, s.served_target) == ("b", b)
    assert served_by(resp) == "b"
    first, second = resp.attempts
    assert (first["target"], first["outcome"], first["served"]) == ("a", "empty_response", False)
    assert (second["target"], second["outcome"], second["served"]) == ("b", "ok", True)
    assert first["usage"] is not None  # a's tokens were spent, and recorded on its attempt
    assert resp.usage is not None
    assert resp.usage.to_dict() == second["usage"]
    assert s.requests == 2


async def test_only_the_serving_attempts_usage_is_the_responses() -> None:
    spent = Usage(input_tokens=120, output_tokens=3, total_tokens=123)
    served = Usage(input_tokens=80, output_tokens=9, total_tokens=89)
    client = FakeClient({"a": [Play("empty", usage=spent)], "b": [Play(usage=served)]})
    router = Router("r", [target("a"), target("b")], client=client, policy=NO_HEDGE)
    resp = await router.complete(CONV)
    assert resp.usage == served
    assert served_by(resp) == "b"
    assert [(x["target"], x["usage"], x["served"]) for x in resp.attempts] == [
        ("a", spent.to_dict(), False),
        ("b", served.to_dict(), True),
    ]


async def test_nothing_served_before_the_end_and_plain_responses_name_nothing(
    make_target: Callable[..., Target],
) -> None:
    async with Client() as client:
        router = Router("r", [make_target("a")], client=client, policy=NO_HEDGE)
        async with router.stream(CONV) as s:
            assert s.served_by is None
            async for _ in s:
                pass
        assert s.served_by == "a"
        plain = await client.complete(make_target("a"), CONV)
    assert served_by(plain) is None
