"""The redaction module, piece by piece: names, URLs, argv, encoded forms, captures that still
replay to the same outcome, logging, stdio, and no instance-metadata probe (issue 10, 1-6)."""

from __future__ import annotations

import base64
import io
import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest

from callproof import redact
from callproof.capture import decode_capture, read_capture
from callproof.client import Client
from callproof.conversation import Conversation, UserMessage
from callproof.endpoints import Signer
from callproof.events import Response
from callproof.redact import REDACTED, Redactor, redact_argv, redact_url, scrub
from callproof.targets import Auth
from callproof.wire.sse import encode_event
from tests.client.conftest import awkward, make_target
from tests.client.streams import bedrock_frames

CONV = Conversation(messages=(UserMessage.text("hi"),))


def planted(prefix: str = "plant") -> str:
    return f"{prefix}{secrets.token_hex(8)}"


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "Ocp-Apim-Subscription-Key",
        "X-Access-Key",
        "X-Api-Key",
        "api-key",
        "X-Amz-Security-Token",
        "x-goog-api-key",
        "Cookie",
        "X-Auth-Token",
        "Proxy-Authorization",
    ],
)
def test_credential_headers_by_name(name: str) -> None:
    value = planted()
    assert Redactor().header(name, value) == REDACTED
    assert value not in scrub(f"the server said {value}")


def test_scheme_kept_and_bearer_in_any_header() -> None:
    value = planted("tok")
    assert Redactor().header("Authorization", f"Bearer {value}") == f"Bearer {REDACTED}"
    assert Redactor().header("X-Echo", f"Bearer {value}x") == f"Bearer {REDACTED}"
    assert Redactor().header("Content-Type", "application/json") == "application/json"


@pytest.mark.parametrize(
    "key",
    [
        "key",
        "sig",
        "code",
        "token",
        "signature",
        "password",
        "secret",
        "api-key",
        "api_key",
        "apikey",
        "access_token",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "subscription-key",
        "client_secret",
    ],
)
def test_query_keys_by_name(key: str) -> None:
    value = planted("q")
    url = redact_url(f"https://gw.example/v1?{key}={value}&api-version=2024-10-21")
    assert value not in url
    assert f"{key}={REDACTED}" in url
    assert "api-version=2024-10-21" in url


def test_url_redaction_is_idempotent_and_stays_a_url() -> None:
    # issue 10 item 12: redacting twice produced "[REDACTED]@host", which urlsplit rejects.
    pw = planted("pw")
    once = redact_url(f"https://user:{pw}@gw.example:8443/v1?key={pw}x")
    twice = redact_url(once)
    assert once == twice
    assert urlsplit(twice).hostname == "gw.example"
    assert urlsplit(twice).port == 8443
    assert pw not in twice


def test_argv_db_url_and_secret_options() -> None:
    pw, key = planted("dbpw"), planted("key")
    argv = redact_argv(
        [
            "callproof",
            "run",
            "--db",
            f"postgresql://u:{pw}@db.local:5432/h",
            "--api-key",
            key,
            f"--token={key}z",
            "-n",
            "3",
        ]
    )
    text = " ".join(argv)
    assert pw not in text
    assert key not in text
    assert "postgresql://REDACTED@db.local:5432/h" in text
    assert argv[-2:] == ["-n", "3"]


# -- forms -----------------------------------------------------------------------------------


def test_raw_json_percent_and_base64_forms() -> None:
    secret = 'pl"ant\\é+/=' + secrets.token_hex(6)
    redact.remember(secret)
    raw = secret.encode()
    texts = [
        f"x {secret} y",
        json.dumps({"echo": secret}),
        json.dumps({"echo": secret}, ensure_ascii=False),
        f"url?echo={quote(secret, safe='')}",
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]
    # inside a larger base64 blob, at each of the three byte alignments
    for pad in (b"a", b"ab", b"abc"):
        texts.append(base64.b64encode(pad + raw + b"tail").decode())
    for text in texts:
        assert secret not in scrub(text)
        assert REDACTED in scrub(text), text


def test_short_values_are_not_remembered() -> None:
    before = redact.secret_count()
    redact.remember("abc")
    assert redact.secret_count() == before
    assert scrub("abc def") == "abc def"


# -- captures --------------------------------------------------------------------------------


async def _capture(tmp_path: Path, api: str, body: bytes, ctype: str, secret: str) -> Response:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": ctype}, content=awkward(body))

    target = make_target(api, headers={"X-Access-Key": secret})
    async with Client(transport=httpx.MockTransport(handler)) as client:
        return await client.complete(target, CONV, capture=tmp_path / "cap.jsonl")


