"""Seeded random tokens for the emulator's ids and obfuscation padding, drawn cheaply.

Every streamed OpenAI answer carries a random id and, per chunk, a random ``obfuscation`` pad
(0-12 characters on chat completions, 2-15 on Responses); Bedrock and OpenAI tool calls carry
random ids too. Drawn one character at a time with ``Random.choice`` these were about a sixth
of the fast front's CPU per planned chat stream (some 30 draws of 15 characters, each
character a Python-level ``_randbelow``). :func:`token` draws ``size`` random bytes at once
(``Random.randbytes``, one C call) and maps each byte to a character with ``bytes.translate``.

The mapping is ``alphabet[byte % len(alphabet)]``: uniform when the alphabet's size divides
256 (hex), and otherwise off by at most one part in 256 per character (with 62 characters, the
first 8 come up 5 times in 256 instead of 4): no client can tell, and ids only need to be
distinct and well-formed. The draws come from the request's seeded generator as before, so the
same ``--seed`` gives the same ids, pads and outcomes.
"""

from __future__ import annotations

import random
import string

__all__ = ["ALPHANUMERIC", "token", "token_bytes"]

#: Letters and digits: what OpenAI's ids and pads are made of.
ALPHANUMERIC = string.ascii_letters + string.digits

_TABLES: dict[str, bytes] = {}


def _table(alphabet: str) -> bytes:
    table = _TABLES.get(alphabet)
    if table is None:
        if not alphabet or len(alphabet) > 256 or not alphabet.isascii():
            raise ValueError("an alphabet is 1 to 256 ASCII characters")
        size = len(alphabet)
        table = _TABLES[alphabet] = bytes(ord(alphabet[i % size]) for i in range(256))
    return table


def token_bytes(rng: random.Random, size: int, alphabet: str = ALPHANUMERIC) -> bytes:
    """``size`` characters of ``alphabet`` drawn from ``rng``, as ASCII bytes."""
    return rng.randbytes(size).translate(_table(alphabet))


def token(rng: random.Random, size: int, alphabet: str = ALPHANUMERIC) -> str:
    """``size`` characters of ``alphabet`` drawn from ``rng``."""
    return token_bytes(rng, size, alphabet).decode("ascii")
