"""The outcome classifier: one outcome per attempt, named the same everywhere."""

from __future__ import annotations

import pytest

from callproof import errors
from callproof.events import STOP_REASONS, Response, ToolCall, normalise_stop_reason
from callproof.outcomes import Expectation, LoopProgress, Outcome, Verdict, classify
from callproof.scenarios import BUILTIN, tool_call, tool_result

ALL_OUTCOMES = {
    "ok",
    "stall_before_headers",
    "stall_no_events",
    "stall_mid_stream",
    "deadline_exceeded",
    "incomplete_stream",
    "empty_response",
    "abnormal_stop",
    "tool_call_malformed",
    "tool_call_in_text",
    "http_error",
    "stream_exception",
    "protocol_error",
    "transport_error",
    "expectation_failed",
}


def resp(
    text: str = "", stop: str | None = "end_turn", calls: list[ToolCall] | None = None
) -> Response:
    return Response(
        text=text,
        stop_reason=normalise_stop_reason(stop) if stop else None,
        raw_stop_reason=stop,
        tool_calls=calls or [],
    )


def test_outcome_names_are_the_contract() -> None:
    assert {o.value for o in Outcome} == ALL_OUTCOMES


def test_stop_reasons_are_bedrocks_nine_plus_unknown() -> None:
    assert len(STOP_REASONS) == 10
    assert normalise_stop_reason("malformed_model_output") == "malformed_model_output"
    assert normalise_stop_reason("brand_new_reason") == "unknown"
    assert normalise_stop_reason(None) == "unknown"


def test_seed_answer_passes_tool_result() -> None:
    s = tool_result()
    v = classify(resp("The current temperature in Tokyo is 22°C."), s.expectation, s.conversation)
    assert v.outcome is Outcome.OK
    assert v.passed


def test_answer_without_22_fails_expectation() -> None:
    s = tool_result()
    v = classify(resp("It is sunny in Tokyo."), s.expectation, s.conversation)
    assert v.outcome is Outcome.EXPECTATION_FAILED
    assert "22" in v.detail


@pytest.mark.parametrize("stop", ["end_turn", "stop_sequence"])
def test_empty_normal_stop_is_empty_response(stop: str) -> None:
    v = classify(resp("  ", stop), tool_result().expectation)
    assert v.outcome is Outcome.EMPTY_RESPONSE


@pytest.mark.parametrize(
    "stop",
    [
        "max_tokens",
        "guardrail_intervened",
        "content_filtered",
        "malformed_model_output",
        "malformed_tool_use",
        "model_context_window_exceeded",
        "something_new",
    ],
)
def test_abnormal_stops_keep_the_raw_value(stop: str) -> None:
    v = classify(resp("partial 22", stop), tool_result().expectation)
    assert v.outcome is Outcome.ABNORMAL_STOP
    assert stop in v.detail


def test_abnormal_stop_allowed_by_expectation_passes() -> None:
    v = classify(resp("22 degrees", "max_tokens"), Expectation(stop_reasons=("max_tokens",)))
    assert v.outcome is Outcome.OK


def test_missing_stop_is_incomplete() -> None:
    assert classify(resp("22", None)).outcome is Outcome.INCOMPLETE_STREAM


@pytest.mark.parametrize(
    "text",
    [
        "<function=get_weather><parameter=city>Tokyo</parameter></function>",
        "<|tool_calls_section_begin|> <|tool_call_begin|> functions.get_weather:0",
        '<tool_call>{"name": "get_weather"}</tool_call>',
    ],
)
def test_tool_markup_in_text_is_named(text: str) -> None:
    s = tool_call()
    v = classify(resp(text, "end_turn"), s.expectation, s.conversation)
    assert v.outcome is Outcome.TOOL_CALL_IN_TEXT


def test_well_formed_tool_call_passes_tool_call() -> None:
    s = tool_call()
    call = ToolCall.from_raw("functions.get_weather:0", "get_weather", '{"city": "Tokyo"}')
    v = classify(resp("", "tool_use", [call]), s.expectation, s.conversation)
    assert v.outcome is Outcome.OK


