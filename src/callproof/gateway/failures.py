"""A failed call as each front reports it, with the provider's own reason.

Before commit the caller gets an HTTP error in the front's own shape; after commit, an in-band
error (Bedrock: a ``modelStreamErrorException`` frame; OpenAI: an SSE ``error`` chunk).

* An upstream HTTP error keeps its status and message. On the Bedrock front its type is the
  upstream's own when that is a Bedrock type, else the Bedrock type of its status; on the
  OpenAI fronts an upstream OpenAI error body passes through as it is. ``Retry-After`` passes
  through.
* A stall (no answer in time) is Bedrock's 408 ``ModelTimeoutException`` / OpenAI's 408
  ``timeout``; anything else with no status is 503 ``ServiceUnavailableException`` /
  ``server_error``, naming every attempt's outcome.
"""

from __future__ import annotations

import math
from typing import Any

from callproof.emulator.bedrock_validation import BedrockError
from callproof.emulator.bedrock_wire import HTTP_ERRORS
from callproof.emulator.openai_decode import OpenAIRequestError
from callproof.errors import AllAttemptsFailed, CallError, ProviderError, StallError
from callproof.resilience.routes import final_error

__all__ = ["as_bedrock_error", "as_openai_error", "deciding_error", "in_band_message"]


def deciding_error(error: BaseException) -> CallError:
    """The error a failed call is reported with (the last attempt sent, for a route)."""
    if isinstance(error, AllAttemptsFailed):
        return final_error(error)
    if isinstance(error, CallError):
        return error
    return CallError(f"{type(error).__name__}: {error}")


def _retry_after(err: CallError) -> dict[str, str]:
    wait = getattr(err, "retry_after_s", None)
    if isinstance(wait, int | float) and wait > 0:
        return {"retry-after": str(max(1, math.ceil(wait)))}
    return {}


def _summary(error: BaseException) -> str:
    if isinstance(error, AllAttemptsFailed):
        return str(error.message) if hasattr(error, "message") else str(error)
    return str(error)


def as_bedrock_error(error: BaseException) -> BedrockError:
    """The Bedrock JSON error for a call that failed before commit."""
    err = deciding_error(error)
    status = err.status
    if isinstance(err, ProviderError) and status is not None and 400 <= status <= 599:
        upstream = err.error_type or ""
        if upstream[:1].isupper() and upstream.endswith("Exception"):
            error_type = upstream
        else:
            fallback = "InternalServerException" if status >= 500 else "ValidationException"
            error_type = HTTP_ERRORS.get(status, (fallback, ""))[0]
        return BedrockError(status, error_type, err.message, headers=_retry_after(err))
    if isinstance(err, StallError):
        return BedrockError(
            408, "ModelTimeoutException", f"{HTTP_ERRORS[408][1]} ({_summary(error)})"
        )
    return BedrockError(503, "ServiceUnavailableException", _summary(error))


def as_openai_error(error: BaseException) -> tuple[OpenAIRequestError, dict[str, Any] | None]:
    """The OpenAI error (and, when the upstream was OpenAI-compatible, its own body)."""
    err = deciding_error(error)
    status = err.status
    if isinstance(err, ProviderError) and status is not None and 400 <= status <= 599:
        body = err.body if isinstance(err.body, dict) else None
        own = body if body is not None and isinstance(body.get("error"), dict) else None
        kind = "invalid_request_error" if status < 500 else "server_error"
        if status == 429:
            kind = "requests"
        exc = OpenAIRequestError(err.message, code=err.error_type, status=status, error_type=kind)
        return exc, own
    if isinstance(err, StallError):
        return OpenAIRequestError(_summary(error), status=408, error_type="timeout"), None
    return OpenAIRequestError(_summary(error), status=503, error_type="server_error"), None


def in_band_message(error: BaseException) -> str:
    """What an in-band error says: the outcome and the upstream's own words."""
    err = deciding_error(error)
    return f"{err.outcome}: {err.message}"