async def test_reflected_secret_in_eventstream_replays_to_the_same_outcome(tmp_path: Path) -> None:
    # issue 10 item 5: a byte-wise replace broke frame lengths: live ok, replay protocol_error.
    secret = planted("refl")
    body = b"".join(bedrock_frames(f"The key is {secret} and 22 degrees"))
    live = await _capture(
        tmp_path, "bedrock-converse-stream", body, "application/vnd.amazon.eventstream", secret
    )
    assert secret in live.text  # the live answer is the caller's to keep
    text = (tmp_path / "cap.jsonl").read_text()
    assert secret not in text
    result, _ = decode_capture(tmp_path / "cap.jsonl")
    assert isinstance(result, Response)
    assert result.stop_reason == live.stop_reason == "end_turn"
    assert result.text == live.text.replace(secret, REDACTED)


async def test_a_capture_without_secrets_keeps_the_reads_exactly(tmp_path: Path) -> None:
    body = b"".join(bedrock_frames("nothing to hide here at all"))
    await _capture(
        tmp_path,
        "bedrock-converse-stream",
        body,
        "application/vnd.amazon.eventstream",
        planted("hdr"),
    )
    chunks = read_capture(tmp_path / "cap.jsonl").chunks
    sizes = [len(data) for _, data in chunks]
    expected = []
    pos, size = 0, 1
    while pos < len(body):  # awkward(): 1..7-byte pieces
        expected.append(min(size, len(body) - pos))
        pos += size
        size = size % 7 + 1
    assert sizes == expected
    assert b"".join(data for _, data in chunks) == body


def _chat(*pieces: str) -> bytes:
    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        return encode_event(
            json.dumps(
                {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "model": "m",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )
        )

    return (
        b"".join(chunk({"content": p}) for p in pieces) + chunk({}, "stop") + encode_event("[DONE]")
    )


async def test_secret_split_across_reads_and_events_never_reaches_the_capture(
    tmp_path: Path,
) -> None:
    secret = planted("split")
    a, b, c = secret[:5], secret[5:11], secret[11:]
    body = _chat("before ", a, b, c + " after")
    live = await _capture(tmp_path, "openai-completions", body, "text/event-stream", secret)
    assert secret in live.text
    text = (tmp_path / "cap.jsonl").read_text()
    assert secret not in text
    joined = b"".join(d for _, d in read_capture(tmp_path / "cap.jsonl").chunks)
    assert secret.encode() not in joined
    result, _ = decode_capture(tmp_path / "cap.jsonl")
    assert isinstance(result, Response)
    assert result.text == f"before {REDACTED} after"
    assert result.stop_reason == "end_turn"


async def test_base64_and_percent_reflections_are_scrubbed_in_captures(tmp_path: Path) -> None:
    secret = planted("enc+/")
    encoded = [base64.b64encode(secret.encode()).decode(), quote(secret, safe="")]
    body = _chat(f"b64 {encoded[0]} pct {encoded[1]}")
    await _capture(tmp_path, "openai-completions", body, "text/event-stream", secret)
    text = (tmp_path / "cap.jsonl").read_text()
    for form in encoded:
        assert form not in text
    joined = b"".join(d for _, d in read_capture(tmp_path / "cap.jsonl").chunks)
    for form in encoded:
        assert form.encode() not in joined


# -- logging and stdio -----------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    names = ["", "httpx", "httpcore", "botocore"]
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).filters)) for n in names}
    handlers = {id(h): list(h.filters) for h in logging.getLogger().handlers}
    yield
    for n, (level, filters) in saved.items():
        logging.getLogger(n).setLevel(level)
        logging.getLogger(n).filters = filters
    for h in logging.getLogger().handlers:
        if id(h) in handlers:
            h.filters = handlers[id(h)]


def test_wire_loggers_held_at_warning_unless_trace(restore_logging: None) -> None:
    redact.configure_logging("DEBUG")
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert not logging.getLogger("botocore.auth").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("callproof.client").isEnabledFor(logging.DEBUG)
    redact.configure_logging("TRACE")
    assert logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("botocore.auth").isEnabledFor(logging.DEBUG)


def test_the_filter_redacts_httpx_request_lines_and_known_secrets() -> None:
    pw, token = planted("pw"), planted("tok")
    redact.remember(token)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(redact.RedactingFilter())
    logger = logging.getLogger("tests.security.redact")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info(
            'HTTP Request: %s %s "%s"',
            "POST",
            httpx.URL(f"https://u:{pw}@gw.example/v1?sig={pw}s"),
            "HTTP/1.1 200 OK",
        )
        logger.info("canonical request: x-amz-security-token:%s", token)
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert pw not in out
    assert token not in out
    assert "gw.example" in out


def test_redacting_stream() -> None:
    secret = planted("out")
    redact.remember(secret)
    inner = io.StringIO()
    stream = redact.RedactingStream(inner)
    stream.write(f"echo: {secret}\n")
    assert inner.getvalue() == f"echo: {REDACTED}\n"


# -- no instance-metadata probe --------------------------------------------------------------


