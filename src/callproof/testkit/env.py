"""The environment that points unmodified SDKs at an emulator (no pytest import).

:func:`emulator_env(url) <emulator_env>` gives the variables boto3, botocore, the AWS SDK for
JavaScript, the openai SDKs and strands-agents read: the Bedrock Runtime endpoint, placeholder
credentials (the emulator does not check them unless asked to) and a region, and the OpenAI base
URL and key. :data:`CLEARED` lists variables that would send a request elsewhere or with a real
secret, so the fixture removes them. :func:`env_file_text` writes them as ``KEY=value`` lines
(a dotenv file, also ``set -a; . FILE`` in a POSIX shell).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CLEARED", "ENV_VARS", "PLACEHOLDER", "TLS_VARS", "emulator_env", "env_file_text"]

#: The variables :func:`emulator_env` sets, in the order written to an env file.
ENV_VARS: tuple[str, ...] = (
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
)

#: Added when the emulator serves TLS: its CA bundle.
TLS_VARS: tuple[str, ...] = ("AWS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE")

#: Variables removed while a test runs against the emulator: a session token or bearer token
#: would be a real secret sent to it, a profile could name other credentials or an endpoint.
CLEARED: tuple[str, ...] = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)

#: Placeholder credentials: the emulator accepts any unless Bedrock auth checks are on.
PLACEHOLDER = "callproof-emulator"


def emulator_env(
    url: str, *, region: str = "us-east-1", ca_path: str | Path | None = None
) -> dict[str, str]:
    """The variables for an emulator listening at ``url`` (its Bedrock ``endpoint_url``).

    With ``ca_path`` (a TLS emulator's CA bundle) also ``AWS_CA_BUNDLE``, ``NODE_EXTRA_CA_CERTS``
    and ``SSL_CERT_FILE``, so boto3, Node and httpx-based clients trust it."""
    base = url.rstrip("/")
    tls = {} if ca_path is None else dict.fromkeys(TLS_VARS, str(ca_path))
    return tls | {
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": base,
        "AWS_ACCESS_KEY_ID": PLACEHOLDER,
        "AWS_SECRET_ACCESS_KEY": PLACEHOLDER,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "OPENAI_BASE_URL": base + "/v1",
        "OPENAI_API_KEY": PLACEHOLDER,
    }


def env_file_text(env: dict[str, str]) -> str:
    """``KEY=value`` lines (values here never need quoting: URLs, ids, a region)."""
    return "".join(f"{name}={env[name]}\n" for name in (*ENV_VARS, *TLS_VARS) if name in env)
