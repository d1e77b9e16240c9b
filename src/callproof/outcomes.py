"""Outcome names and the classifier.

Every attempt anywhere in callproof (``call``, ``run``, routes) ends in exactly one outcome:

==========================  =================================================================
``ok``                      finished cleanly and met the scenario's expectations
``stall_before_headers``    no response headers within the first-event timeout
``stall_no_events``         headers, then no decoded event within the first-event timeout
``stall_mid_stream``        events, then a gap longer than the idle timeout
``deadline_exceeded``       the total deadline passed
``incomplete_stream``       the stream ended without its terminal event
``empty_response``          a normal stop with no text and no tool call
``abnormal_stop``           a stop reason other than end_turn, tool_use and stop_sequence
``tool_call_malformed``     arguments not JSON, not matching the schema, or an unknown tool
``tool_call_in_text``       tool-call markup in the text in place of a structured call
``http_error``              a non-2xx answer
``stream_exception``        an exception frame or a mid-stream error chunk
``protocol_error``          an undecodable frame, a CRC mismatch, invalid JSON in an event
``transport_error``         refused, reset, TLS
``expectation_failed``      finished cleanly but failed the scenario's check
==========================  =================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jsonschema

from callproof.conversation import Conversation
from callproof.errors import CallError
from callproof.events import Response
from callproof.redact import scrub  # excerpts are cut after scrubbing: never half a secret

__all__ = [
    "NORMAL_STOPS",
    "TOOL_MARKUP",
    "Expectation",
    "LoopProgress",
    "Outcome",
    "Verdict",
    "classify",
]


class Outcome(StrEnum):
    OK = "ok"
    STALL_BEFORE_HEADERS = "stall_before_headers"
    STALL_NO_EVENTS = "stall_no_events"
    STALL_MID_STREAM = "stall_mid_stream"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    INCOMPLETE_STREAM = "incomplete_stream"
    EMPTY_RESPONSE = "empty_response"
    ABNORMAL_STOP = "abnormal_stop"
    TOOL_CALL_MALFORMED = "tool_call_malformed"
    TOOL_CALL_IN_TEXT = "tool_call_in_text"
    HTTP_ERROR = "http_error"
    STREAM_EXCEPTION = "stream_exception"
    PROTOCOL_ERROR = "protocol_error"
    TRANSPORT_ERROR = "transport_error"
    EXPECTATION_FAILED = "expectation_failed"


#: Stop reasons that end a turn normally.
NORMAL_STOPS = frozenset({"end_turn", "tool_use", "stop_sequence"})

#: Tool-call markup models leak into text in place of a structured call (Kimi, Qwen, Hermes).
TOOL_MARKUP = re.compile(
    r"<function=|<\|tool_calls?_section_begin\|>|<\|tool_call_begin\|>|<tool_call>|"
    r"<\|python_tag\|>|\[TOOL_CALLS\]"
)


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a scenario requires of a cleanly finished response."""

    #: A regex the final text must match (searched, case-insensitive).
    text_regex: str | None = None
    #: A tool the model must call.
    tool_name: str | None = None
    #: A JSON Schema the called tool's arguments must satisfy (beyond the tool's own schema).
    arguments_schema: dict[str, Any] | None = None
    #: Stop reasons that count as success; ``None`` means end_turn, tool_use, stop_sequence.
    stop_reasons: tuple[str, ...] | None = None
    #: At least this many tool calls in the one response (``parallel-tools``).
    min_tool_calls: int = 0


@dataclass(frozen=True, slots=True)
class LoopProgress:
    """Where an agent loop stands when its answer is judged (see ``callproof.probe.scenarios``).

    ``calls`` tool calls were made over the loop before this answer, which needs ``min_calls``;
    ``exhausted`` means the loop spent its ``requests`` with no final answer.
    """

    calls: int = 0
    min_calls: int = 0
    requests: int = 0
    exhausted: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """An outcome and a one-line reason a person can read."""

    outcome: Outcome
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.OK


