"""callproof_emulator and callproof_env, run through pytester with real boto3 and openai."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(300)

HELPERS = """
import boto3
import botocore.config
import openai
import pytest

MODEL = "amazon.nova-pro-v1:0"
TOOLS = {"tools": [{"toolSpec": {"name": "get_weather", "description": "weather",
         "inputSchema": {"json": {"type": "object",
                                  "properties": {"city": {"type": "string"}}}}}}]}
FIRST = [{"role": "user", "content": [{"text": "Weather in Tokyo?"}]}]
AFTER_TOOL = FIRST + [
    {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather",
                                                   "input": {"city": "Tokyo"}}}]},
    {"role": "user", "content": [{"toolResult": {"toolUseId": "t1",
                                                 "content": [{"text": "sunny"}]}}]},
]


def bedrock(url=None, read_timeout=10):
    config = botocore.config.Config(read_timeout=read_timeout, connect_timeout=5,
                                    retries={"total_max_attempts": 1, "mode": "standard"})
    kwargs = {"endpoint_url": url} if url else {}
    if url:
        kwargs.update(region_name="us-east-1", aws_access_key_id="x",
                      aws_secret_access_key="x")
    return boto3.client("bedrock-runtime", config=config, **kwargs)


def stream_text(client, messages=FIRST, model=MODEL):
    response = client.converse_stream(modelId=model, messages=messages, toolConfig=TOOLS)
    return [event for event in response["stream"]]
"""


INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


def _write(pytester: pytest.Pytester, body: str) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(helpers=HELPERS, test_inner=body)


def test_fixture_urls_and_healthy_default(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        """
from helpers import *

def test_it(callproof_emulator):
    assert callproof_emulator.url.startswith("http://127.0.0.1:")
    assert callproof_emulator.openai_url == callproof_emulator.url + "/v1"
    assert callproof_emulator.preset == "healthy"
    events = stream_text(bedrock(callproof_emulator.url))
    assert "messageStop" in events[-2] or "metadata" in events[-1]
    [record] = callproof_emulator.requests
    assert record["model"] == MODEL
    assert record["api"] == "bedrock-converse-stream"
    assert record["turn"] == "first"
    assert record["fault"] is None
""",
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["callproof: 1 emulator server(s) started (healthy at http*"])


def test_schedule_times_then_healthy_and_filters(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        """
from helpers import *
import botocore.exceptions

def test_it(callproof_emulator):
    client = bedrock(callproof_emulator.url)
    callproof_emulator.schedule("http_error:429", times=2)
    callproof_emulator.schedule("stream_exception:throttlingException")
    for _ in range(2):
        with pytest.raises(botocore.exceptions.ClientError) as err:
            client.converse(modelId=MODEL, messages=FIRST)
        assert err.value.response["Error"]["Code"] == "ThrottlingException"
    with pytest.raises(botocore.exceptions.EventStreamError) as err:
        stream_text(client)
    assert "throttlingException" in str(err.value)
    stream_text(client)  # healthy again
    faults = [r["fault"] for r in callproof_emulator.requests]
    assert faults == ["http_error:429", "http_error:429",
                      "stream_exception:throttlingException", None]
    apis = [r["api"] for r in callproof_emulator.requests]
    assert apis == ["bedrock-converse"] * 2 + ["bedrock-converse-stream"] * 2

def test_filters(callproof_emulator):
    client = bedrock(callproof_emulator.url)
    callproof_emulator.schedule("empty_response", turn="tool_result", model="amazon.*",
                                api="bedrock-converse")
    client.converse(modelId=MODEL, messages=FIRST, toolConfig=TOOLS)          # first turn
    stream_text(client, AFTER_TOOL)                                            # other api
    out = client.converse(modelId=MODEL, messages=AFTER_TOOL, toolConfig=TOOLS)
    assert out["output"]["message"]["content"] == []
    log = callproof_emulator.requests
    assert [r["turn"] for r in log] == ["first", "tool_result", "tool_result"]
    assert [r["fault"] for r in log] == [None, None, "empty_response"]

def test_isolated(callproof_emulator):
    # the schedule and log of the tests above are gone
    assert callproof_emulator.requests == []
    stream_text(bedrock(callproof_emulator.url))
    assert callproof_emulator.requests[0]["fault"] is None
""",
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["callproof: 1 emulator server(s) started*"])


def test_hang_is_a_timeout_and_every_fault_name_is_accepted(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        """
from helpers import *
import botocore.exceptions

from callproof.emulator.faults import FAULT_NAMES

ARGS = {"N": "3", "TYPE": "modelStreamErrorException", "STATUS": "503",
        "VALUE": "max_tokens", "SECONDS": "0.01", "BYTES_PER_S": "100000"}
# every fault name the emulator knows (docs/faults.md), with an example argument
FAULTS = [name.split(":")[0] + ":" + ARGS[name.split(":")[1]] if ":" in name else name
          for name in FAULT_NAMES]

def test_hang(callproof_emulator):
    callproof_emulator.schedule("hang_no_events")
    # a stream's read timeout comes out of botocore's iterator as urllib3's own error
    import urllib3.exceptions
    timeouts = (botocore.exceptions.ReadTimeoutError, urllib3.exceptions.ReadTimeoutError)
    with pytest.raises(timeouts):
        stream_text(bedrock(callproof_emulator.url, read_timeout=1))
    assert callproof_emulator.requests[0]["fault"] == "hang_no_events"
    assert callproof_emulator.requests[0]["status"] == 200

