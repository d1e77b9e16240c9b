"""The exception tree: retryability follows from the type; context travels with the error."""

from __future__ import annotations

import pytest

from callproof import errors
from callproof.errors import (
    AllAttemptsFailed,
    CallError,
    CallproofError,
    HTTPStatusError,
    StallNoEvents,
    StreamExceptionError,
)


def test_every_public_error_is_a_callproof_error() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, CallproofError), name


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [
        (429, "ThrottlingException", True),
        (503, "ServiceUnavailableException", True),
        (500, "InternalServerException", True),
        (408, "ModelTimeoutException", False),
        (400, "ValidationException", False),
        (403, "AccessDeniedException", False),
        (424, "ModelErrorException", False),
        (502, None, True),
    ],
)
def test_http_retryability(status: int, error_type: str | None, retryable: bool) -> None:
    assert HTTPStatusError("x", status=status, error_type=error_type).retryable is retryable


@pytest.mark.parametrize(
    ("error_type", "retryable"),
    [
        ("throttlingException", True),
        ("modelStreamErrorException", True),
        ("internalServerException", True),
        ("serviceUnavailableException", True),
        ("validationException", False),
    ],
)
def test_stream_exception_retryability(error_type: str, retryable: bool) -> None:
    assert StreamExceptionError("x", error_type=error_type).retryable is retryable


def test_context_fills_only_empty_fields_and_shows_in_str() -> None:
    err = StallNoEvents("no events in 2.0 s", elapsed_s=2.0, limit_s=2.0, target="kimi")
    err.with_context(target="other", model="moonshotai.kimi-k2.5", attempt=3)
    assert err.target == "kimi"
    assert err.model == "moonshotai.kimi-k2.5"
    assert "attempt=3" in str(err)
    assert err.to_dict() == {
        "kind": "StallNoEvents",
        "type": None,
        "message": "no events in 2.0 s",
        "status": None,
    }


def test_all_attempts_failed_is_an_exception_group() -> None:
    group = AllAttemptsFailed(
        "route kimi: all 2 attempts failed", [StallNoEvents("a"), HTTPStatusError("b", status=503)]
    )
    assert isinstance(group, ExceptionGroup)
    assert isinstance(group, CallproofError)
    matched, rest = group.split(StallNoEvents)
    assert matched is not None
    assert len(matched.exceptions) == 1
    assert rest is not None
    assert isinstance(rest.exceptions[0], CallError)


@pytest.mark.parametrize(
    ("status", "error_type", "message", "body", "category"),
    [
        (
            400,
            "context_length_exceeded",
            "maximum context length is 128000 tokens",
            {},
            "context_length",
        ),
        (
            400,
            "ValidationException",
            "Input is too long for requested model.",
            {},
            "context_length",
        ),
        (
            400,
            "ValidationException",
            "The model returned the following errors: prompt is too long: 210000 tokens",
            {},
            "context_length",
        ),
        (400, "content_filter", "filtered", {"innererror": {"code": "x"}}, "content_filter"),
        (
            400,
            None,
            "filtered",
            {"innererror": {"code": "ResponsibleAIPolicyViolation"}},
            "content_filter",
        ),
        (400, "content_policy_violation", "Your request was rejected", {}, "content_filter"),
        (403, None, "Input was flagged", {"metadata": {"reasons": ["hate"]}}, "content_filter"),
        (403, "AccessDeniedException", "You don't have access to the model", {}, "auth"),
        (401, "invalid_api_key", "Incorrect API key provided", {}, "auth"),
        (None, "UnrecognizedClientException", "The security token is invalid", {}, "auth"),
        (400, "ValidationException", "Malformed input request", {}, "validation"),
        (None, "validationException", "in-stream validation error", {}, "validation"),
        (422, None, "Unprocessable", {}, "validation"),
        (400, "ServiceQuotaExceededException", "Too many tokens per day", {}, None),
        (404, "ResourceNotFoundException", "model not found", {}, None),
        (424, "ModelErrorException", "the model failed", {}, None),
        (429, "ThrottlingException", "Too many requests", {}, None),
        (500, "InternalServerException", "context length", {}, None),
    ],
)
def test_provider_refusals_have_a_category(
    status: int | None,
    error_type: str | None,
    message: str,
    body: dict[str, object],
    category: str | None,
) -> None:
    cls = HTTPStatusError if status is not None else StreamExceptionError
    err = cls(message, status=status, error_type=error_type, body=body)
    assert err.category == category
    if category is not None:
        assert category in errors.STOP_CATEGORIES
        assert not err.retryable


def test_errors_without_a_provider_have_no_category() -> None:
    assert StallNoEvents("x").category is None
    assert CallError("x").category is None


def test_route_errors_live_in_the_tree_and_the_old_imports_still_work() -> None:
    from callproof.resilience import CircuitOpenError, EmptyResponseError
    from callproof.resilience.breaker import CircuitOpenError as FromBreaker
    from callproof.resilience.router import EmptyResponseError as FromRouter

    assert CircuitOpenError is FromBreaker is errors.CircuitOpenError
    assert EmptyResponseError is FromRouter is errors.EmptyResponseError
    assert (errors.CircuitOpenError.outcome, errors.CircuitOpenError("x").retryable) == (
        "transport_error",
        False,
    )
    assert (errors.EmptyResponseError.outcome, errors.EmptyResponseError("x").retryable) == (
        "empty_response",
        True,
    )
    assert errors.ToolCallInTextError("x").outcome == "tool_call_in_text"
    for cls in (errors.CircuitOpenError, errors.EmptyResponseError, errors.ToolCallInTextError):
        assert cls.__name__ in errors.__doc__  # drawn in the tree
