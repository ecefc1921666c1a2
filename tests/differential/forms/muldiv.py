"""Multiply and divide: MUL and IMUL (one, two and three operands), DIV and IDIV with
operands that do not fault, and the #DE cases (divide by zero, quotient too large),
which fault natively and must fault the same way, leaving the state unchanged."""

from __future__ import annotations

import random

from differential import values
from differential.encode import RAX, RDX, encode, imm
from differential.forms.common import SIZES, Operands, bits, modrm_form
from differential.harness import CF, OF, Form, State

KINDS = ("reg", "mem")
DEFINED = {"MUL": CF | OF, "IMUL": CF | OF, "DIV": 0, "IDIV": 0}   # the rest is undefined


def _signed(v: int, width: int) -> int:
    return v - (1 << width) if v >> (width - 1) else v


def _unsigned_division(rng: random.Random, width: int) -> tuple[int, int]:
    """(dividend, divisor) whose quotient fits: the dividend's high half is below the
    divisor."""
    d = values.operand(rng, width) or 1
    high = rng.choice((0, d - 1, rng.randrange(d)))
    return high << width | values.operand(rng, width), d


def _signed_division(rng: random.Random, width: int) -> tuple[int, int]:
    """(dividend, divisor) as 2*width- and width-bit values: a quotient in range and a
    remainder with the dividend's sign, smaller than the divisor."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    d = _signed(values.operand(rng, width), width) or rng.choice((1, -1))
    q = rng.choice((lo, hi, 0, 1, -1, rng.randint(lo, hi), _signed(values.operand(rng, width), width)))
    r = rng.randrange(abs(d))
    if q * d < 0 or (q * d == 0 and rng.random() < 0.5):
        r = -r
    return (q * d + r) & values.mask(2 * width), d & values.mask(width)


def _faulting_division(rng: random.Random, width: int, signed: bool) -> tuple[int, int]:
    """A division that raises #DE: by zero, or with a quotient out of range."""
    r = rng.random()
    if r < 0.3:
        return rng.getrandbits(2 * width), 0
    if signed:
        if r < 0.4:
            return 1 << (2 * width - 1), values.mask(width)    # the most negative by -1
        d = rng.choice((1, -1, 2, -2, rng.randint(3, 7)))
        top, extra = 1 << (width - 1), rng.randrange(1 << (width // 2))
        q = rng.choice((top, top + extra, -top - 1 - extra))
        return (q * d) & values.mask(2 * width), d & values.mask(width)
    d = values.operand(rng, width) or 1
    return (rng.randint(d, values.mask(width)) << width) | rng.getrandbits(width), d


def _accumulator(s: State, size: int, value: int, pin: bool):
    """Set AX (byte forms) or rDX:rAX to a 2*size-byte value; pinned, they stay out of
    the other operands, else an operand may alias them (MUL RAX)."""
    if size == 1:
        s.put(RAX, 2, value)
    else:
        s.put(RAX, size, value)
        s.put(RDX, size, value >> (size * 8))
    regs = {RAX, RDX} if size > 1 else {RAX}
    s.used |= regs
    if pin:
        s.pinned |= regs


def _one_operand(digit: int, size: int, kind: str, division=None):
    """F6/F7 /digit with the accumulator operands: random for MUL/IMUL, chosen by
    `division(rng, width)` -> (dividend, divisor) for DIV/IDIV."""
    opcode = bytes([0xF6 if size == 1 else 0xF7])

    def make(s: State) -> bytes:
        ops = Operands(s, size == 1)
        if division:
            dividend, divisor = division(s.rng, size * 8)
        else:
            dividend = values.operand(s.rng, size * 8) | values.operand(s.rng, size * 8) << (size * 8)
            divisor = None
        _accumulator(s, size, dividend, pin=division is not None)
        rm = ops.rm(kind, size, divisor)
        return encode(opcode, None, rm, digit=digit, size=size, mode=s.mode, byte_rm=size == 1)
    return make


def _forms() -> list[Form]:
    forms = []
    for size in SIZES:
        width = size * 8
        w = 0xF6 if size == 1 else 0xF7
        for kind in KINDS:
            forms.append(Form(f"MUL r/m{bits(size)} ({w:02x} /4) {kind}", "MUL",
                              _one_operand(4, size, kind), DEFINED["MUL"]))
            forms.append(Form(f"IMUL r/m{bits(size)} ({w:02x} /5) {kind}", "IMUL",
                              _one_operand(5, size, kind), DEFINED["IMUL"]))
            forms.append(Form(f"DIV r/m{bits(size)} ({w:02x} /6) {kind}", "DIV",
                              _one_operand(6, size, kind, _unsigned_division), DEFINED["DIV"]))
            forms.append(Form(f"IDIV r/m{bits(size)} ({w:02x} /7) {kind}", "IDIV",
                              _one_operand(7, size, kind, _signed_division), DEFINED["IDIV"]))
            for mn, digit, signed in (("DIV", 6, False), ("IDIV", 7, True)):
                forms.append(Form(f"{mn} r/m{bits(size)} #DE ({w:02x} /{digit}) {kind}", "#DE",
                                  _one_operand(digit, size, kind,
                                               lambda rng, width, signed=signed: _faulting_division(rng, width, signed)),
                                  DEFINED[mn], faults=True))
            if size > 1:
                forms.append(Form(f"IMUL r,r/m{width} (0f af) {kind}", "IMUL",
                                  modrm_form(b"\x0f\xaf", size, kind), DEFINED["IMUL"]))
                forms.append(Form(f"IMUL r,r/m{width},imm8 (6b) {kind}", "IMUL",
                                  modrm_form(b"\x6b", size, kind, imm_size=1), DEFINED["IMUL"]))
                forms.append(Form(f"IMUL r,r/m{width},imm (69) {kind}", "IMUL",
                                  modrm_form(b"\x69", size, kind, imm_size=2 if size == 2 else 4),
                                  DEFINED["IMUL"]))
    return forms


FORMS = _forms()