@pytest.mark.parametrize("fault", FAULTS)
def test_each(callproof_emulator, fault):
    callproof_emulator.schedule(fault)
    try:
        stream_text(bedrock(callproof_emulator.url, read_timeout=1))
    except Exception:
        pass
    assert [r["fault"] for r in callproof_emulator.requests] == [fault]
""",
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    from callproof.emulator.faults import FAULT_NAMES

    result.assert_outcomes(passed=1 + len(FAULT_NAMES))


def test_fault_rate_is_seeded(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        """
from helpers import *

def draws(emulator, **kw):
    emulator.reset()
    emulator.fault_rate("http_error:500", 0.5, **kw)
    client = bedrock(emulator.url)
    for _ in range(20):
        try:
            client.converse(modelId=MODEL, messages=FIRST)
        except Exception:
            pass
    return [r["fault"] for r in emulator.requests]

def test_it(callproof_emulator):
    a = draws(callproof_emulator, seed=7)
    b = draws(callproof_emulator, seed=7)
    c = draws(callproof_emulator, seed=8)
    assert a == b
    assert a != c
    assert 3 <= a.count("http_error:500") <= 17
    assert draws(callproof_emulator, api="openai") == [None] * 20
    callproof_emulator.reset()
    callproof_emulator.fault_rate("empty_response", 1.0, model="mistral.*")
    callproof_emulator.fault_rate("empty_response", 0.0)
    bedrock(callproof_emulator.url).converse(modelId=MODEL, messages=FIRST)
    assert callproof_emulator.requests[0]["fault"] is None
""",
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_callproof_env_points_unmodified_sdks(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        """
import os
from helpers import *

def test_env(callproof_env, monkeypatch):
    assert os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == callproof_env.url
    assert os.environ["OPENAI_BASE_URL"] == callproof_env.openai_url
    assert os.environ["AWS_REGION"] == os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert "AWS_SESSION_TOKEN" not in os.environ
    # unmodified clients: no endpoint, no keys in code
    client = boto3.client("bedrock-runtime")
    client.converse(modelId=MODEL, messages=FIRST)
    chat = openai.OpenAI().chat.completions.create(
        model="moonshotai/kimi-k2.5", messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message is not None
    resp = openai.OpenAI().responses.create(model="moonshotai/kimi-k2.5", input="hi")
    assert resp.output
    assert [r["api"] for r in callproof_env.requests] == [
        "bedrock-converse", "openai-completions", "openai-responses"]

def test_openai_schedule(callproof_env):
    callproof_env.schedule("http_error:429", api="openai-completions")
    client = openai.OpenAI(max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="moonshotai/kimi-k2.5", messages=[{"role": "user", "content": "hi"}])
    log = callproof_env.requests
    assert log[0]["model"] == "moonshotai/kimi-k2.5" and log[0]["fault"] == "http_error:429"

def test_openai_turns_and_the_responses_api(callproof_env):
    client = openai.OpenAI(max_retries=0)
    callproof_env.schedule("empty_response", api="openai", turn="tool_result")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    first = [{"role": "user", "content": "Weather in Tokyo?"}]
    after = first + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Tokyo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    client.chat.completions.create(model="moonshotai/kimi-k2.5", messages=first, tools=tools)
    out = client.chat.completions.create(model="moonshotai/kimi-k2.5", messages=after,
                                         tools=tools)
    assert not out.choices[0].message.content and not out.choices[0].message.tool_calls
    log = callproof_env.requests
    assert [(r["api"], r["turn"], r["fault"]) for r in log] == [
        ("openai-completions", "first", None),
        ("openai-completions", "tool_result", "empty_response"),
    ]

def test_the_fault_header_wins_over_the_schedule(callproof_emulator):
    import httpx
    callproof_emulator.schedule("http_error:500")
    response = httpx.post(
        callproof_emulator.url + "/model/amazon.nova-pro-v1:0/converse",
        json={"messages": FIRST}, headers={"x-callproof-fault": "http_error:418"}, timeout=30)
    assert response.status_code == 418
    response = httpx.post(callproof_emulator.url + "/model/amazon.nova-pro-v1:0/converse",
                          json={"messages": FIRST}, timeout=30)
    assert response.status_code == 500  # the schedule was not spent by the forced request
    assert [(r["fault"], r["scheduled"], r["status"]) for r in callproof_emulator.requests] == [
        ("http_error:418", False, 418), ("http_error:500", True, 500)]

URLS = []

def test_env_is_set_for_the_test_only_first(callproof_env):
    URLS.append(callproof_env.url)

def test_env_is_set_for_the_test_only_then(callproof_emulator):
    assert os.environ.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME") != URLS[0]
    assert os.environ.get("OPENAI_BASE_URL") != URLS[0] + "/v1"
    assert callproof_emulator.url == URLS[0]  # the same shared server
""",
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)


def test_preset_marker_and_option(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        """
import pytest

def test_default(callproof_emulator):
    assert callproof_emulator.preset == "fast"

@pytest.mark.callproof_preset("seed")
def test_marked(callproof_emulator):
    assert callproof_emulator.preset == "seed"

@pytest.mark.callproof_preset("seed")
def test_marked_again(callproof_emulator):
    assert callproof_emulator.preset == "seed"
""",
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--callproof-preset", "fast")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["callproof: 2 emulator server(s) started (fast at *seed at *)"])


def test_preset_from_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "callproof_preset = fast\n")
    pytester.makepyfile(
        "def test_it(callproof_emulator):\n    assert callproof_emulator.preset == 'fast'\n"
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile("def test_it(callproof_emulator):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:callproof")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'callproof_emulator' not found*"])
