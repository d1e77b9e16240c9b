"""The public gateway crash-test catalogue (failoverbench's 16 scenarios), through the real
gateway with unmodified SDKs, on both fronts (Bedrock: boto3 converse_stream; OpenAI: the
openai SDK's streamed chat), streaming and buffered (``x-callproof-mode: buffered``).

Route ``kimi`` is [Kimi on Bedrock, Kimi on OpenRouter] on the emulator; the primary's faults
are forced with ``x-callproof-fault`` (forwarded to the first upstream attempt) or a fault
plan. Scenarios the emulator has no fault for (429 without Retry-After, a stream without
[DONE], context length, content filter, a fallback rejecting a prefill) use the fake provider
of ``fake_provider.py``.

"Pass" means: a complete answer, or the provider's own refusal, or (streaming, after the first
content reached the caller) an in-band error; never a hang and never a clean stop on a
truncated answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from callproof.gateway.server import GatewayServer
from tests.gateway.clients import Result, call
from tests.gateway.conftest import GatewayFactory, read_evidence
from tests.gateway.fake_provider import PREFILL_MESSAGE

PRIMARY = "bedrock-kimi-k2.5"
FALLBACK = "openrouter-kimi-k2.5"
FRONTS = ["bedrock", "openai"]
MODES = ["stream", "buffered"]

FAKE = """
[providers.fake]
api = "openai-completions"
endpoint = "{url}/v1"

[targets.fake-no-done]
provider = "fake"
model = "no-done"

[targets.fake-context]
provider = "fake"
model = "context-length"

[targets.fake-filter]
provider = "fake"
model = "content-filter"

[targets.fake-no-prefill]
provider = "fake"
model = "no-prefill"

[targets.fake-throttle]
provider = "fake"
model = "throttle"

[routes.nodone]
targets = ["fake-no-done", "openrouter-kimi-k2.5"]
hedge = "off"

[routes.ctx]
targets = ["fake-context", "openrouter-kimi-k2.5"]
hedge = "off"

[routes.filter]
targets = ["fake-filter", "openrouter-kimi-k2.5"]
hedge = "off"

[routes.prefill]
targets = ["bedrock-kimi-k2.5", "fake-no-prefill"]
hedge = "off"

