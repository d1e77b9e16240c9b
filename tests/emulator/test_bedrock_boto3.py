"""The real boto3 client against the running emulator: every event type, fault and error
surfaces as it would from the real Bedrock Runtime."""

from __future__ import annotations

import json
import time
from typing import Any

import botocore.eventstream
import botocore.exceptions
import pytest
import urllib3.exceptions

from callproof.emulator import EmulatorServer, create_app
from callproof.emulator.bedrock_auth import BedrockAuth
from callproof.outcomes import TOOL_MARKUP

from .conftest import FIRST_TURN, TOOL_RESULT_TURN, WEATHER_TOOL_CONFIG, BedrockFactory

KIMI = "moonshotai.kimi-k2.5"
NOVA = "amazon.nova-pro-v1:0"
MISTRAL = "mistral.mistral-large-3-675b-instruct"
READ_TIMEOUTS = (botocore.exceptions.ReadTimeoutError, urllib3.exceptions.ReadTimeoutError)


def stream(
    client: Any, model: str = NOVA, messages: Any = None, **kwargs: Any
) -> list[dict[str, Any]]:
    response = client.converse_stream(
        modelId=model,
        messages=messages if messages is not None else TOOL_RESULT_TURN,
        toolConfig=WEATHER_TOOL_CONFIG,
        **kwargs,
    )
    return list(response["stream"])


def names(events: list[dict[str, Any]]) -> list[str]:
    return [next(iter(e)) for e in events]


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(
        e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e
    )


# -- healthy behaviour ----------------------------------------------------------------------


def test_converse_first_turn_calls_the_tool_with_the_city(
    fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    client = bedrock(fast_server)
    response = client.converse(modelId=NOVA, messages=FIRST_TURN, toolConfig=WEATHER_TOOL_CONFIG)
    assert response["stopReason"] == "tool_use"
    uses = [b["toolUse"] for b in response["output"]["message"]["content"] if "toolUse" in b]
    assert [(u["name"], u["input"]) for u in uses] == [("get_weather", {"city": "Tokyo"})]
    assert (
        response["usage"]["totalTokens"]
        == response["usage"]["inputTokens"] + response["usage"]["outputTokens"]
    )
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]


