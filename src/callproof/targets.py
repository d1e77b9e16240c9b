"""Where a call goes: an endpoint (base URL and auth), a target (endpoint + API + model), and
the clocks that guard it.

Endpoints are apart from dialects: any OpenAI-compatible vendor, and the emulator, is just
another endpoint. No provider-name conditionals in shared code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from callproof.dialects.base import ApiName

__all__ = ["Api", "Auth", "Endpoint", "Target", "Timeouts"]

#: A wire API's name (the dialect classes declare them: :data:`callproof.dialects.API_NAMES`).
Api = ApiName


@dataclass(frozen=True, slots=True)
class Auth:
    """How requests are authenticated.

    * ``sigv4``: botocore's credential chain (env, profile, SSO, IMDS), signing name ``bedrock``.
    * ``bedrock-api-key``: a Bedrock API key from ``env`` (default ``AWS_BEARER_TOKEN_BEDROCK``),
      sent as a bearer token; HTTPS only, as botocore insists.
    * ``bearer``: ``Authorization: Bearer $env`` (OpenAI-compatible APIs; ``env`` names the
      variable, e.g. ``OPENROUTER_API_KEY``).
    * ``none``: no credentials (the emulator accepts this).
    """

    kind: Literal["sigv4", "bedrock-api-key", "bearer", "none"] = "none"
    env: str | None = None
    #: For sigv4: a named AWS profile.
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A base URL and how to authenticate to it.

    For Bedrock the base URL is the runtime host (``https://bedrock-runtime.us-east-1.amazonaws.com``
    or an emulator's ``http://127.0.0.1:4010``); for OpenAI-compatible APIs it is the one that
    ends in ``/v1``.
    """

    base_url: str
    region: str | None = None
    auth: Auth = field(default_factory=Auth)
    headers: dict[str, str] = field(default_factory=dict)
    #: TLS verification: True, False, or a CA bundle path.
    verify: bool | str = True


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Clocks named for what they measure. ``None`` disables one.

    * ``connect``: TCP + TLS connect.
    * ``first_event``: from sending the request to the first *decoded* event (covers the wait
      for headers too: no headers by then is ``stall_before_headers``; headers but no event is
      ``stall_no_events``).
    * ``idle``: the longest allowed gap between decoded events. Keep-alive comments do not
      reset it: LiteLLM's byte-counting timeout never fires on a hung OpenRouter upstream.
    * ``deadline``: the whole attempt, from request to terminal event.
    """

    connect: float | None = 10.0
    first_event: float | None = 60.0
    idle: float | None = 30.0
    deadline: float | None = 300.0


@dataclass(frozen=True, slots=True)
class Target:
    """A model at an endpoint through one wire API."""

    name: str
    api: Api
    model: str
    endpoint: Endpoint
    #: Request fields merged into the wire body (e.g. OpenRouter's ``provider`` pinning,
    #: Bedrock's ``additionalModelRequestFields``).
    extra: dict[str, Any] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: Provider label for reports (e.g. "bedrock", "openrouter").
    provider: str | None = None
    #: Options for the wire dialect's constructor, e.g. ``{"reasoning_replay":
    #: "reasoning_content"}`` or ``{"max_tokens_field": "max_completion_tokens"}`` for
    #: ``openai-completions`` (see ``callproof.dialects.get_dialect``).
    dialect_options: dict[str, Any] = field(default_factory=dict)
