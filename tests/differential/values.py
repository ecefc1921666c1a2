"""Operand values: edge values of each width mixed with random ones of random widths,
from per-form generators seeded deterministically by the form's name."""

from __future__ import annotations

import random
import zlib

M64 = (1 << 64) - 1


def rng_for(name: str) -> random.Random:
    return random.Random(zlib.crc32(name.encode()))


def mask(bits: int) -> int:
    return (1 << bits) - 1


def _edges(bits: int) -> tuple[int, ...]:
    m, sign = mask(bits), 1 << (bits - 1)
    values = {0, 1, 2, 3, 7, 8, 9, 0xF, 0x10, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF,
              0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, m, m - 1, m - 2, sign, sign - 1, sign + 1,
              1 << (bits // 2), (1 << (bits // 2)) - 1, 0x5555555555555555, 0xAAAAAAAAAAAAAAAA,
              0x0F0F0F0F0F0F0F0F, 0xF0F0F0F0F0F0F0F0, 0x0123456789ABCDEF}
    return tuple(sorted(v & m for v in values))


EDGES = {bits: _edges(bits) for bits in (8, 16, 32, 64)}


def operand(rng: random.Random, bits: int) -> int:
    """A value of `bits` bits: an edge value, a small one, or random of random width."""
    r = rng.random()
    if r < 0.3:
        return rng.choice(EDGES[bits])
    if r < 0.4:
        return rng.randrange(-4, 2 * bits + 2) & mask(bits)
    width = bits if r < 0.75 else rng.randint(1, bits)
    value = rng.getrandbits(width)
    if rng.random() < 0.2:
        value = -value & mask(bits)   # small negative numbers
    return value
