"""Snippet scaffolding for the x87, MMX and SSE forms: the register state goes in and
comes out through fixed slots of the data buffer (the harness compares the buffer), and
every snippet leaves the host's control words as it found them.

Buffer layout (offsets in layout.DATA); memory operands lie around layout.MID, between:
  0x000 MXCSR / FCW in     0x004 MXCSR out     0x008 MXCSR 0x1F80 (to restore)
  0x010.. register inputs (16-byte XMM/MMX slots, or 10-byte x87 slots)
  0x180.. register outputs (16-byte slots; the 108-byte FNSAVE image for x87)"""

from __future__ import annotations

import random
import struct

from differential import layout
from differential.encode import Mem, encode

CTRL_IN, MXCSR_OUT, MXCSR_RESTORE = 0x000, 0x004, 0x008
IN = 0x010
OUT = 0x180


def at(offset: int) -> Mem:
    """An absolute [disp32] operand at DATA+offset."""
    return Mem(disp=layout.DATA + offset)


# ---- floating-point operand values -------------------------------------------------------

def _f32(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def _f64(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


F32_SPECIAL = [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001,
               0x7FA00000, 0xFFBFFFFF, 0x00000001, 0x807FFFFF, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF,
               _f32(1.0), _f32(-1.0), _f32(0.5), _f32(2.0), _f32(1.5), _f32(-2.5), _f32(3.0),
               _f32(2147483648.0), _f32(-2147483648.0), _f32(2147483520.0), _f32(9.2233720e18),
               _f32(0.1), _f32(65536.0), _f32(-0.5)]
F64_SPECIAL = [0, 1 << 63, 0x7FF0000000000000, 0xFFF0000000000000, 0x7FF8000000000000,
               0xFFF8000000000000, 0x7FF0000000000001, 0x7FF4000000000000, 0x0000000000000001,
               0x800FFFFFFFFFFFFF, 0x0010000000000000, 0x7FEFFFFFFFFFFFFF, _f64(1.0), _f64(-1.0),
               _f64(0.5), _f64(2.0), _f64(1.5), _f64(-2.5), _f64(2147483647.0), _f64(2147483648.0),
               _f64(-2147483648.5), _f64(9.223372036854775e18), _f64(-9.223372036854777e18),
               _f64(0.1), _f64(1e300), _f64(1e-310), _f64(3.0)]


def f32(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.35:
        return rng.choice(F32_SPECIAL)
    if r < 0.55:   # small integers and halves: exact conversions and ties
        return _f32(rng.randint(-300, 300) / rng.choice((1, 2, 4)))
    if r < 0.8:    # normal numbers near 1
        return (rng.getrandbits(1) << 31) | (rng.randint(100, 154) << 23) | rng.getrandbits(23)
    return rng.getrandbits(32)


def f64(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.35:
        return rng.choice(F64_SPECIAL)
    if r < 0.55:
        return _f64(rng.randint(-300, 300) / rng.choice((1, 2, 4)))
    if r < 0.8:
        return (rng.getrandbits(1) << 63) | (rng.randint(950, 1100) << 52) | rng.getrandbits(52)
    return rng.getrandbits(64)


def lanes(rng: random.Random, kind: str) -> bytes:
    """16 bytes of operand: float lanes, double lanes, or integers with edge bytes."""
    if kind == "f32":
        return b"".join(f32(rng).to_bytes(4, "little") for _ in range(4))
    if kind == "f64":
        return b"".join(f64(rng).to_bytes(8, "little") for _ in range(2))
    if kind == "str":   # short strings with repeats, for the string compares
        alphabet = rng.choice((b"ab", b"abc\0", bytes(range(0x41, 0x45)), bytes([0, 0xff, 0x80, 1])))
        return bytes(rng.choice(alphabet) for _ in range(16))
    out = bytearray()
    while len(out) < 16:
        r = rng.random()
        if r < 0.3:
            out += bytes([rng.choice((0, 1, 0x7F, 0x80, 0x81, 0xFE, 0xFF))] * rng.choice((1, 2, 4)))
        else:
            out += rng.randbytes(rng.choice((1, 2, 4, 8)))
    return bytes(out[:16])


def mxcsr(rng: random.Random, unmasked: float = 0.0) -> int:
    """Rounding control, DAZ, FTZ and sticky flags at random; exceptions masked unless
    `unmasked` (a probability) says otherwise."""
    value = rng.getrandbits(2) << 13 | rng.getrandbits(1) << 6 | rng.getrandbits(1) << 15
    value |= rng.getrandbits(6) if rng.random() < 0.3 else 0
    masks = 0x3F
    if rng.random() < unmasked:
        masks = rng.getrandbits(6)
        value &= ~0x3F   # no flag already set whose exception is unmasked
    return value | masks << 7


# x87 80-bit values: (significand, sign|exponent)
def x87_value(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.3:
        mant, se = rng.choice([
            (0, 0), (0, 0x8000), (1 << 63, 0x7FFF), (1 << 63, 0xFFFF), (3 << 62, 0x7FFF),
            (3 << 62, 0xFFFF), ((1 << 63) | 1, 0x7FFF), (1, 0), (1 << 62, 0x8000),
            (1 << 63, 0),            # pseudo-denormal
            (1 << 62, 0x3FFF),       # unnormal
            (0, 0x7FFF),             # pseudo-infinity
            (1 << 63, 0x3FFF), (1 << 63, 0xBFFF), (0xC90FDAA22168C235, 0x4000),
            ((1 << 64) - 1, 0x7FFE), (1 << 63, 0x0001)])
    elif r < 0.6:   # integers and halves
        n = rng.randint(-70000, 70000)
        if n == 0:
            mant, se = 0, 0
        else:
            e = abs(n).bit_length() - 1
            mant, se = abs(n) << (63 - e), (0x3FFF + e) | (0x8000 if n < 0 else 0)
        if rng.random() < 0.3 and mant:
            se -= 1   # a half
    else:
        mant = (1 << 63) | rng.getrandbits(63)
        se = rng.randint(0x3FF0, 0x4010) if rng.random() < 0.8 else rng.getrandbits(15)
        se |= rng.getrandbits(1) << 15
    return mant.to_bytes(8, "little") + se.to_bytes(2, "little")


def fcw(rng: random.Random, unmasked: float = 0.1) -> int:
    pc = rng.choice((0, 2, 3, 3))
    rc = rng.getrandbits(2)
    masks = 0x3F if rng.random() >= unmasked else rng.getrandbits(6)
    return 0x40 | masks | pc << 8 | rc << 10


# ---- snippet pieces (64-bit code) ------------------------------------------------------------

def ldmxcsr(offset: int) -> bytes:
    return encode(b"\x0f\xae", 2, at(offset))


def stmxcsr(offset: int) -> bytes:
    return encode(b"\x0f\xae", 3, at(offset))


def movdqu_load(xmm: int, offset: int) -> bytes:
    return encode(b"\x0f\x6f", xmm, at(offset), prefix=b"\xf3")


def movdqu_store(xmm: int, offset: int) -> bytes:
    return encode(b"\x0f\x7f", xmm, at(offset), prefix=b"\xf3")


def movq_mm_load(mm: int, offset: int) -> bytes:
    return encode(b"\x0f\x6f", mm & 7, at(offset))


def movq_mm_store(mm: int, offset: int) -> bytes:
    return encode(b"\x0f\x7f", mm & 7, at(offset))


FNINIT = b"\xdb\xe3"
EMMS = b"\x0f\x77"


def fldcw(offset: int) -> bytes:
    return encode(b"\xd9", 5, at(offset))


def fld80(offset: int) -> bytes:
    return encode(b"\xdb", 5, at(offset))


def fnsave(offset: int) -> bytes:
    """FNSAVE, then the pointer fields (FIP, FCS, FOP, FDP, FDS) cleared: their values
    differ between processors (and the host's CS and DS are not the guest's)."""
    zero = encode(b"\xc7", 0, at(offset + 12), size=8, imm=b"\0\0\0\0")
    zero2 = encode(b"\xc7", 0, at(offset + 20), size=8, imm=b"\0\0\0\0")
    return encode(b"\xdd", 6, at(offset)) + zero + zero2