[routes.throttle]
targets = ["fake-throttle", "openrouter-kimi-k2.5"]
hedge = "off"
"""


def _model(front: str) -> str:
    return "moonshotai.kimi-k2.5" if front == "bedrock" else "moonshotai/kimi-k2.5"


def _mode(mode: str) -> str | None:
    return "buffered" if mode == "buffered" else None


def _ok(result: Result, *, served_by: str | None = None, attempts: int | None = None) -> None:
    assert result.kind == "ok", result
    assert "22" in result.text, result
    assert result.stop in ("end_turn", "stop"), result
    if served_by is not None:
        assert result.headers["x-callproof-served-by"] == served_by, result.headers
    if attempts is not None:
        assert result.headers["x-callproof-attempts"] == str(attempts), result.headers


def _mid_stream(result: Result, mode: str) -> None:
    """A failure after commit: in-band when streaming, invisible (the fallback) when buffered."""
    if mode == "buffered":
        _ok(result, served_by=FALLBACK, attempts=2)
    else:
        assert result.kind == "in_band", result
        assert result.headers["x-callproof-served-by"] == PRIMARY
        assert "22" not in result.partial, "the truncated answer must not pass as complete"


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[GatewayFactory, str, str, str], None]


def _retry_after_429(make: GatewayFactory, fake: str, front: str, mode: str) -> None:
    gw = make()
    # the emulator's 429 carries Retry-After: 1 (within retry.wait_retry_after_max_s = 2)
    r = call(gw.url, front, model=_model(front), mode=_mode(mode), fault="http_error:429")
    _ok(r, served_by=PRIMARY, attempts=2)
    assert r.elapsed_s >= 0.9, "the Retry-After was waited out"


def _no_retry_after_429(make: GatewayFactory, fake: str, front: str, mode: str) -> None:
    gw = make(extra=FAKE.format(url=fake))
    r = call(gw.url, front, model="throttle", mode=_mode(mode))
    _ok(r, served_by=FALLBACK, attempts=2)


def _500_once(make: GatewayFactory, fake: str, front: str, mode: str) -> None:
    gw = make()
    r = call(gw.url, front, model=_model(front), mode=_mode(mode), fault="http_error:500")
    _ok(r, attempts=2)


PERSISTENT_503 = """
[[rules]]
model = "moonshotai.kimi-k2.5"
api = "bedrock"
fault = "http_error:503"
probability = 1.0
"""


def _503_persistent(make: GatewayFactory, fake: str, front: str, mode: str) -> None:
    gw = make(plan=PERSISTENT_503)
    for _ in range(3):
        r = call(gw.url, front, model=_model(front), mode=_mode(mode))
        _ok(r, served_by=FALLBACK)


def _reset_before_headers(make: GatewayFactory, fake: str, front: str, mode: str) -> None:
    gw = make()
    r = call(gw.url, front, model=_model(front), mode=_mode(mode), fault="reset_before_headers")
    _ok(r, served_by=FALLBACK, attempts=2)


def _no_response(make: GatewayFactory, fake: str, front: str, mode: str) -> None:
    gw = make()
    r = call(gw.url, front, model=_model(front), mode=_mode(mode), fault="hang_before_headers")
    _ok(r, served_by=FALLBACK, attempts=2)


def _slow_first_token(make: GatewayFactory, fake: str, front: str, mode: str) -> None:
    gw = make()
    # 0.5 s more before the first event (the fast preset's is instant): inside the 2 s
    # first-event timeout, so no give-up and no retry
    r = call(gw.url, front, model=_model(front), mode=_mode(mode), fault="latency:0.5")
    _ok(r, served_by=PRIMARY, attempts=1)


#: Kimi on Bedrock streaming at 40 tokens/s, so its first content reaches the caller before a
#: mid-stream fault (the fast preset sends a whole answer in one write).
PACED = """
[[models]]
id = "moonshotai.kimi-k2.5"
flavour = "bedrock"
thinking = true
quirks = ["kimi_tool_ids", "empty_text_blocks"]
first_event_s = 0.05
tokens_per_s = 40
jitter = 0.0
"""


def _stream_cut(make: GatewayFactory, fake: str, front: str, mode: str) -> None:
    gw = make(plan=PACED)
    r = call(gw.url, front, model=_model(front), mode=_mode(mode), fault="reset_mid_body")
    _mid_stream(r, mode)


def _stream_stall(make: GatewayFactory, fake: str, front: str, mode: str) -> None:
    gw = make(plan=PACED)
    r = call(gw.url, front, model=_model(front), mode=_mode(mode), fault="stall_after:4")
    _mid_stream(r, mode)
    if mode == "stream":
        # the idle timeout is 1 s: the error comes within it (plus generous slack for load)
        assert r.elapsed_s < 15


def _malformed_chunk(make: GatewayFactory, fake: str, front: str, mode: str) -> None:
    gw = make(plan=PACED)
    r = call(gw.url, front, model=_model(front), mode=_mode(mode), fault="corrupt_crc")
    _mid_stream(r, mode)


def _missing_done(make: GatewayFactory, fake: str, front: str, mode: str) -> None:
    gw = make(extra=FAKE.format(url=fake))
    r = call(gw.url, front, model="nodone", mode=_mode(mode))
    _ok(r, served_by="fake-no-done", attempts=1)
    assert r.usage is not None
    tokens = r.usage.get("outputTokens", r.usage.get("completion_tokens"))
    assert tokens == 9, r.usage


def _refusal(route: str, words: str, code: str) -> Callable[[GatewayFactory, str, str, str], None]:
    def run(make: GatewayFactory, fake: str, front: str, mode: str) -> None:
        gw = make(extra=FAKE.format(url=fake))
        r = call(gw.url, front, model=route, mode=_mode(mode))
        assert r.kind == "error", r
        assert r.status == 400
        assert words in r.message, r
        if front == "bedrock":
            assert r.code == "ValidationException"
        else:
            assert r.code == code
        assert r.headers["x-callproof-attempts"] == "1", "no retry, no fall-over"

    return run


def _prefill_rejected(make: GatewayFactory, fake: str, front: str, mode: str) -> None:
    gw = make(extra=FAKE.format(url=fake))
    r = call(gw.url, front, model="prefill", mode=_mode(mode), fault="http_error:500", prefill=True)
    assert r.kind == "error", r
    assert r.status == 400
    assert PREFILL_MESSAGE in r.message
    assert r.headers["x-callproof-attempts"] == "2"


def _flapping(make: GatewayFactory, fake: str, front: str, mode: str) -> None:
    gw = make()
    served = []
    for i in range(8):
        fault = "http_error:503" if i % 2 == 0 else None
        r = call(gw.url, front, model=_model(front), mode=_mode(mode), fault=fault)
        _ok(r)
        served.append(r.headers["x-callproof-served-by"])
    assert served[-1] == PRIMARY, served  # the primary that answers keeps getting traffic
    assert served.count(PRIMARY) >= 3, served


def _accounting(make: GatewayFactory, fake: str, front: str, mode: str) -> None:
    gw = make()
    r = call(gw.url, front, model=_model(front), mode=_mode(mode), fault="http_error:500")
    _ok(r, served_by=FALLBACK, attempts=2)
    if front == "openai":
        assert r.model == "moonshotai/kimi-k2.5"  # the serving target's model
    record = read_evidence(gw)[-1]
    assert record["served_by"] == FALLBACK
    assert record["requests"] == 2
    assert [a["outcome"] for a in record["route_attempts"]] == ["http_error", "ok"]
    assert r.usage is not None
    tokens = r.usage.get("outputTokens", r.usage.get("completion_tokens"))
    assert tokens == record["usage"]["output_tokens"], "only the serving attempt's usage"


CASES = [
    Case("429-retry-after", _retry_after_429),
    Case("429-no-retry-after", _no_retry_after_429),
    Case("500-once", _500_once),
    Case("503-persistent", _503_persistent),
    Case("reset-before-headers", _reset_before_headers),
    Case("no-response", _no_response),
    Case("slow-first-token", _slow_first_token),
    Case("stream-cut", _stream_cut),
    Case("stream-stall", _stream_stall),
    Case("malformed-chunk", _malformed_chunk),
    Case("missing-done", _missing_done),
    Case("context-length", _refusal("ctx", "maximum context length", "context_length_exceeded")),
    Case("content-filter", _refusal("filter", "content management policy", "content_filter")),
    Case("fallback-rejects-prefill", _prefill_rejected),
    Case("flapping-primary", _flapping),
    Case("failover-accounting", _accounting),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_catalogue(
    case: Case, front: str, mode: str, make_gateway: GatewayFactory, fake_provider: str
) -> None:
    case.run(make_gateway, fake_provider, front, mode)


def test_gateway_type_is_real(gateway: GatewayServer) -> None:
    assert gateway.url.startswith("http://127.0.0.1:")