def classify(
    result: Response | BaseException,
    expectation: Expectation | None = None,
    conversation: Conversation | None = None,
    loop: LoopProgress | None = None,
) -> Verdict:
    """Classify a finished response, or the error a call raised, into one outcome.

    This is the only place an outcome is decided: a route's attempts, an agent loop's turns
    (``loop``) and the probe's per-response checks (``Expectation.min_tool_calls``) all come
    here."""
    if isinstance(result, BaseException):
        return _classify_error(result)
    if loop is not None and loop.exhausted:
        return Verdict(
            Outcome.EXPECTATION_FAILED, f"no final answer after {loop.requests} requests"
        )
    verdict = _classify_response(result, expectation or Expectation(), conversation)
    if loop is not None and verdict.passed and loop.calls < loop.min_calls:
        return Verdict(
            Outcome.EXPECTATION_FAILED,
            f"answered after {loop.calls} tool calls; the loop needs {loop.min_calls}",
        )
    return verdict


def _classify_error(exc: BaseException) -> Verdict:
    if isinstance(exc, CallError):
        return Verdict(Outcome(exc.outcome), exc.message)
    return Verdict(Outcome.TRANSPORT_ERROR, f"{type(exc).__name__}: {exc}")


def _classify_response(
    resp: Response, exp: Expectation, conversation: Conversation | None
) -> Verdict:
    allowed_stops = frozenset(exp.stop_reasons) if exp.stop_reasons else NORMAL_STOPS
    markup = TOOL_MARKUP.search(resp.text)
    if markup and not resp.tool_calls:
        return Verdict(Outcome.TOOL_CALL_IN_TEXT, f"tool-call markup {markup.group(0)!r} in text")
    if resp.stop_reason is None:
        return Verdict(Outcome.INCOMPLETE_STREAM, "no stop reason")
    if resp.stop_reason not in allowed_stops and resp.stop_reason not in NORMAL_STOPS:
        return Verdict(Outcome.ABNORMAL_STOP, f"stop reason {resp.raw_stop_reason!r}")
    if bad := _malformed_tool_call(resp, conversation):
        return Verdict(Outcome.TOOL_CALL_MALFORMED, bad)
    if not resp.text.strip() and not resp.tool_calls:
        return Verdict(
            Outcome.EMPTY_RESPONSE, f"stop reason {resp.raw_stop_reason!r} with no text or call"
        )
    if resp.stop_reason not in allowed_stops:
        return Verdict(Outcome.EXPECTATION_FAILED, f"stop reason {resp.stop_reason!r} not allowed")
    if miss := _expectation_missed(resp, exp):
        return Verdict(Outcome.EXPECTATION_FAILED, miss)
    if len(resp.tool_calls) < exp.min_tool_calls:
        return Verdict(
            Outcome.EXPECTATION_FAILED,
            f"expected {exp.min_tool_calls} tool calls in one response, got {len(resp.tool_calls)}",
        )
    return Verdict(Outcome.OK)


def _schema_error(instance: Any, schema: dict[str, Any]) -> str | None:
    try:
        jsonschema.validate(instance, schema)
    except jsonschema.ValidationError as exc:
        return exc.message
    except jsonschema.SchemaError:
        return None  # a bad schema in the tool spec is not the model's fault
    return None


def _malformed_tool_call(resp: Response, conversation: Conversation | None) -> str | None:
    for call in resp.tool_calls:
        if call.arguments is None:
            shown = scrub(call.arguments_raw)[:80]
            return f"arguments of {call.name!r} are not a JSON object: {shown!r}"
        if conversation is None:
            continue
        spec = conversation.tool(call.name)
        if spec is None:
            return f"unknown tool {call.name!r}"
        if err := _schema_error(call.arguments, spec.parameters):
            return f"arguments of {call.name!r} do not match its schema: {err}"
    return None


def _expectation_missed(resp: Response, exp: Expectation) -> str | None:
    if exp.tool_name is not None:
        call = next((c for c in resp.tool_calls if c.name == exp.tool_name), None)
        if call is None:
            names = [c.name for c in resp.tool_calls]
            return f"expected a call to {exp.tool_name!r}, got {names or 'none'}"
        if exp.arguments_schema and (err := _schema_error(call.arguments, exp.arguments_schema)):
            return f"arguments of {call.name!r}: {err}"
    if exp.text_regex is not None and not re.search(exp.text_regex, resp.text, re.IGNORECASE):
        return f"text does not match /{exp.text_regex}/: {scrub(resp.text)[:80]!r}"
    return None
