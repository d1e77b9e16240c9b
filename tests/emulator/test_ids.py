"""The emulator's seeded random tokens (callproof.emulator.ids)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from callproof.emulator.ids import ALPHANUMERIC, token, token_bytes


def test_a_token_has_its_size_and_only_its_alphabet() -> None:
    rng = random.Random(1)
    for size in (0, 1, 12, 29, 300):
        value = token(rng, size)
        assert len(value) == size
        assert set(value) <= set(ALPHANUMERIC)
    hexed = token(rng, 48, "0123456789abcdef")
    assert len(hexed) == 48
    assert set(hexed) <= set("0123456789abcdef")
    assert token_bytes(rng, 5, "ab").strip(b"ab") == b""


def test_the_same_seed_gives_the_same_tokens_and_others_differ() -> None:
    first = [token(random.Random(7), 24) for _ in range(2)]
    assert first[0] == first[1]
    rng = random.Random(7)
    assert token(rng, 24) == first[0]
    assert token(rng, 24) != first[0]  # the generator moved on
    assert token(random.Random(8), 24) != first[0]


def test_every_character_comes_up_and_none_dominates() -> None:
    counts = Counter(token(random.Random(3), 62 * 400))
    assert set(counts) == set(ALPHANUMERIC)
    # 62 characters over 256 byte values: each 4/256 or 5/256 of the draws, never more
    assert max(counts.values()) / sum(counts.values()) < 6 / 256


@pytest.mark.parametrize("alphabet", ["", "é", "x" * 257])
def test_an_alphabet_that_cannot_map_bytes_is_refused(alphabet: str) -> None:
    with pytest.raises(ValueError, match="alphabet"):
        token(random.Random(0), 3, alphabet)
