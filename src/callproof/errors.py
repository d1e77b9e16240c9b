"""The one exception tree of callproof.

Errors are classified by cause, so that whether to retry follows from the type and the outcome
name follows from the class (see :mod:`callproof.outcomes`)::

    CallproofError                      every error callproof raises
    ├── ConfigError                     bad configuration or usage (CLI exit code 2)
    ├── RecordError                     a JSON object that is not an attempt record
    └── CallError                       one model call failed (target, model, request id, attempt)
        ├── TransportError              refused, reset, TLS, DNS            -> transport_error
        ├── StallError                  a watchdog fired (an abstract group)
        │   ├── StallBeforeHeaders      no response headers in time         -> stall_before_headers
        │   ├── StallNoEvents           headers, then no decoded event      -> stall_no_events
        │   ├── StallMidStream          events, then a gap over the idle timeout
        │   └── DeadlineExceeded        the total deadline passed           -> deadline_exceeded
        ├── ProtocolError               undecodable bytes (a library or wire bug) -> protocol_error
        │   ├── FrameError              AWS eventstream framing
        │   │   ├── ChecksumMismatch    prelude or message CRC wrong
        │   │   ├── InvalidLength       lengths over botocore's limits or inconsistent
        │   │   ├── DuplicateHeader     a header name twice in one frame
        │   │   └── IncompleteFrame     the stream closed with a frame still open
        │   └── InvalidEventError       a frame we could not parse (bad JSON, bad shape)
        ├── IncompleteStreamError       no terminal event         -> incomplete_stream
        ├── CircuitOpenError            a route skipped a target: circuit open, nothing sent
        │                                                         -> transport_error
        ├── EmptyResponseError          judged by a route: a normal stop, no text, no call
        │                                                         -> empty_response
        ├── ToolCallInTextError         judged by a buffered route: tool-call markup in text
        │                                                         -> tool_call_in_text
        └── ProviderError               the provider said no (an abstract group)
            ├── HTTPStatusError         a non-2xx answer          -> http_error
            └── StreamExceptionError    in-stream exception/error -> stream_exception

``AllAttemptsFailed`` is an :class:`ExceptionGroup` of :class:`CallError` raised by a route when
every candidate failed; it is also a :class:`CallproofError`.

A provider's refusal also has a ``category`` (:attr:`CallError.category`), read from its
status, its error type (Bedrock's ``x-amzn-ErrorType``, OpenAI's ``error.code``/``type``) and
its words: ``context_length`` (the input does not fit the model), ``content_filter`` (a
content policy refused it), ``auth`` (401/403, access denied), ``validation`` (any other
400/422 the request itself caused). None of the four is cured by asking again
(:data:`STOP_CATEGORIES`); a route falls over on them only when it says so (``fallback_on``).

Lower-layer errors (httpx, botocore, json) are translated at one boundary with ``raise ... from``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from callproof.events import Response

__all__ = [
    "AllAttemptsFailed",
    "CallError",
    "CallproofError",
    "ChecksumMismatch",
    "CircuitOpenError",
    "ConfigError",
    "DeadlineExceeded",
    "DuplicateHeader",
    "EmptyResponseError",
    "FrameError",
    "HTTPStatusError",
    "IncompleteFrame",
    "IncompleteStreamError",
    "InvalidEventError",
    "InvalidLength",
    "ProtocolError",
    "ProviderError",
    "RecordError",
    "RunDirLocked",
    "StallBeforeHeaders",
    "StallError",
    "StallMidStream",
    "StallNoEvents",
    "StreamExceptionError",
    "ToolCallInTextError",
    "TransportError",
]


class CallproofError(Exception):
    """Base of every error callproof raises."""


class ConfigError(CallproofError):
    """Configuration or usage is wrong; the CLI exits with code 2.

    ``where`` names the file, key and line when they are known.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.message = message
        self.where = where


class RecordError(CallproofError, ValueError):
    """A JSON object that is not an attempt record (see :mod:`callproof.record`)."""


class RunDirLocked(ConfigError):
    """Another live process is writing this run directory: one writer per run (exit 2 at
    once, never a wait; see ``callproof.probe.rundir.lock_run_dir``)."""


