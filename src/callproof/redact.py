"""The one redaction module: every file callproof writes and every line it prints goes through it.

What counts as a secret:

* values of credential headers, by a broad name list (:data:`SECRET_HEADER` and
  :data:`SECRET_HEADERS`: ``Authorization``, ``X-Api-Key``, ``Ocp-Apim-Subscription-Key``,
  ``X-Access-Key``, ``X-Amz-Security-Token``, cookies...), and a ``Bearer``/``Basic`` token in
  any header;
* URL user info (``postgresql://user:PASSWORD@host``, ``https://key@gateway``) and query values
  whose key names a credential (``key``, ``sig``, ``code``, ``token``, ``signature``,
  ``password``, ``secret``, ``api-key``, ``X-Amz-*`` and friends: :data:`SECRET_QUERY`);
* every value the process knows to be a secret: the endpoint keys read from the environment,
  SigV4 credentials (access key, secret key, session token), and everything the redactor above
  removed. They are kept in one process-wide registry (:func:`remember`), so a secret a server
  reflects back into a body, an error message or a tool argument is scrubbed from records,
  reports, the history and stdout too.

A remembered secret is replaced in its raw, JSON-escaped, percent-encoded and base64 forms
(base64 at each of the three byte alignments, so a secret inside a larger base64 blob, as in
``Basic dXNlcjpwYXNz``, is caught too). Values shorter than :data:`MIN_SECRET` characters are not
remembered: they would scrub ordinary words.

Logging: :func:`configure_logging` puts a redacting filter on every handler and holds httpx,
httpcore and botocore at WARNING unless the level is ``TRACE`` (their DEBUG lines print signed
URLs and canonical requests, with the session token).
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from typing import IO, Any
from urllib.parse import (
    parse_qsl,
    quote,
    quote_plus,
    unquote,
    urlencode,
    urlsplit,
    urlunsplit,
)

__all__ = [
    "MIN_SECRET",
    "REDACTED",
    "SECRET_HEADER",
    "SECRET_HEADERS",
    "SECRET_QUERY",
    "TRACE",
    "RedactingFilter",
    "RedactingStream",
    "Redactor",
    "configure_logging",
    "install_stdio",
    "redact_argv",
    "redact_url",
    "remember",
    "scrub",
    "scrub_bytes",
    "scrub_obj",
    "scrub_pieces",
    "secret_count",
    "secret_forms",
]

REDACTED = "[REDACTED]"
_REDACTED_B = REDACTED.encode()
#: What replaces URL user info: brackets are not legal there (``urlsplit`` would reject the
#: result as a bad IPv6 address), so redacting a redacted URL again stays a valid URL.
_USERINFO = "REDACTED"
#: Shorter values are never remembered (they would scrub ordinary words).
MIN_SECRET = 8
#: User info with no password is remembered only from this length on (a token, not a name).
_TOKEN_USER = 16
#: The level name of ``--log-level TRACE``: DEBUG, with third-party wire logs let through.
TRACE = 5

#: Header names whose values are credentials (matched anywhere in the name, any case).
SECRET_HEADER = re.compile(
    r"(?i)(auth|token|secret|passw|api[-_]?key|(^|[-_])key$|signature|credential|cookie|"
    r"session|subscription|access[-_]?key|private)"
)
#: Further credential headers spelled out (case-insensitive exact names).
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "ocp-apim-subscription-key",
        "x-access-key",
        "x-access-token",
        "x-amz-security-token",
        "x-auth-token",
        "cookie",
        "set-cookie",
        "x-portkey-api-key",
        "x-litellm-api-key",
        "cf-aig-authorization",
    }
)
#: Query-parameter names whose values are credentials.
SECRET_QUERY = re.compile(
    r"(?i)^(key|sig|code|token|signature|password|passwd|pwd|pass|secret|apikey|api[-_]key|"
    r"access[-_]?token|auth|client[-_]secret|subscription[-_]key)$|"
    r"(token|secret|passw|api[-_]?key|signature|credential|^x-amz-)"
)
#: Header names that carry no secret despite matching the patterns.
_SAFE_HEADERS = frozenset({"x-amz-content-sha256", "content-length", "x-amz-date"})
#: A bearer (or other scheme) token inside any header value.
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+([A-Za-z0-9._~+/=:-]{4,})")
#: An auth scheme word (``Bearer``, ``AWS4-HMAC-SHA256``), kept so a reader sees the kind.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,31}")


class _Registry:
    """The process-wide set of secrets and the forms to look for, longest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.secrets: set[str] = set()
        self.forms: tuple[str, ...] = ()
        self.byte_forms: tuple[bytes, ...] = ()

    def add(self, value: str) -> bool:
        if len(value) < MIN_SECRET or value in self.secrets or "REDACTED" in value:
            return False
        with self._lock:
            self.secrets.add(value)
            forms = set(self.forms) | {f for f in _forms(value) if len(f) >= 6}
            ordered = sorted(forms, key=len, reverse=True)
            self.forms = tuple(ordered)
            self.byte_forms = tuple(f.encode("utf-8", "surrogatepass") for f in ordered)
        return True