@pytest.mark.parametrize(
    ("name", "raw", "why"),
    [
        ("get_weather", '{"city": "Tok', "not a JSON object"),
        ("get_weather", "[1, 2]", "not a JSON object"),
        ("get_weather", '{"city": 7}', "schema"),
        ("get_weather", "{}", "schema"),
        ("launch_rockets", '{"city": "Tokyo"}', "unknown tool"),
    ],
)
def test_malformed_tool_calls(name: str, raw: str, why: str) -> None:
    s = tool_call()
    v = classify(
        resp("", "tool_use", [ToolCall.from_raw("id1", name, raw)]), s.expectation, s.conversation
    )
    assert v.outcome is Outcome.TOOL_CALL_MALFORMED
    assert why in v.detail


def test_empty_arguments_string_means_no_arguments() -> None:
    call = ToolCall.from_raw("id", "noop", "")
    assert call.arguments == {}


def test_text_instead_of_call_fails_tool_call_expectation() -> None:
    s = tool_call()
    v = classify(resp("Let me check the weather.", "end_turn"), s.expectation, s.conversation)
    assert v.outcome is Outcome.EXPECTATION_FAILED
    assert "get_weather" in v.detail


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (errors.StallBeforeHeaders("x"), "stall_before_headers"),
        (errors.StallNoEvents("x"), "stall_no_events"),
        (errors.StallMidStream("x"), "stall_mid_stream"),
        (errors.DeadlineExceeded("x"), "deadline_exceeded"),
        (errors.IncompleteStreamError("x"), "incomplete_stream"),
        (errors.HTTPStatusError("x", status=429), "http_error"),
        (errors.StreamExceptionError("x", error_type="throttlingException"), "stream_exception"),
        (errors.ChecksumMismatch("x", expected=1, calculated=2), "protocol_error"),
        (errors.InvalidEventError("x"), "protocol_error"),
        (errors.TransportError("x"), "transport_error"),
        (RuntimeError("boom"), "transport_error"),
    ],
)
def test_errors_map_to_outcomes(exc: BaseException, outcome: str) -> None:
    assert classify(exc).outcome == outcome


def test_builtin_scenarios_are_the_seeds() -> None:
    assert set(BUILTIN) == {"tool-result", "tool-call"}
    conv = tool_result().conversation
    assert [m.role for m in conv.messages] == ["user", "assistant", "user"]
    assert conv.settings.max_tokens == 100
    assert conv.messages[1].tool_calls[0].arguments == {"city": "Tokyo"}


def _weather(city: str) -> ToolCall:
    return ToolCall.from_raw(f"c-{city}", "get_weather", f'{{"city": "{city}"}}')


def test_min_tool_calls_is_judged_by_classify() -> None:
    exp = Expectation(tool_name="get_weather", min_tool_calls=2)
    one = classify(resp(stop="tool_use", calls=[_weather("Tokyo")]), exp)
    assert one == Verdict(
        Outcome.EXPECTATION_FAILED, "expected 2 tool calls in one response, got 1"
    )
    two = resp(stop="tool_use", calls=[_weather("Tokyo"), _weather("Paris")])
    assert classify(two, exp).passed
    # a failure found first keeps its own outcome
    assert classify(resp(stop="max_tokens"), exp).outcome is Outcome.ABNORMAL_STOP


def test_an_agent_loops_verdict_comes_from_classify() -> None:
    answer = resp("It is 22°C in Tokyo.")
    early = classify(answer, loop=LoopProgress(calls=0, min_calls=1, requests=1))
    assert early == Verdict(
        Outcome.EXPECTATION_FAILED, "answered after 0 tool calls; the loop needs 1"
    )
    assert classify(answer, loop=LoopProgress(calls=1, min_calls=1, requests=2)).passed
    spent = classify(answer, loop=LoopProgress(calls=6, requests=6, exhausted=True))
    assert spent == Verdict(Outcome.EXPECTATION_FAILED, "no final answer after 6 requests")
    # an answer that fails on its own keeps its outcome, the loop's count comes after
    empty = classify(resp(""), loop=LoopProgress(calls=0, min_calls=1))
    assert empty.outcome is Outcome.EMPTY_RESPONSE
