"""Authentication of Bedrock requests: SigV4 (optionally verified) and bearer tokens.

By default the emulator accepts any SigV4-signed request, any bearer token (Bedrock API key)
and unauthenticated requests, since it is a local test double. Configure :class:`BedrockAuth`
with ``credentials`` (access key id -> secret) to verify signatures the way AWS does, using
botocore's own signer, and with ``api_keys`` to accept only those bearer tokens; ``required``
rejects unauthenticated requests.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from callproof.emulator.bedrock_validation import BedrockError

__all__ = ["BedrockAuth"]

_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<akid>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request,\s*SignedHeaders=(?P<signed>[^,\s]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)

_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


@dataclass(frozen=True, slots=True)
class BedrockAuth:
    """What the Bedrock routes accept; see the module docstring."""

    credentials: Mapping[str, str] = field(default_factory=dict)
    api_keys: Collection[str] | None = None
    required: bool = False

    def check(
        self,
        *,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> None:
        """Raise :class:`BedrockError` (403) when the request is not acceptable."""
        authorization = headers.get("authorization", "")
        if not authorization:
            if self.required or self.credentials or self.api_keys is not None:
                raise BedrockError(
                    403, "MissingAuthenticationTokenException", "Missing Authentication Token"
                )
            return
        if authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
            if self.api_keys is not None and token not in self.api_keys:
                raise BedrockError(
                    403,
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.",
                )
            return
        match = _SIGV4.match(authorization)
        if match is None:
            raise BedrockError(
                403,
                "IncompleteSignatureException",
                f"Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' "
                f"parameters. Authorization={authorization[:40]}",
            )
        if not self.credentials:
            return
        secret = self.credentials.get(match["akid"])
        if secret is None:
            raise BedrockError(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        expected = _signature(match, secret, method=method, url=url, headers=headers, body=body)
        if not hmac.compare_digest(expected, match["signature"]):
            raise BedrockError(403, "InvalidSignatureException", _BAD_SIGNATURE)


def _signature(
    match: re.Match[str],
    secret: str,
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
) -> str:
    """The signature botocore's signer computes for this request with ``secret``."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signed = match["signed"].split(";")
    amz_date = headers.get("x-amz-date", "")
    request = AWSRequest(
        method=method,
        url=url,
        data=body,
        headers={name: headers.get(name, "") for name in signed},
    )
    request.context["timestamp"] = amz_date
    token = headers.get("x-amz-security-token")
    auth = SigV4Auth(Credentials(match["akid"], secret, token), match["service"], match["region"])
    canonical = auth.canonical_request(request)
    string_to_sign = auth.string_to_sign(request, canonical)
    return str(auth.signature(string_to_sign, request))