def _b64_inner(data: bytes) -> set[str]:
    """The base64 characters that ``data`` alone determines, at each byte alignment."""
    out: set[str] = set()
    for pad in range(3):
        text = base64.b64encode(b"\0" * pad + data).decode().rstrip("=")
        start = 4 if pad else 0  # the first group mixes padding bytes in
        whole = ((pad + len(data)) // 3) * 4  # chars of complete groups
        inner = text[start:whole]
        for variant in (inner, inner.replace("+", "-").replace("/", "_")):
            if len(variant) >= MIN_SECRET:
                out.add(variant)
    full = base64.b64encode(data).decode()
    out.update({full, full.rstrip("="), base64.urlsafe_b64encode(data).decode().rstrip("=")})
    return out


def _forms(secret: str) -> set[str]:
    raw = secret.encode("utf-8", "surrogatepass")
    return {
        secret,
        html.escape(secret),  # report.html
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        quote(secret),
        *_b64_inner(raw),
    }


_REGISTRY = _Registry()


#: Pieces of a credential header that are no secret, or never repeat: SigV4's signed header
#: names, and its signature (an HMAC of one request; remembering one per request would grow
#: the registry, and every scrub, with the number of requests).
_EPHEMERAL = ("SignedHeaders=", "Signature=")


def remember(value: str | None) -> None:
    """Register ``value`` (and its pieces, split at commas and spaces) as a secret, for every
    later scrub in this process."""
    if not value:
        return
    value = str(value)
    pieces = value.replace(",", " ").split()
    if len(pieces) > 1:
        # A whole multi-part value (SigV4's Authorization) never repeats; its pieces do.
        value = ""
    for piece in {value, *pieces} - {""}:
        if piece.startswith(_EPHEMERAL):
            continue
        _REGISTRY.add(piece)
        # ``Credential=AKIA.../20261201/...`` and ``Signature=abc``: the value after '='.
        _name, eq, rest = piece.partition("=")
        if eq:
            _REGISTRY.add(rest)
            _REGISTRY.add(rest.split("/", 1)[0])


def secret_forms() -> tuple[str, ...]:
    """Every form of every registered secret, longest first."""
    return _REGISTRY.forms


def secret_count() -> int:
    """How many secrets are registered (for tests and diagnostics)."""
    return len(_REGISTRY.secrets)


def scrub(text: str) -> str:
    """``text`` with every registered secret (in any of its forms) replaced."""
    # One ``in`` per form (a C substring search) beats a regex alternation of them all, which
    # tries every form at every position. Longest first: a secret containing another is
    # replaced whole.
    if not text:
        return text
    for form in _REGISTRY.forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def scrub_bytes(data: bytes) -> bytes:
    """``data`` with every registered secret replaced (its UTF-8 forms)."""
    if not data:
        return data
    for form in _REGISTRY.byte_forms:
        if form in data:
            data = data.replace(form, _REDACTED_B)
    return data


def scrub_obj(value: Any) -> Any:
    """A JSON-like value with every string scrubbed (keys too), for records and rows."""
    forms = _REGISTRY.forms
    if not forms:
        return value
    if isinstance(value, dict | list):
        # One serialisation and one scan decide whether the walk is needed at all (most
        # records hold no secret); JSON-escaped forms are among the forms scanned for.
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError, RecursionError):
            text = None
        if text is not None and not any(form in text for form in forms):
            return value
    return _scrub_walk(value)