class CallError(CallproofError):
    """One model call failed. Context fields are filled in as the error travels up."""

    #: The outcome name this error maps to (see ``callproof.outcomes``).
    outcome: str = "transport_error"
    #: Whether a retry may help, before any output has reached the caller.
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        target: str | None = None,
        model: str | None = None,
        request_id: str | None = None,
        attempt: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.target = target
        self.model = model
        self.request_id = request_id
        self.attempt = attempt
        #: What the stream had produced before it failed (text so far, timings), if anything.
        self.response: Response | None = None

    @property
    def kind(self) -> str:
        """Short class name used in JSON output (``error.kind``)."""
        return type(self).__name__

    @property
    def error_type(self) -> str | None:
        """The provider's error type, where one exists."""
        return None

    @property
    def status(self) -> int | None:
        """The HTTP status, where one exists."""
        return None

    @property
    def category(self) -> str | None:
        """What kind of refusal a provider error is (``context_length``, ``content_filter``,
        ``auth``, ``validation``), or ``None`` (see the module docstring)."""
        return None

    def with_context(self, **context: Any) -> CallError:
        """Fill in context fields that are still empty; returns self for chaining."""
        for key in ("target", "model", "request_id", "attempt"):
            if getattr(self, key) is None and context.get(key) is not None:
                setattr(self, key, context[key])
        return self

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` object of the JSON output: ``{kind, type, message, status}``."""
        return {
            "kind": self.kind,
            "type": self.error_type,
            "message": self.message,
            "status": self.status,
        }

    def __str__(self) -> str:
        parts = [self.message]
        ctx = [
            f"{k}={v}"
            for k, v in (
                ("target", self.target),
                ("model", self.model),
                ("request_id", self.request_id),
                ("attempt", self.attempt),
            )
            if v is not None
        ]
        if ctx:
            parts.append(f"({', '.join(ctx)})")
        return " ".join(parts)


class TransportError(CallError):
    """The connection failed: refused, reset, TLS, DNS, or closed mid-body."""

    outcome = "transport_error"
    retryable = True


class StallError(CallError):
    """A watchdog fired. ``elapsed_s`` is how long the call had run; ``limit_s`` the timeout."""

    retryable = True

    def __init__(
        self, message: str, *, elapsed_s: float = 0.0, limit_s: float = 0.0, **ctx: Any
    ) -> None:
        super().__init__(message, **ctx)
        self.elapsed_s = elapsed_s
        self.limit_s = limit_s


class StallBeforeHeaders(StallError):
    """No response headers arrived within the first-event timeout."""

    outcome = "stall_before_headers"


class StallNoEvents(StallError):
    """Response headers arrived, then no decoded event within the first-event timeout."""

    outcome = "stall_no_events"


class StallMidStream(StallError):
    """Events arrived, then the gap to the next one exceeded the idle timeout."""

    outcome = "stall_mid_stream"


class DeadlineExceeded(StallError):
    """The total deadline passed before the stream ended."""

    outcome = "deadline_exceeded"


class ProtocolError(CallError):
    """Bytes that could not be decoded: a CRC mismatch, a bad frame, invalid JSON."""

    outcome = "protocol_error"


class FrameError(ProtocolError):
    """An AWS eventstream framing error."""


class ChecksumMismatch(FrameError):
    """A prelude or message CRC32 did not match."""

    def __init__(self, message: str, *, expected: int, calculated: int, **ctx: Any) -> None:
        super().__init__(message, **ctx)
        self.expected = expected
        self.calculated = calculated


class InvalidLength(FrameError):
    """A frame's lengths exceed botocore's limits or contradict each other."""


class DuplicateHeader(FrameError):
    """The same header name appeared twice in one frame."""


class IncompleteFrame(FrameError):
    """The stream closed while a frame was still open."""


class InvalidEventError(ProtocolError):
    """A framed event whose payload could not be parsed (invalid JSON, wrong shape)."""


class IncompleteStreamError(CallError):
    """The stream ended without its terminal event (Bedrock messageStop; OpenAI finish_reason
    and ``[DONE]``). boto3 and the openai SDK end such a stream silently; we do not."""

    outcome = "incomplete_stream"
    retryable = True


class CircuitOpenError(CallError):
    """A route skipped a target because its circuit is open; no request was sent."""

    outcome = "transport_error"
    retryable = False


class EmptyResponseError(CallError):
    """A normal stop with no text and no tool call, judged a failure by a route (after a tool
    result, or on any turn when buffered); retried by policy (``retry.on``)."""

    outcome = "empty_response"
    retryable = True


class ToolCallInTextError(CallError):
    """A finished answer that wrote its tool call as markup in the text (Kimi's
    ``<|tool_calls_section_begin|>``), judged a failure by a buffered route."""

    outcome = "tool_call_in_text"
    retryable = True


class ProviderError(CallError):
    """The provider answered with an error. ``error_type`` is its own name for it."""

    def __init__(
        self,
        message: str,
        *,
        error_type: str | None = None,
        status: int | None = None,
        retry_after_s: float | None = None,
        body: Any = None,
        **ctx: Any,
    ) -> None:
        super().__init__(message, **ctx)
        self._error_type = error_type
        self._status = status
        self.retry_after_s = retry_after_s
        self.body = body

    @property
    def error_type(self) -> str | None:
        return self._error_type

    @property
    def status(self) -> int | None:
        return self._status

    @property
    def category(self) -> str | None:
        if self.retryable:
            return None
        return _error_category(self.status, self.error_type, self.message, self.body)


#: The error categories a retry does not cure, and a route falls over on only when its
#: ``fallback_on`` names them.
STOP_CATEGORIES = ("context_length", "content_filter", "validation", "auth")

_CONTENT_FILTER_TYPES = frozenset(
    {"content_filter", "content_policy_violation", "responsibleaipolicyviolation"}
)
_CONTEXT_TYPES = frozenset(
    {"context_length_exceeded", "model_context_window_exceeded", "string_above_max_length"}
)
_AUTH_TYPES = frozenset(
    {
        "accessdeniedexception",
        "unrecognizedclientexception",
        "expiredtokenexception",
        "invalidsignatureexception",
        "incompletesignatureexception",
        "missingauthenticationtokenexception",
        "invalid_api_key",
        "authentication_error",
        "permission_error",
        "permission_denied",
        "unauthorized",
    }
)
_VALIDATION_TYPES = frozenset(
    {"validationexception", "invalid_request_error", "invalid_request", "bad_request"}
)
_CONTEXT_WORDS = (
    "context length",
    "context_length",
    "context window",
    "maximum context",
    "context limit",
    "input is too long",
    "prompt is too long",
    "too many input tokens",
    "reduce the length of the messages",
)
_FILTER_WORDS = ("content management policy", "content policy", "content filter", "flagged")


def _error_category(
    status: int | None, error_type: str | None, message: str, body: Any
) -> str | None:
    """The category of a provider's refusal (see the module docstring), from its HTTP status
    (``None`` in a stream), its error type, its message and its body."""
    et = (error_type or "").lower()
    text = message.lower()
    inner = body.get("innererror") if isinstance(body, dict) else None
    inner_code = str(inner.get("code") or "").lower() if isinstance(inner, dict) else ""
    meta = body.get("metadata") if isinstance(body, dict) else None
    flagged = isinstance(meta, dict) and ("flagged_input" in meta or "reasons" in meta)
    client_side = status is None or 400 <= status < 500
    if not client_side or "quota" in et:  # ServiceQuotaExceededException is no refusal
        return None
    if et in _CONTENT_FILTER_TYPES or inner_code in _CONTENT_FILTER_TYPES or flagged:
        return "content_filter"
    if et in _CONTEXT_TYPES or any(w in text for w in _CONTEXT_WORDS):
        return "context_length"
    if status in (401, 403) or et in _AUTH_TYPES:
        return "auth"
    if any(w in text for w in _FILTER_WORDS) and (status in (400, 403) or status is None):
        return "content_filter"
    if status in (400, 413, 422) or et in _VALIDATION_TYPES:
        return "validation"
    return None


#: Provider error types (Bedrock and OpenAI vocabularies, any case) that a retry may cure.
RETRYABLE_ERROR_TYPES = frozenset(
    t.lower()
    for t in (
        "ThrottlingException",
        "ServiceUnavailableException",
        "InternalServerException",
        "InternalServerError",
        "ModelStreamErrorException",
        "ModelNotReadyException",
        "server_error",
        "rate_limit_exceeded",
    )
)
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})


class HTTPStatusError(ProviderError):
    """A non-2xx HTTP answer before any stream event."""

    outcome = "http_error"

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        et = (self.error_type or "").lower()
        return (self.status in RETRYABLE_STATUSES and et != "modeltimeoutexception") or (
            et in RETRYABLE_ERROR_TYPES
        )


class StreamExceptionError(ProviderError):
    """A modeled exception frame in a Bedrock stream, or an OpenRouter mid-stream error chunk."""

    outcome = "stream_exception"

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        et = (self.error_type or "").lower()
        return et in RETRYABLE_ERROR_TYPES or (self.status in RETRYABLE_STATUSES)


class AllAttemptsFailed(ExceptionGroup[CallError], CallproofError):
    """Every candidate of a routed call failed; holds each attempt's error in order."""