def test_converse_after_tool_result_answers_with_it(
    fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    response = bedrock(fast_server).converse(
        modelId=MISTRAL, messages=TOOL_RESULT_TURN, toolConfig=WEATHER_TOOL_CONFIG
    )
    assert response["stopReason"] == "end_turn"
    assert response["output"]["message"]["content"] == [
        {"text": "The current temperature in Tokyo is 22°C."}
    ]


def test_kimi_stream_has_every_event_type_in_the_real_order(
    fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    events = stream(bedrock(fast_server), KIMI, FIRST_TURN)
    kinds = names(events)
    assert kinds[0] == "messageStart"
    assert kinds[-2:] == ["messageStop", "metadata"]
    assert {"contentBlockStart", "contentBlockDelta", "contentBlockStop"} <= set(kinds)
    deltas = [e["contentBlockDelta"]["delta"] for e in events if "contentBlockDelta" in e]
    assert any("reasoningContent" in d for d in deltas)
    assert any("toolUse" in d for d in deltas)
    assert any(d.get("text") == "" for d in deltas)  # Kimi's empty text blocks
    starts = [e["contentBlockStart"] for e in events if "contentBlockStart" in e]
    assert starts == [
        {
            "contentBlockIndex": 3,
            "start": {"toolUse": {"toolUseId": "functions.get_weather:0", "name": "get_weather"}},
        }
    ]
    assert events[-2]["messageStop"]["stopReason"] == "tool_use"
    assert set(events[-1]["metadata"]["usage"]) == {"inputTokens", "outputTokens", "totalTokens"}


def test_parallel_tool_calls_for_several_cities(
    fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    messages = [{"role": "user", "content": [{"text": "Weather for Tokyo and Paris?"}]}]
    events = stream(bedrock(fast_server), NOVA, messages)
    starts = [
        e["contentBlockStart"]["start"]["toolUse"] for e in events if "contentBlockStart" in e
    ]
    inputs = [
        json.loads(e["contentBlockDelta"]["delta"]["toolUse"]["input"])
        for e in events
        if "toolUse" in e.get("contentBlockDelta", {}).get("delta", {})
    ]
    assert [s["name"] for s in starts] == ["get_weather", "get_weather"]
    assert len({s["toolUseId"] for s in starts}) == 2
    assert inputs == [{"city": "Tokyo"}, {"city": "Paris"}]


def test_model_id_is_percent_decoded_and_arns_route(
    fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    # boto3 sends amazon.nova-pro-v1%3A0; the answer proves it was decoded to the known id
    assert stream(bedrock(fast_server), NOVA)[-2]["messageStop"]["stopReason"] == "end_turn"


# -- faults ---------------------------------------------------------------------------------


def test_hang_before_headers_times_out_in_the_call(
    fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    client = bedrock(fast_server, read_timeout=0.3, fault="hang_before_headers")
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        client.converse_stream(modelId=NOVA, messages=FIRST_TURN, toolConfig=WEATHER_TOOL_CONFIG)


def test_hang_no_events_gives_headers_then_a_read_timeout(
    fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    client = bedrock(fast_server, read_timeout=0.3, fault="hang_no_events")
    response = client.converse_stream(
        modelId=KIMI, messages=TOOL_RESULT_TURN, toolConfig=WEATHER_TOOL_CONFIG
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    seen = []
    with pytest.raises(READ_TIMEOUTS):
        seen.extend(response["stream"])
    assert seen == []


def test_stall_after_n_events_then_silence(
    fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    client = bedrock(fast_server, read_timeout=0.3, fault="stall_after:3")
    response = client.converse_stream(
        modelId=NOVA, messages=TOOL_RESULT_TURN, toolConfig=WEATHER_TOOL_CONFIG
    )
    seen = []
    with pytest.raises(READ_TIMEOUTS):
        seen.extend(response["stream"])
    assert len(seen) == 3
    assert names(seen)[0] == "messageStart"


@pytest.mark.parametrize("fault", ["close_without_stop", "truncate_frame"])
def test_cut_streams_end_silently_without_message_stop(
    fault: str, fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    events = stream(bedrock(fast_server, fault=fault))
    assert events, "some events arrive first"
    assert "messageStop" not in names(events)
    assert "metadata" not in names(events)


def test_corrupt_crc_raises_checksum_mismatch(
    fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    with pytest.raises(botocore.eventstream.ChecksumMismatch):
        stream(bedrock(fast_server, fault="corrupt_crc"))


@pytest.mark.parametrize(
    "exception_type",
    [
        "modelStreamErrorException",
        "throttlingException",
        "internalServerException",
        "validationException",
        "serviceUnavailableException",
    ],
)
def test_stream_exception_is_an_event_stream_error(
    exception_type: str, fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    seen: list[dict[str, Any]] = []
    client = bedrock(fast_server, fault=f"stream_exception:{exception_type}")
    response = client.converse_stream(
        modelId=NOVA, messages=TOOL_RESULT_TURN, toolConfig=WEATHER_TOOL_CONFIG
    )
    with pytest.raises(botocore.exceptions.EventStreamError) as info:
        seen.extend(response["stream"])
    assert info.value.response["Error"]["Code"] == exception_type
    assert info.value.response["Error"]["Message"]
    assert names(seen)[0] == "messageStart"


HTTP_ERRORS = [
    (400, "ValidationException"),
    (403, "AccessDeniedException"),
    (404, "ResourceNotFoundException"),
    (408, "ModelTimeoutException"),
    (424, "ModelErrorException"),
    (429, "ThrottlingException"),
    (500, "InternalServerException"),
    (503, "ServiceUnavailableException"),
]


@pytest.mark.parametrize(("status", "code"), HTTP_ERRORS)
@pytest.mark.parametrize("operation", ["converse", "converse_stream"])
def test_http_error_is_the_modeled_client_error(
    status: int, code: str, operation: str, fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    client = bedrock(fast_server, fault=f"http_error:{status}")
    call = getattr(client, operation)
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call(modelId=NOVA, messages=FIRST_TURN, toolConfig=WEATHER_TOOL_CONFIG)
    error = info.value.response
    assert error["Error"]["Code"] == code
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert isinstance(info.value, getattr(client.exceptions, code))
    if status == 429:
        assert error["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"


def test_stream_exception_on_converse_is_the_http_twin(
    fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    client = bedrock(fast_server, fault="stream_exception:throttlingException")
    with pytest.raises(client.exceptions.ThrottlingException):
        client.converse(modelId=NOVA, messages=FIRST_TURN)


def test_empty_response_is_a_complete_stream_with_no_content(
    fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    events = stream(bedrock(fast_server, fault="empty_response"), KIMI)
    assert names(events)[-2:] == ["messageStop", "metadata"]
    assert text_of(events) == ""
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert not any("contentBlockStart" in e for e in events)


@pytest.mark.parametrize("value", ["max_tokens", "malformed_model_output", "something_new"])
def test_stop_reason_passes_through_untouched(
    value: str, fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    events = stream(bedrock(fast_server, fault=f"stop_reason:{value}"))
    assert events[-2]["messageStop"]["stopReason"] == value
    response = bedrock(fast_server, fault=f"stop_reason:{value}").converse(
        modelId=NOVA, messages=FIRST_TURN
    )
    assert response["stopReason"] == value


def test_malformed_tool_args_are_not_json(
    fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    events = stream(bedrock(fast_server, fault="malformed_tool_args"), NOVA, FIRST_TURN)
    raw = [
        e["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for e in events
        if "toolUse" in e.get("contentBlockDelta", {}).get("delta", {})
    ]
    assert raw
    with pytest.raises(json.JSONDecodeError):
        json.loads("".join(raw))


def test_tool_call_in_text_is_markup_with_end_turn(
    fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    events = stream(bedrock(fast_server, fault="tool_call_in_text"), KIMI, FIRST_TURN)
    assert TOOL_MARKUP.search(text_of(events))
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert "contentBlockStart" not in names(events)


def test_latency_delays_the_first_event(
    fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    client = bedrock(fast_server, fault="latency:0.3")
    started = time.monotonic()
    events = stream(client)
    assert time.monotonic() - started >= 0.3
    assert names(events)[-1] == "metadata"


@pytest.mark.parametrize("fault", ["hang_no_events", "stall_after:1"])
def test_converse_hangs_too(
    fault: str, fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    client = bedrock(fast_server, read_timeout=0.3, fault=fault)
    with pytest.raises(READ_TIMEOUTS):
        client.converse(modelId=NOVA, messages=FIRST_TURN)


def test_a_bad_fault_header_is_a_validation_error(
    fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    client = bedrock(fast_server, fault="explode")
    with pytest.raises(client.exceptions.ValidationException, match="x-callproof-fault"):
        client.converse(modelId=NOVA, messages=FIRST_TURN)


# -- validation as the real service does it -------------------------------------------------


def test_unknown_model_is_the_real_validation_error(
    fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    client = bedrock(fast_server)
    for call in (client.converse, client.converse_stream):
        with pytest.raises(
            client.exceptions.ValidationException,
            match=r"The provided model identifier is invalid\.$",
        ):
            call(modelId="moonshotai.kimi-k9", messages=FIRST_TURN)


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        (
            [*FIRST_TURN, *FIRST_TURN],
            "A conversation must alternate between user and assistant roles",
        ),
        (
            [
                *TOOL_RESULT_TURN[:2],
                {
                    "role": "user",
                    "content": [{"toolResult": {"toolUseId": "other", "content": [{"text": "x"}]}}],
                },
            ],
            "Expected toolResult blocks at messages.2.content for the following Ids: abc123xyz",
        ),
        (
            [{"role": "user", "content": [{"text": "  "}]}],
            "The text field in the ContentBlock object at messages.0.content.0 is blank",
        ),
        (
            [
                FIRST_TURN[0],
                {
                    "role": "assistant",
                    "content": [{"toolUse": {"toolUseId": "a", "name": "bad name!", "input": {}}}],
                },
                {
                    "role": "user",
                    "content": [{"toolResult": {"toolUseId": "a", "content": [{"text": "x"}]}}],
                },
            ],
            "Value at 'messages.2.member.content.1.member.toolUse.name' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+",
        ),
    ],
)
def test_invalid_conversations_get_the_real_messages(
    messages: Any, message: str, fast_server: EmulatorServer, bedrock: BedrockFactory
) -> None:
    client = bedrock(fast_server)
    with pytest.raises(client.exceptions.ValidationException) as info:
        client.converse(modelId=NOVA, messages=messages, toolConfig=WEATHER_TOOL_CONFIG)
    assert message in info.value.response["Error"]["Message"]


def test_inference_config_bounds(fast_server: EmulatorServer, bedrock: BedrockFactory) -> None:
    client = bedrock(fast_server)
    with pytest.raises(client.exceptions.ValidationException) as info:
        client.converse(
            modelId=NOVA, messages=FIRST_TURN, inferenceConfig={"temperature": 2.0, "topP": 1.5}
        )
    assert info.value.response["Error"]["Message"] == (
        "2 validation errors detected: Value '2.0' at 'inferenceConfig.temperature' failed to "
        "satisfy constraint: Member must have value less than or equal to 1; Value '1.5' at "
        "'inferenceConfig.topP' failed to satisfy constraint: Member must have value less "
        "than or equal to 1"
    )


def test_max_tokens_cuts_the_answer(fast_server: EmulatorServer, bedrock: BedrockFactory) -> None:
    response = bedrock(fast_server).converse(
        modelId=NOVA,
        messages=TOOL_RESULT_TURN,
        toolConfig=WEATHER_TOOL_CONFIG,
        inferenceConfig={"maxTokens": 2},
    )
    assert response["stopReason"] == "max_tokens"
    assert response["output"]["message"]["content"] == [{"text": "The current"}]


# -- auth -----------------------------------------------------------------------------------


def test_bearer_token_over_tls(monkeypatch: pytest.MonkeyPatch, bedrock: BedrockFactory) -> None:
    app = create_app(preset="fast", bedrock_auth=BedrockAuth(api_keys={"test-key"}, required=True))
    with EmulatorServer(app=app, tls=True) as server:
        assert server.url.startswith("https://")
        assert server.ca_path is not None
        monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "test-key")
        client = bedrock(
            server, verify=str(server.ca_path), aws_access_key_id=None, aws_secret_access_key=None
        )
        response = client.converse(
            modelId=NOVA, messages=TOOL_RESULT_TURN, toolConfig=WEATHER_TOOL_CONFIG
        )
        assert "22" in response["output"]["message"]["content"][0]["text"]
        assert "22" in text_of(stream(client))
        client.close()  # an idle TLS connection would delay the server's shutdown
        monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "wrong-key")
        client = bedrock(
            server, verify=str(server.ca_path), aws_access_key_id=None, aws_secret_access_key=None
        )
        with pytest.raises(botocore.exceptions.ClientError) as info:
            client.converse(modelId=NOVA, messages=FIRST_TURN)
        assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"
        client.close()


def test_sigv4_is_verified_against_configured_credentials(bedrock: BedrockFactory) -> None:
    app = create_app(
        preset="fast", bedrock_auth=BedrockAuth(credentials={"AKIDEXAMPLE": "right-secret"})
    )
    with EmulatorServer(app=app) as server:
        good = bedrock(server, aws_secret_access_key="right-secret")
        assert good.converse(modelId=NOVA, messages=FIRST_TURN)["stopReason"] == "end_turn"
        assert names(stream(good))[-1] == "metadata"
        bad = bedrock(server, aws_secret_access_key="wrong-secret")
        with pytest.raises(botocore.exceptions.ClientError) as info:
            bad.converse(modelId=NOVA, messages=FIRST_TURN)
        assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
        stranger = bedrock(server, aws_access_key_id="AKIDOTHER")
        with pytest.raises(botocore.exceptions.ClientError) as info:
            stranger.converse(modelId=NOVA, messages=FIRST_TURN)
        assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_seed_preset_hangs_exactly_where_the_seeded_draws_say(bedrock: BedrockFactory) -> None:
    from callproof.emulator.state import EmulatorState
    from callproof.scenarios import tool_result

    predicted_state = EmulatorState(preset="seed", seed=3)
    predicted = [
        predicted_state.choose_fault("bedrock", KIMI, tool_result().conversation) is not None
        for _ in range(4)
    ]
    assert any(predicted)
    assert not all(predicted)
    observed = []
    with EmulatorServer(preset="seed", seed=3) as server:
        client = bedrock(server, read_timeout=0.5)
        first = stream(client, KIMI, FIRST_TURN)  # a first turn never hangs
        assert names(first)[-1] == "metadata"
        for _ in range(4):
            try:
                events = stream(client, KIMI, TOOL_RESULT_TURN)
            except READ_TIMEOUTS:
                observed.append(True)
            else:
                assert "22" in text_of(events)
                observed.append(False)
    assert observed == predicted
