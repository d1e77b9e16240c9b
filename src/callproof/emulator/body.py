"""Reading a request body within the emulator's limits.

A hostile or broken client must not hold a worker: the body is read against a size limit
(``Content-Length`` is checked first, then the bytes actually received) and a deadline for the
whole body, so a client that trickles its body, or declares more than it sends, is answered
and dropped instead of kept forever.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from starlette.requests import Request

from callproof.emulator.state import Limits

__all__ = ["BodyTimeout", "BodyTooLarge", "lone_surrogates", "read_body"]

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class BodyTooLarge(Exception):
    """The body is over ``Limits.max_body_bytes``."""


class BodyTimeout(Exception):
    """The body did not arrive within ``Limits.body_timeout_s``."""


async def read_body(request: Request, limits: Limits) -> bytes:
    """The whole request body; raises :class:`BodyTooLarge` or :class:`BodyTimeout`."""
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout from None
    return b"".join(chunks)


def lone_surrogates(body: bytes) -> bool:
    """True when the JSON body holds a lone UTF-16 surrogate (``"\\ud800"``): legal JSON
    text, but no UTF-8 string, so any answer that quotes it would fail to encode. Cheap: the
    body is parsed again only when it holds a surrogate escape (json.loads joins real pairs)."""
    if not _SURROGATE_ESCAPE.search(body):
        return False
    try:
        data: Any = json.loads(body)
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (ValueError, RecursionError):
        return False  # not JSON: the decoder reports it
    return False
