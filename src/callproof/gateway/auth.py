"""Who may call the gateway: client keys from one environment variable.

``auth = { kind = "keys", env = "CALLPROOF_SERVE_KEYS" }`` reads the variable once at start.
Its value is a comma-separated list (spaces around entries ignored). An entry ``AKID:SECRET``
is an AWS access-key pair for SigV4; any other entry is a bearer key::

    CALLPROOF_SERVE_KEYS="sk-team-a,sk-team-b,AKIAGATEWAYEXAMPLE:wJalrXUtnFEMIK7MDENGbPxRfiCY"

* OpenAI fronts: ``Authorization: Bearer KEY`` with a bearer key (401 ``invalid_api_key``).
* Bedrock front: a Bedrock API key (``Authorization: Bearer KEY``), or SigV4 signed with one of
  the pairs and verified with botocore's signer (:class:`~callproof.emulator.bedrock_auth.
  BedrockAuth`), with Bedrock's own 403 errors.

``auth = "none"`` accepts everything (allowed only on loopback binds). Keys are compared in
constant time and never logged, recorded or echoed.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from callproof.emulator.bedrock_auth import BedrockAuth
from callproof.emulator.openai_decode import OpenAIRequestError
from callproof.errors import ConfigError
from callproof.gateway.config import AuthSettings

__all__ = ["ClientKeys", "parse_keys"]


@dataclass(frozen=True, slots=True)
class ClientKeys:
    """The accepted client credentials; ``enabled`` False means ``auth = "none"``."""

    enabled: bool = False
    bearer: frozenset[str] = frozenset()
    pairs: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls, settings: AuthSettings, environ: Mapping[str, str] | None = None
    ) -> ClientKeys:
        """Read the keys ``settings`` names (ConfigError when the variable is unset/empty)."""
        if settings.kind == "none":
            return cls()
        env = os.environ if environ is None else environ
        raw = env.get(settings.env, "")
        keys = parse_keys(raw)
        if not keys.bearer and not keys.pairs:
            raise ConfigError(
                f"auth is keys but ${settings.env} holds no key (comma-separated bearer keys "
                "and AKID:SECRET pairs)",
                where="serve.auth.env",
            )
        return keys

    def bedrock(self) -> BedrockAuth:
        """The Bedrock front's checker (SigV4 pairs and Bedrock API keys)."""
        if not self.enabled:
            return BedrockAuth()
        return BedrockAuth(credentials=dict(self.pairs), api_keys=self.bearer, required=True)

    def check_bearer(self, authorization: str) -> None:
        """Raise the OpenAI 401 unless ``authorization`` is ``Bearer <a configured key>``."""
        if not self.enabled:
            return
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
        ok = False
        for key in self.bearer:  # every key compared, in constant time each
            ok |= hmac.compare_digest(token.encode(), key.encode())
        if not ok:
            raise OpenAIRequestError(
                "Incorrect API key provided. The gateway accepts only the keys it is configured "
                "with.",
                code="invalid_api_key",
                status=401,
            )


def parse_keys(raw: str) -> ClientKeys:
    """``"k1,k2,AKID:SECRET"`` -> bearer keys and SigV4 pairs."""
    bearer: set[str] = set()
    pairs: dict[str, str] = {}
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        akid, sep, secret = entry.partition(":")
        if sep and akid and secret:
            pairs[akid] = secret
        else:
            bearer.add(entry)
    return ClientKeys(enabled=True, bearer=frozenset(bearer), pairs=pairs)
