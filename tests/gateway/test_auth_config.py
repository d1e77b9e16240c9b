"""Auth (client keys: bearer for OpenAI, Bedrock API key and botocore-verified SigV4 for
Bedrock), bind rules, config errors with file/line/key, body limits, and no credential in
headers or evidence."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from botocore.exceptions import ClientError

from callproof.errors import ConfigError
from callproof.gateway.auth import parse_keys
from callproof.gateway.config import check_bind, load_serve_config
from tests.gateway.conftest import GatewayFactory, bedrock_client, read_evidence

KEYS = "sk-gateway-one,ABSKbedrockapikey0001,AKIAGATEWAYTEST0001:gateway-secret-key"
KEYS_AUTH = 'auth = { kind = "keys", env = "CALLPROOF_SERVE_KEYS" }'
QUESTION = [{"role": "user", "content": [{"text": "hi"}]}]


def test_parse_keys_splits_bearer_keys_and_sigv4_pairs() -> None:
    keys = parse_keys(" sk-a , AKID1:secret1,,ABSKkey ")
    assert keys.bearer == frozenset({"sk-a", "ABSKkey"})
    assert dict(keys.pairs) == {"AKID1": "secret1"}


@pytest.fixture
def keyed(make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CALLPROOF_SERVE_KEYS", KEYS)
    return make_gateway(serve_extra=KEYS_AUTH).url


def test_sigv4_verified_against_the_configured_pair(keyed: str) -> None:
    good = bedrock_client(keyed, akid="AKIAGATEWAYTEST0001", secret="gateway-secret-key")
    assert good.converse(modelId="moonshotai.kimi-k2.5", messages=QUESTION)["stopReason"]
    bad = bedrock_client(keyed, akid="AKIAGATEWAYTEST0001", secret="wrong-secret")
    with pytest.raises(ClientError) as info:
        bad.converse(modelId="moonshotai.kimi-k2.5", messages=QUESTION)
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    unknown = bedrock_client(keyed, akid="AKIAUNKNOWN", secret="x")
    with pytest.raises(ClientError) as info:
        unknown.converse(modelId="moonshotai.kimi-k2.5", messages=QUESTION)
    assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_bedrock_api_key_as_bearer(keyed: str) -> None:
    url = keyed + "/model/moonshotai.kimi-k2.5/converse"
    body = {"messages": QUESTION}
    ok = httpx.post(url, json=body, headers={"authorization": "Bearer ABSKbedrockapikey0001"})
    assert ok.status_code == 200
    assert ok.json()["stopReason"] == "end_turn"
    no = httpx.post(url, json=body, headers={"authorization": "Bearer nope"})
    assert no.status_code == 403
    missing = httpx.post(url, json=body)
    assert missing.status_code == 403
    assert missing.headers["x-amzn-errortype"].startswith("MissingAuthenticationToken")


def test_openai_bearer_keys(keyed: str) -> None:
    good = openai.OpenAI(base_url=keyed + "/v1", api_key="sk-gateway-one", max_retries=0)
    answer = good.chat.completions.create(
        model="moonshotai/kimi-k2.5", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].finish_reason == "stop"
    bad = openai.OpenAI(base_url=keyed + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(
            model="moonshotai/kimi-k2.5", messages=[{"role": "user", "content": "hi"}]
        )
    body = info.value.body
    assert isinstance(body, dict)
    assert body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_no_credential_in_headers_or_evidence(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLPROOF_SERVE_KEYS", KEYS)
    gw = make_gateway(serve_extra=KEYS_AUTH)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-gateway-one", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="moonshotai/kimi-k2.5", messages=[{"role": "user", "content": "hi"}]
    )
    assert "sk-gateway-one" not in str(dict(raw.headers))
    signed = bedrock_client(gw.url, akid="AKIAGATEWAYTEST0001", secret="gateway-secret-key")
    signed.converse(modelId="moonshotai.kimi-k2.5", messages=QUESTION)
    assert len(read_evidence(gw, 2)) == 2
    evidence_dir = Path(gw.app.state.evidence_dir)
    text = "".join(p.read_text() for p in evidence_dir.iterdir() if p.is_file())
    for secret in ("sk-gateway-one", "gateway-secret-key", "ABSKbedrockapikey0001"):
        assert secret not in text


def test_keys_auth_without_keys_is_a_config_error(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALLPROOF_SERVE_KEYS", raising=False)
    with pytest.raises(ConfigError, match="CALLPROOF_SERVE_KEYS"):
        make_gateway(serve_extra=KEYS_AUTH)


def test_auth_none_only_on_loopback(tmp_path: Path) -> None:
    path = tmp_path / "callproof.toml"
    path.write_text('[serve]\nauth = "none"\n', encoding="utf-8")
    serve = load_serve_config(path)
    check_bind(serve, "127.0.0.1")
    check_bind(serve, "::1")
    with pytest.raises(ConfigError, match="loopback"):
        check_bind(serve, "0.0.0.0")


def test_config_errors_name_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "callproof.toml"
    path.write_text(
        '[serve]\ndrain_s = 5\n\n[serve.models]\n"x" = "route:nope"\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError) as info:
        load_serve_config(path)
    assert str(info.value).startswith(f"{path}:5: serve.models.x: unknown route 'nope'")
    path.write_text("[serve]\ndrain = 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r":2: serve.drain: unknown key"):
        load_serve_config(path)


def test_body_limit_is_the_emulators(make_gateway: GatewayFactory) -> None:
    from callproof.emulator.state import Limits

    gw = make_gateway()
    big = b"x" * (Limits().max_body_bytes + 1)
    bedrock = httpx.post(gw.url + "/model/moonshotai.kimi-k2.5/converse", content=big, timeout=60)
    assert bedrock.status_code == 400
    assert bedrock.json()["message"] == "Input is too long for requested model."
    chat = httpx.post(gw.url + "/v1/chat/completions", content=big, timeout=60)
    assert chat.status_code == 413
    assert chat.json()["error"]["code"] == "request_too_large"
