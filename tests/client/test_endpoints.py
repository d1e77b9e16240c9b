"""Endpoints: URL joining that keeps percent-encoding, default headers, and the four auths."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from callproof import redact
from callproof.dialects.base import WireRequest
from callproof.endpoints import Signer, build_request, join_url, resolve_region
from callproof.errors import ConfigError
from callproof.targets import Auth, Endpoint

WIRE = WireRequest("POST", "/model/us.amazon.nova-micro-v1%3A0/converse-stream", b'{"messages":[]}')
FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def test_join_keeps_percent_encoding() -> None:
    assert (
        join_url("http://127.0.0.1:4010/", "/model/us.amazon.nova-micro-v1%3A0/converse")
        == "http://127.0.0.1:4010/model/us.amazon.nova-micro-v1%3A0/converse"
    )
    request = build_request(WIRE, Endpoint(base_url="http://127.0.0.1:4010"))
    assert request.url.raw_path == b"/model/us.amazon.nova-micro-v1%3A0/converse-stream"
    assert join_url("https://openrouter.ai/api/v1", "/chat/completions") == (
        "https://openrouter.ai/api/v1/chat/completions"
    )


def test_default_and_endpoint_headers() -> None:
    ep = Endpoint(
        base_url="http://x/v1",
        headers={"HTTP-Referer": "https://example.test", "x-callproof-fault": "hang_no_events"},
    )
    request = build_request(
        WireRequest("POST", "/chat/completions", b"{}", {"accept": "text/event-stream"}), ep
    )
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["x-callproof-fault"] == "hang_no_events"
    assert request.headers["user-agent"].startswith("callproof/")
    assert "authorization" not in request.headers
    assert request.content == b"{}"


def test_callproofs_own_headers_are_not_remembered_as_secrets() -> None:
    """The probe's attempt key is new on every attempt: remembered as a secret (its name has
    "key" in it), the redaction registry grew by one entry per attempt, a quadratic cost."""
    before = redact.secret_count()
    for n in range(50):
        key = f"run1/nova/tool-result/{n:05d}-attemptkeyvalue"
        ep = Endpoint(base_url="http://x/v1", headers={"x-callproof-attempt-key": key})
        request = build_request(WireRequest("POST", "/chat/completions", b"{}", {}), ep)
        assert request.headers["x-callproof-attempt-key"] == key
        assert redact.scrub(key) == key
    assert redact.secret_count() == before
    ep = Endpoint(base_url="http://x/v1", headers={"X-Api-Key": "sk-remembered-0123456789"})
    build_request(WireRequest("POST", "/chat/completions", b"{}", {}), ep)
    assert "sk-remembered-0123456789" not in redact.scrub("sk-remembered-0123456789")


def test_sigv4_header_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    ep = Endpoint(
        base_url="https://bedrock-runtime.us-west-2.amazonaws.com", auth=Auth(kind="sigv4")
    )
    request = build_request(WIRE, ep, signer=Signer())
    auth = request.headers["authorization"]
    assert re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/us-west-2/bedrock/aws4_request, "
        r"SignedHeaders=[a-z0-9;-]*content-type;host;x-amz-date[a-z0-9;-]*, Signature=[0-9a-f]{64}",
        auth,
    ), auth
    assert re.fullmatch(r"\d{8}T\d{6}Z", request.headers["x-amz-date"])
    assert "x-amz-security-token" not in request.headers
    assert FAKE_SECRET not in str(request.headers)


def test_sigv4_session_token_and_region_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEXAMPLETOKEN")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    request = build_request(
        WIRE, Endpoint(base_url="http://127.0.0.1:4010", auth=Auth(kind="sigv4")), signer=Signer()
    )
    assert "/eu-central-1/bedrock/aws4_request" in request.headers["authorization"]
    assert request.headers["x-amz-security-token"] == "FwoGZXIvYXdzEXAMPLETOKEN"
    assert "x-amz-security-token" in request.headers["authorization"]


def test_sigv4_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[work]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = {FAKE_SECRET}\n"
    )
    config = tmp_path / "config"
    config.write_text("[profile work]\nregion = ap-northeast-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    ep = Endpoint(base_url="http://127.0.0.1:4010", auth=Auth(kind="sigv4", profile="work"))
    request = build_request(WIRE, ep, signer=Signer())
    assert "Credential=AKIDPROFILE/" in request.headers["authorization"]
    assert "/ap-northeast-1/bedrock/" in request.headers["authorization"]


def test_sigv4_unknown_profile_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    ep = Endpoint(base_url="http://127.0.0.1:4010", auth=Auth(kind="sigv4", profile="nope"))
    with pytest.raises(ConfigError, match="nope"):
        build_request(WIRE, ep, signer=Signer())


def test_sigv4_without_credentials_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with pytest.raises(ConfigError, match="no AWS credentials"):
        build_request(
            WIRE,
            Endpoint(base_url="http://127.0.0.1:4010", auth=Auth(kind="sigv4")),
            signer=Signer(),
        )


def test_sigv4_without_region_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with pytest.raises(ConfigError, match="region"):
        build_request(
            WIRE,
            Endpoint(base_url="http://127.0.0.1:4010", auth=Auth(kind="sigv4")),
            signer=Signer(),
        )


def test_region_from_aws_hostname() -> None:
    ep = Endpoint(base_url="https://bedrock-runtime.ap-south-1.amazonaws.com")
    assert resolve_region(ep, {}) == "ap-south-1"
    assert resolve_region(Endpoint(base_url="http://127.0.0.1"), {}) is None
    assert (
        resolve_region(Endpoint(base_url="http://127.0.0.1", region="r1"), {"AWS_REGION": "r2"})
        == "r1"
    )


def test_bedrock_api_key_refused_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSKtestkey")
    with pytest.raises(ConfigError, match="requires an HTTPS endpoint"):
        build_request(
            WIRE, Endpoint(base_url="http://127.0.0.1:4010", auth=Auth(kind="bedrock-api-key"))
        )


def test_bedrock_api_key_over_https(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSKtestkey")
    request = build_request(
        WIRE, Endpoint(base_url="https://127.0.0.1:4010", auth=Auth(kind="bedrock-api-key"))
    )
    assert request.headers["authorization"] == "Bearer ABSKtestkey"
    monkeypatch.setenv("MY_BEDROCK_KEY", "ABSKother")
    request = build_request(
        WIRE,
        Endpoint(base_url="https://h", auth=Auth(kind="bedrock-api-key", env="MY_BEDROCK_KEY")),
    )
    assert request.headers["authorization"] == "Bearer ABSKother"


def test_bedrock_api_key_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="AWS_BEARER_TOKEN_BEDROCK"):
        build_request(WIRE, Endpoint(base_url="https://h", auth=Auth(kind="bedrock-api-key")))


def test_bearer_from_named_env(monkeypatch: pytest.MonkeyPatch) -> None:
    wire = WireRequest("POST", "/chat/completions", b"{}")
    ep = Endpoint(
        base_url="http://127.0.0.1:1/v1", auth=Auth(kind="bearer", env="OPENROUTER_API_KEY")
    )
    with pytest.raises(ConfigError, match="OPENROUTER_API_KEY"):
        build_request(wire, ep)
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-key")
    assert build_request(wire, ep).headers["authorization"] == "Bearer sk-or-test-key"
    with pytest.raises(ConfigError, match="env"):
        build_request(wire, Endpoint(base_url="http://h/v1", auth=Auth(kind="bearer")))


def test_bad_scheme() -> None:
    with pytest.raises(ConfigError, match="http"):
        build_request(WIRE, Endpoint(base_url="ftp://example.test"))


URL_KEY = "PLANTEDurlkey0123456789"


def test_config_errors_do_not_echo_a_key_in_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as bad_scheme:
        build_request(WIRE, Endpoint(base_url=f"ftp://h/v1?api_key={URL_KEY}"))
    assert "ftp://h" in str(bad_scheme.value)
    assert URL_KEY not in str(bad_scheme.value)
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSKtest")
    with pytest.raises(ConfigError) as plain_http:
        build_request(
            WIRE,
            Endpoint(base_url=f"http://h?key={URL_KEY}", auth=Auth(kind="bedrock-api-key")),
        )
    assert "HTTPS" in str(plain_http.value)
    assert URL_KEY not in str(plain_http.value)


async def test_the_debug_log_of_a_call_does_not_carry_a_key_in_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    import httpx

    from callproof.client import Client
    from callproof.conversation import Conversation, UserMessage
    from callproof.targets import Target
    from tests.client.conftest import FAST
    from tests.client.streams import chat_frames

    def handler(request: httpx.Request) -> httpx.Response:
        assert URL_KEY in str(request.url)  # the key is still sent, only never logged
        return httpx.Response(200, content=b"".join(chat_frames()))

    target = Target(
        name="t",
        api="openai-completions",
        model="m",
        endpoint=Endpoint(base_url=f"http://mock/v1?key={URL_KEY}"),
        timeouts=FAST,
    )
    caplog.set_level(logging.DEBUG, logger="callproof.client")
    async with Client(transport=httpx.MockTransport(handler)) as client:
        await client.complete(target, Conversation(messages=(UserMessage.text("hi"),)))
    assert "http://mock/v1/chat/completions" in caplog.text
    assert URL_KEY not in caplog.text


def test_join_keeps_a_query_string_after_the_path() -> None:
    assert (
        join_url("https://gw.example/openai/v1/?api-version=2025-01-01", "/chat/completions")
        == "https://gw.example/openai/v1/chat/completions?api-version=2025-01-01"
    )
    request = build_request(WIRE, Endpoint(base_url="http://127.0.0.1:4010?tenant=a"))
    assert request.url.path == "/model/us.amazon.nova-micro-v1:0/converse-stream"
    assert request.url.raw_path == (b"/model/us.amazon.nova-micro-v1%3A0/converse-stream?tenant=a")