def _scrub_walk(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(k) if isinstance(k, str) else k: _scrub_walk(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_walk(v) for v in value]
    return value


def scrub_pieces(texts: list[str], limit: int | None = None) -> list[str]:
    """``texts`` (consecutive pieces of one stream: text deltas, tool-argument fragments)
    with every registered secret removed, also one split across pieces: the piece where it
    starts gets :data:`REDACTED`, the others lose their part. Only occurrences starting
    before offset ``limit`` of the joined text count (all when None)."""
    forms = _REGISTRY.forms
    joined = "".join(texts)
    end = len(joined) if limit is None else limit
    spans: list[tuple[int, int]] = []
    for form in forms:
        start = joined.find(form)
        while 0 <= start < end:
            spans.append((start, start + len(form)))
            start = joined.find(form, start + len(form))
    if not spans:
        return list(texts)
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    out: list[str] = []
    lo = 0
    for text in texts:
        hi = lo + len(text)
        parts, cursor = [], lo
        for a, b in merged:
            if b <= lo or a >= hi:
                continue
            parts.append(text[cursor - lo : max(a, lo) - lo])
            if a >= lo:  # the piece where the secret starts carries the marker
                parts.append(REDACTED)
            cursor = min(b, hi)
        parts.append(text[cursor - lo :])
        out.append("".join(parts))
        lo = hi
    return out


class Redactor:
    """Removes credentials from headers and URLs and remembers each one (process-wide), so
    that no later line (bodies, frames, reports) can carry it either."""

    @property
    def secrets(self) -> set[str]:
        return set(_REGISTRY.secrets)

    def header(self, name: str, value: str) -> str:
        """The value to record for header ``name``."""
        lower = name.lower()
        if lower not in _SAFE_HEADERS and (lower in SECRET_HEADERS or SECRET_HEADER.search(name)):
            scheme, sep, rest = value.partition(" ")
            if sep and _SCHEME.fullmatch(scheme):
                remember(rest)
                return f"{scheme} {REDACTED}"
            remember(value)
            return REDACTED

        def sub(m: re.Match[str]) -> str:
            remember(m.group(2))
            return f"{m.group(1)} {REDACTED}"

        return scrub(_BEARER.sub(sub, value))

    def headers(self, items: Iterable[tuple[str, str]]) -> list[list[str]]:
        return [[k, self.header(k, v)] for k, v in items]

    def url(self, url: str) -> str:
        """``url`` with user info and credentials in the query string replaced (idempotent:
        a redacted URL redacts to itself)."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return scrub(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            if userinfo != _USERINFO:
                user, colon, password = userinfo.partition(":")
                if colon:
                    # "user:password" too: HTTP Basic sends it base64-encoded.
                    for value in (userinfo, password, unquote(userinfo), unquote(password)):
                        remember(value)
                elif len(user) >= _TOKEN_USER:
                    # A user name alone ("postgres") is no secret; a long one is a token
                    # sent as user info (https://TOKEN@host).
                    remember(user)
                    remember(unquote(user))
            netloc = f"{_USERINFO}@{host}"
        query = parts.query
        if query:
            pairs = []
            for key, value in parse_qsl(query, keep_blank_values=True):
                if SECRET_QUERY.search(key) and value != REDACTED:
                    remember(value)
                    value = REDACTED
                pairs.append((key, value))
            query = urlencode(pairs, safe="[]")
        return scrub(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))

    def scrub(self, text: str) -> str:
        return scrub(text)

    def scrub_bytes(self, data: bytes) -> bytes:
        return scrub_bytes(data)


def redact_url(url: str) -> str:
    """``url`` with keys in its query string and user info replaced, for logs and messages."""
    return Redactor().url(url)


_URLISH = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
#: ``--api-key X`` style options whose next argument is a secret.
_SECRET_OPTION = re.compile(r"(?i)^--?[a-z0-9-]*(key|token|secret|passw|credential)[a-z0-9-]*$")


def redact_argv(argv: Iterable[str]) -> list[str]:
    """A command line for run.json, the reports and the history: URLs (``--db
    postgresql://u:PASSWORD@h/db``, endpoints) redacted, values of ``--*key``/``--*token``
    options replaced, and every registered secret scrubbed."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        arg = str(arg)
        if hide_next:
            remember(arg)
            out.append(REDACTED)
            hide_next = False
            continue
        name, eq, value = arg.partition("=")
        if _SECRET_OPTION.match(name):
            if eq:
                remember(value)
                out.append(f"{name}={REDACTED}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(_URLISH.sub(lambda m: redact_url(m.group(0)), arg))
    return [scrub(a) for a in out]


# -- logging and stdio ----------------------------------------------------------------------

#: Loggers that print wire details (signed URLs, canonical requests with the session token).
_WIRE_LOGGERS = ("httpx", "httpcore", "botocore", "boto3", "urllib3", "hpack", "h2")


class RedactingFilter(logging.Filter):
    """Formats each record's message, redacts URLs and registered secrets in it, and hands
    the handler the redacted text (no arguments left to re-expand)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # a bad format string must not lose a line
            message = str(record.msg)
        message = _URLISH.sub(lambda m: redact_url(m.group(0)), message)
        record.msg = scrub(message)
        record.args = None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


def configure_logging(level: str | int) -> None:
    """Set up the root logger at ``level`` (a name, ``TRACE`` included) with a redacting
    filter on its handlers; wire loggers stay at WARNING unless the level is ``TRACE``."""
    logging.addLevelName(TRACE, "TRACE")
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        numeric = logging.WARNING
    logging.basicConfig(
        level=max(numeric, logging.DEBUG) if numeric == TRACE else numeric,
        format="%(levelname)s %(name)s: %(message)s",
    )
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if numeric == TRACE else numeric)
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    for name in _WIRE_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG if numeric == TRACE else max(numeric, logging.WARNING))
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


class RedactingStream(io.TextIOBase):
    """A text stream that scrubs registered secrets from each write before passing it on
    (stdout and stderr of the CLI: a reflected secret never reaches the terminal)."""

    def __init__(self, inner: IO[str]) -> None:
        super().__init__()
        self._inner = inner

    @property
    def inner(self) -> IO[str]:
        return self._inner

    def write(self, text: str) -> int:
        self._inner.write(scrub(text))
        return len(text)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._inner, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._inner, "errors", None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def install_stdio() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` in :class:`RedactingStream` (idempotent)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))
