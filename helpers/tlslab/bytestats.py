"""How random do some bytes look? Byte-value counts and Shannon entropy.

Plaintext is full of patterns (English letters, spaces, a few repeated words); good ciphertext
is indistinguishable from random bytes. Entropy measures the difference in bits per byte:

    >>> round(shannon_entropy(b"aaaa"), 2)
    0.0
    >>> round(shannon_entropy(bytes(range(256))), 2)
    8.0
"""

from __future__ import annotations

import math
from collections import Counter

__all__ = ["byte_histogram", "describe_entropy", "shannon_entropy"]


def byte_histogram(data: bytes) -> list[int]:
    """How many times each byte value 0…255 occurs in ``data``."""
    counts = Counter(data)
    return [counts.get(value, 0) for value in range(256)]


def shannon_entropy(data: bytes) -> float:
    """Bits of information per byte, from 0 (one value repeated) to 8 (every value equally likely)."""
    if not data:
        return 0.0
    total = len(data)
    return sum(n / total * math.log2(total / n) for n in Counter(data).values())


def describe_entropy(bits_per_byte: float) -> str:
    """Words for an entropy value, coarse enough to read the same on every run."""
    if bits_per_byte >= 7.0:
        return "looks random (like ciphertext)"
    if bits_per_byte >= 5.5:
        return "mixed (some structure left)"
    return "full of patterns (like text)"