def test_no_imds_probe_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 10 item 6: "no credentials, no network" probed 169.254.169.254.
    import botocore.utils

    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED", raising=False)
    monkeypatch.delenv("CALLPROOF_AWS_IMDS", raising=False)
    calls: list[str] = []

    def fetch(self: object, *args: object, **kwargs: object) -> dict[str, str]:
        calls.append("imds")
        return {}

    monkeypatch.setattr(
        botocore.utils.InstanceMetadataFetcher, "retrieve_iam_role_credentials", fetch
    )
    assert Signer().has_credentials(None) is False
    assert calls == []
    # The counterfactual: when asked for, the instance provider is consulted.
    assert Signer(imds=True).has_credentials(None) is False
    assert calls == ["imds"]


def test_imds_env_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLPROOF_AWS_IMDS", "1")
    assert Signer().imds is True
    monkeypatch.setenv("CALLPROOF_AWS_IMDS", "0")
    assert Signer().imds is False


async def test_sigv4_credentials_are_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    key_id, secret_key, token = "AKIA" + secrets.token_hex(8).upper(), planted("sk"), planted("st")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    target = make_target("bedrock-converse-stream", auth=Auth(kind="sigv4"))
    async with Client(transport=httpx.MockTransport(lambda r: httpx.Response(500))) as client:
        client.build(target, CONV)
    for value in (key_id, secret_key, token):
        assert value not in scrub(f"reflected: {value}")


async def test_sigv4_requests_do_not_grow_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each SigV4 signature is new; remembering it would make every scrub slower per request.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA" + secrets.token_hex(8).upper())
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", planted("sk"))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    body = b"".join(bedrock_frames("fine"))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "application/vnd.amazon.eventstream"}, content=body
        )

    target = make_target("bedrock-converse-stream", auth=Auth(kind="sigv4"))
    async with Client(transport=httpx.MockTransport(handler)) as client:
        await client.complete(target, CONV, capture=tmp_path / "first.jsonl")
        after_one = redact.secret_count()
        for i in range(20):
            conv = Conversation(messages=(UserMessage.text(f"hi {i}"),))
            await client.complete(target, conv, capture=tmp_path / f"{i}.jsonl")
    assert redact.secret_count() == after_one
    assert "Signature=[REDACTED]" not in (tmp_path / "0.jsonl").read_text()
    assert "AWS4-HMAC-SHA256 [REDACTED]" in (tmp_path / "0.jsonl").read_text()


def test_call_v_on_a_narrow_terminal_never_prints_a_reflected_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A table folds a long cell across lines, where the stdout filter cannot see it whole.
    from click.testing import CliRunner

    from callproof.cli import cli
    from tests.security.echo import echo_server

    key = planted("narrowkey") + secrets.token_hex(10)
    monkeypatch.setenv("COLUMNS", "40")
    with echo_server() as url:
        result = CliRunner().invoke(
            cli,
            [
                "call",
                "--api",
                "openai-completions",
                "--model",
                "m",
                "--endpoint",
                url + "/v1",
                "--header",
                f"X-Access-Key:{key}",
                "-v",
            ],
            catch_exceptions=False,
        )
    assert "decoded events" in result.output
    flat = result.output.replace("\n", "").replace("│", "").replace(" ", "")
    # Not even the start of it: a folded or cut cell ("narrowkey5f3a…") gives a prefix away.
    for form in (key, base64.b64encode(key.encode()).decode().rstrip("=")):
        pieces = {form[i : i + 16] for i in range(len(form) - 15)}
        assert not any(piece in flat for piece in pieces), form


def test_a_user_name_alone_is_not_a_secret() -> None:
    redact_url("postgresql://postgres@127.0.0.1:5432/callproof")
    redact_url("https://deploy@git.example/repo")
    assert scrub("postgresql and postgres and deploy") == "postgresql and postgres and deploy"
    token = planted("usertoken") + secrets.token_hex(4)
    redact_url(f"https://{token}@gw.example/v1")
    assert token not in scrub(f"echo {token}")


async def test_span_content_and_html_never_carry_a_known_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import html

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from callproof.telemetry.tracing import disable_tracing, enable_tracing

    key = planted("span<&>") + secrets.token_hex(6)
    monkeypatch.setenv("SPAN_KEY", key)
    body = _chat(f"your key is {key}")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    enable_tracing(provider, capture_content=True)
    try:
        target = make_target("openai-completions", auth=Auth(kind="bearer", env="SPAN_KEY"))
        async with Client(transport=httpx.MockTransport(handler)) as client:
            response = await client.complete(target, CONV)
    finally:
        disable_tracing()
    assert key in response.text  # the caller's own answer is untouched
    spans = exporter.get_finished_spans()
    assert spans
    text = repr([dict(s.attributes or {}) for s in spans])
    assert "your key is" in text
    assert key not in text
    assert html.escape(key) not in scrub(f"<td>{html.escape(key)}</td>")  # report.html
