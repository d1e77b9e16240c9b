"""Refusals (context length, content filter, validation, authentication) are not retried and
do not fall over unless the route's ``fallback_on`` says so; the caller gets the provider's own
error. Real client and wire: the emulator's HTTP errors, and a raw loopback server for the
OpenAI-compatible bodies the emulator does not play."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from callproof.client import Client
from callproof.errors import ConfigError, HTTPStatusError, StreamExceptionError
from callproof.resilience import HedgePolicy, RoutePolicy, Router, run_route_attempt
from callproof.scenarios import tool_result
from callproof.targets import Endpoint, Target
from tests.client.rawserver import Script, raw_server

from .conftest import SHORT, ScriptedFaults

CONV = tool_result().conversation
NO_HEDGE = RoutePolicy(hedge=HedgePolicy(mode="off"))
MakeTarget = Callable[..., Target]

#: OpenAI's context-length refusal, as its API sends it.
CONTEXT_BODY = {
    "error": {
        "message": "This model's maximum context length is 128000 tokens. However, your "
        "messages resulted in 130412 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
#: Azure OpenAI's content-filter refusal.
FILTER_BODY = {
    "error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
        "content management policy.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation"},
    }
}


def openai_target(url: str) -> Target:
    return Target(
        name="strict",
        api="openai-completions",
        model="m",
        endpoint=Endpoint(base_url=url + "/v1"),
        timeouts=SHORT,
    )


def refusing(body: dict[str, object]) -> Script:
    return Script(
        {"content-type": "application/json"}, [(0, json.dumps(body).encode())], status=400
    )


@pytest.mark.parametrize(
    ("fault", "category"), [("http_error:400", "validation"), ("http_error:403", "auth")]
)
async def test_a_bedrock_refusal_ends_the_call_with_the_providers_error(
    make_target: MakeTarget, fault: str, category: str
) -> None:
    transport = ScriptedFaults([fault])
    async with Client(transport=transport) as client:
        router = Router("r", [make_target("a"), make_target("b")], client=client, policy=NO_HEDGE)
        with pytest.raises(HTTPStatusError) as info:
            await router.complete(CONV)
    err = info.value
    assert (err.category, err.target, err.attempt) == (category, "a", 1)
    assert err.status == int(fault.split(":")[1])
    assert err.error_type in ("ValidationException", "AccessDeniedException")
    assert err.body  # the provider's own body
    assert transport.sent == [fault]  # not retried, b never asked
    assert err.response is not None
    assert [(x["target"], x["outcome"]) for x in err.response.attempts] == [("a", "http_error")]
    assert router.breaker_states() == {"a": "closed", "b": "closed"}


@pytest.mark.parametrize("fallback_on", [["validation"], ["http_error"]])
async def test_fallback_on_lets_a_refusal_fall_over(
    make_target: MakeTarget, fallback_on: list[str]
) -> None:
    transport = ScriptedFaults(["http_error:400"])
    policy = RoutePolicy.from_mapping({"hedge": "off", "fallback_on": fallback_on})
    async with Client(transport=transport) as client:
        router = Router("r", [make_target("a"), make_target("b")], client=client, policy=policy)
        resp = await router.complete(CONV)
    assert [(x["target"], x["outcome"]) for x in resp.attempts] == [
        ("a", "http_error"),
        ("b", "ok"),
    ]
    assert transport.sent == ["http_error:400", None]


@pytest.mark.parametrize(
    ("body", "category", "code"),
    [
        (CONTEXT_BODY, "context_length", "context_length_exceeded"),
        (FILTER_BODY, "content_filter", "content_filter"),
    ],
)
async def test_openai_context_length_and_content_filter(
    make_target: MakeTarget, body: dict[str, object], category: str, code: str
) -> None:
    async with raw_server(refusing(body)) as (url, seen):
        async with Client() as client:
            router = Router(
                "r", [openai_target(url), make_target("b")], client=client, policy=NO_HEDGE
            )
            with pytest.raises(HTTPStatusError) as info:
                await router.complete(CONV)
        assert seen.requests == 1
        err = info.value
        assert (err.category, err.error_type, err.status) == (category, code, 400)
        assert err.message == body["error"]["message"]  # type: ignore[index]
        # named in fallback_on: the next target serves
        async with Client() as client:
            policy = NO_HEDGE.replace(fallback_on=frozenset({category}))
            router = Router(
                "r", [openai_target(url), make_target("b")], client=client, policy=policy
            )
            resp = await router.complete(CONV)
        assert [(x["target"], x["outcome"]) for x in resp.attempts] == [
            ("strict", "http_error"),
            ("b", "ok"),
        ]


async def test_run_route_attempt_reports_a_refusal(make_target: MakeTarget) -> None:
    transport = ScriptedFaults(["http_error:400"])
    async with Client(transport=transport) as client:
        router = Router("r", [make_target("a"), make_target("b")], client=client, policy=NO_HEDGE)
        attempt = await run_route_attempt(router, tool_result())
    record = attempt.to_record()
    assert (record["outcome"], record["requests"]) == ("http_error", 1)
    assert record["error"]["type"] == "ValidationException"
    assert "refused the call (validation)" in record["detail"]
    assert [x["target"] for x in record["route_attempts"]] == ["a"]


def test_fallback_on_names_are_checked() -> None:
    policy = RoutePolicy.from_mapping({"fallback_on": ["context_length", "content_filter"]})
    assert policy.fallback_on == {"context_length", "content_filter"}
    assert policy.to_dict()["fallback_on"] == ["content_filter", "context_length"]
    with pytest.raises(ConfigError, match=r"routes\.r\.fallback_on: unknown name\(s\) context"):
        RoutePolicy.from_mapping({"fallback_on": ["context"]}, where="routes.r")
    with pytest.raises(ConfigError, match=r"routes\.r\.fallback_on: expected a list"):
        RoutePolicy.from_mapping({"fallback_on": "validation"}, where="routes.r")


@pytest.mark.parametrize("fallback_on", [[], ["stream_exception"]])
async def test_an_in_stream_refusal_when_buffered(
    make_target: MakeTarget, fallback_on: list[str]
) -> None:
    transport = ScriptedFaults(["stream_exception:validationException", None])
    policy = NO_HEDGE.replace(buffered=True, fallback_on=frozenset(fallback_on))
    async with Client(transport=transport) as client:
        router = Router("r", [make_target("a"), make_target("b")], client=client, policy=policy)
        if not fallback_on:
            with pytest.raises(StreamExceptionError) as info:
                async with router.stream(CONV) as s:
                    async for _ in s:
                        pass
            assert info.value.category == "validation"
            assert (info.value.error_type or "").lower() == "validationexception"
            assert transport.sent == ["stream_exception:validationException"]
            return
        async with router.stream(CONV) as s:
            async for _ in s:
                pass
    assert s.served_by == "b"
    assert [x["outcome"] for x in s.attempts] == ["stream_exception", "ok"]


async def test_a_refusal_through_an_unbuffered_stream(make_target: MakeTarget) -> None:
    transport = ScriptedFaults(["http_error:400"])
    async with Client(transport=transport) as client:
        router = Router("r", [make_target("a"), make_target("b")], client=client, policy=NO_HEDGE)
        with pytest.raises(HTTPStatusError) as info:
            async with router.stream(CONV) as s:
                async for _ in s:
                    pass
    assert info.value.category == "validation"
    assert s.served_by is None
    assert transport.sent == ["http_error:400"]
