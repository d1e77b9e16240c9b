"""Endpoints: turn a dialect's :class:`~callproof.dialects.base.WireRequest` into an
:class:`httpx.Request` for one :class:`~callproof.targets.Endpoint`.

The dialect knows the path and body; the endpoint adds the base URL, default headers and
credentials. Four kinds of auth (see :class:`~callproof.targets.Auth`):

* ``sigv4``: botocore's credential chain (env, profile, SSO, container) and botocore's own
  :class:`botocore.auth.SigV4Auth`, signing name ``bedrock``. We never hand-write SigV4. The
  EC2 instance-metadata provider (a network call to 169.254.169.254) is left out of the chain
  unless ``CALLPROOF_AWS_IMDS=1`` asks for it: "no credentials" must never mean a probe of a
  link-local address.
* ``bedrock-api-key``: ``Authorization: Bearer $AWS_BEARER_TOKEN_BEDROCK`` (or a named variable),
  refused over plain HTTP exactly as botocore refuses it.
* ``bearer``: ``Authorization: Bearer $NAME`` for OpenAI-compatible APIs.
* ``none``: nothing (the emulator accepts unauthenticated calls).

Missing credentials are a :class:`~callproof.errors.ConfigError` with a message that says what
to set, never an HTTP 403 from far away.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import threading
from collections.abc import Mapping
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import httpx

from callproof import redact
from callproof.dialects.base import WireRequest
from callproof.errors import ConfigError
from callproof.targets import Endpoint

__all__ = [
    "BEDROCK_API_KEY_ENV",
    "IMDS_ENV",
    "SIGNING_NAME",
    "USER_AGENT",
    "Signer",
    "build_request",
    "is_loopback",
    "join_url",
    "resolve_region",
]

#: The SigV4 signing name of Bedrock Runtime (service-2.json ``signingName``).
SIGNING_NAME = "bedrock"
#: The variable botocore reads a Bedrock API key from.
BEDROCK_API_KEY_ENV = "AWS_BEARER_TOKEN_BEDROCK"
#: Set to ``1`` to let SigV4 credentials come from the EC2 instance-metadata service.
IMDS_ENV = "CALLPROOF_AWS_IMDS"


def _version() -> str:
    try:
        return metadata.version("callproof")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


USER_AGENT = f"callproof/{_version()}"


def join_url(base_url: str, path: str) -> str:
    """Join a base URL and a dialect path, keeping the path's percent-encoding as it is
    (Bedrock model ids travel as ``us.amazon.nova-micro-v1%3A0``). A query string on the base
    URL (``?api-version=...``, a gateway's ``?key=...``) stays after the joined path."""
    base, sep, query = base_url.partition("?")
    base = base.rstrip("/")
    if path:
        base += path if path.startswith("/") else "/" + path
    return f"{base}?{query}" if sep else base


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (an emulator, a local proxy)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_region(endpoint: Endpoint, env: Mapping[str, str] | None = None) -> str | None:
    """The endpoint's region, else ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else the region
    in the hostname of an AWS endpoint (``bedrock-runtime.us-east-1.amazonaws.com``)."""
    if endpoint.region:
        return endpoint.region
    env = os.environ if env is None else env
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if env.get(name):
            return env[name]
    host = urlsplit(endpoint.base_url).hostname or ""
    parts = host.split(".")
    if host.endswith(".amazonaws.com") and len(parts) >= 4:
        return parts[1]
    return None


class Signer:
    """SigV4 credentials and signing through botocore, cached per profile.

    Resolving the credential chain is slow (files, maybe IMDS), so one botocore session per
    profile is kept; refreshable credentials are frozen at each signing.
    """

    def __init__(self, *, imds: bool | None = None) -> None:
        self._sessions: dict[str | None, Any] = {}
        #: Credentials a signing already resolved, per profile (see :meth:`ready`).
        self._resolved: dict[str | None, Any] = {}
        #: The frozen credentials last registered with :mod:`callproof.redact`, per profile.
        self._remembered: dict[str | None, Any] = {}
        self._lock = threading.Lock()
        #: Whether the instance-metadata provider stays in the chain (default: ``$IMDS_ENV``).
        self.imds = (
            os.environ.get(IMDS_ENV, "").strip().lower() in ("1", "true", "yes")
            if imds is None
            else imds
        )

    def _session(self, profile: str | None) -> Any:
        import botocore.session  # imported lazily: botocore costs ~100 ms to import

        with self._lock:
            session = self._sessions.get(profile)
            if session is None:
                try:
                    session = botocore.session.Session(profile=profile)
                    if not self.imds:
                        # botocore's provider named "iam-role" is the EC2 instance-metadata one.
                        session.get_component("credential_provider").remove("iam-role")
                except Exception as exc:  # ProfileNotFound and friends
                    raise ConfigError(f"AWS profile {profile!r}: {exc}") from exc
                self._sessions[profile] = session
            return session

    def region(self, profile: str | None) -> str | None:
        """The region botocore's configuration gives for ``profile``, if any."""
        from botocore.exceptions import BotoCoreError

        try:
            region = self._session(profile).get_config_variable("region")
        except BotoCoreError as exc:
            raise ConfigError(f"AWS configuration: {exc}") from exc
        return str(region) if region else None

    def ready(self, profile: str | None) -> bool:
        """Whether signing for ``profile`` needs no I/O now: an earlier signing resolved the
        credential chain and the credentials are not due for a refresh. The client then signs
        on the event loop, without a thread hop per call."""
        credentials = self._resolved.get(profile)
        if credentials is None:
            return False
        refresh_needed = getattr(credentials, "refresh_needed", None)
        return not (callable(refresh_needed) and refresh_needed())

    def has_credentials(self, profile: str | None) -> bool:
        """Whether botocore's credential chain finds anything for ``profile``."""
        from botocore.exceptions import BotoCoreError

        try:
            return self._session(profile).get_credentials() is not None
        except (BotoCoreError, ConfigError):
            return False

    def sign(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        *,
        region: str,
        profile: str | None,
    ) -> dict[str, str]:
        """Headers with SigV4 ``Authorization``, ``X-Amz-Date`` and, for temporary
        credentials, ``X-Amz-Security-Token`` added."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.exceptions import BotoCoreError

        session = self._session(profile)
        try:
            credentials = session.get_credentials()
        except BotoCoreError as exc:
            raise ConfigError(f"AWS credentials could not be loaded: {exc}") from exc
        if credentials is None:
            raise ConfigError(
                "no AWS credentials found for SigV4: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (or auth profile), or use a Bedrock API "
                f"key ({BEDROCK_API_KEY_ENV}) with auth kind 'bedrock-api-key'"
            )
        self._resolved[profile] = credentials
        frozen = credentials.get_frozen_credentials()
        if frozen != self._remembered.get(profile):  # once per credentials, not per call
            for secret in (frozen.access_key, frozen.secret_key, frozen.token):
                redact.remember(secret)  # a server that reflects one must not get it printed
            self._remembered[profile] = frozen
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        SigV4Auth(frozen, SIGNING_NAME, region).add_auth(request)
        return {str(k): str(v) for k, v in request.headers.items()}


_DEFAULT_SIGNER = Signer()


def _env_secret(name: str, env: Mapping[str, str], what: str) -> str:
    value = env.get(name, "")
    if not value.strip():
        raise ConfigError(f"{what}: environment variable {name} is not set")
    redact.remember(value.strip())
    return value.strip()


def _redacted(url: str) -> str:
    # Error messages reach terminals and logs: keys in a URL must not.
    return redact.redact_url(url)


#: Endpoint headers already registered with :mod:`callproof.redact` (its registry only grows).
_REMEMBERED_HEADERS: set[tuple[str, str]] = set()
#: callproof's own request headers (the probe's ``x-callproof-attempt-key``, a fault name):
#: never credentials, and the attempt key is new on every attempt, so remembering it as a
#: secret grew the redaction registry by one entry per attempt (quadratic scrubbing cost,
#: about 2 KB of memory per attempt of a run)
_OWN_HEADER_PREFIX = "x-callproof-"


@functools.lru_cache(maxsize=1024)
def _parsed(url: str) -> httpx.URL:
    """An endpoint URL parsed once (httpx's URL is immutable; a request copies it cheaply)."""
    return httpx.URL(url)


def build_request(
    wire: WireRequest,
    endpoint: Endpoint,
    *,
    signer: Signer | None = None,
    env: Mapping[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> httpx.Request:
    """The :class:`httpx.Request` for ``wire`` at ``endpoint``, authenticated.

    Header precedence, lowest first: callproof defaults, the dialect's, the endpoint's; auth
    headers are added last (and SigV4 signs everything before it).
    """
    env = os.environ if env is None else env
    url = join_url(endpoint.base_url, wire.path)
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigError(
            f"endpoint URL must start with http:// or https://, got {_redacted(url)!r}"
        )
    headers: dict[str, str] = {"user-agent": USER_AGENT}
    if wire.body:
        headers["content-type"] = "application/json"
    for source in (wire.headers, endpoint.headers):
        for key, value in source.items():
            headers[key.lower()] = value
    if "@" in url or "?" in url:
        redact.Redactor().url(url)  # remember user info and query keys of the URL
    for item in endpoint.headers.items():
        if item not in _REMEMBERED_HEADERS and not item[0].lower().startswith(_OWN_HEADER_PREFIX):
            redact.Redactor().header(*item)  # remember credential headers (X-Api-Key...)
            _REMEMBERED_HEADERS.add(item)
    auth = endpoint.auth
    match auth.kind:
        case "none":
            pass
        case "bearer":
            if not auth.env:
                raise ConfigError("auth kind 'bearer' needs 'env': the variable holding the key")
            headers["authorization"] = "Bearer " + _env_secret(auth.env, env, "bearer key")
        case "bedrock-api-key":
            name = auth.env or BEDROCK_API_KEY_ENV
            if scheme != "https":
                # botocore: InvalidEndpointConfigurationError, same words.
                raise ConfigError(
                    "Bearer authorization requires an HTTPS endpoint "
                    f"(got {_redacted(endpoint.base_url)})"
                )
            headers["authorization"] = "Bearer " + _env_secret(name, env, "Bedrock API key")
        case "sigv4":
            signer = signer or _DEFAULT_SIGNER
            region = resolve_region(endpoint, env) or signer.region(auth.profile)
            if not region:
                raise ConfigError(
                    "SigV4 needs a region: pass --region, set the endpoint's region, or set "
                    "AWS_REGION"
                )
            headers = signer.sign(
                wire.method, url, headers, wire.body, region=region, profile=auth.profile
            )
        case _:  # pragma: no cover - Auth.kind is a Literal
            raise ConfigError(f"unknown auth kind {auth.kind!r}")
    return httpx.Request(
        wire.method, _parsed(url), headers=headers, content=wire.body, extensions=extensions or {}
    )
