"""Shifts and rotates: SHL SHR SAR ROL ROR RCL RCR (and SAL's /6 alias) by 1, by an
imm8 and by CL, and the double shifts SHLD SHRD, with counts around 0..2*bits."""

from __future__ import annotations

import random

from differential.encode import RCX, encode, imm
from differential.forms.common import SIZES, Operands, bits
from differential.harness import AF, ARITH, CF, OF, Case, Form, State

KINDS = ("reg", "mem")
OPS = {0: "ROL", 1: "ROR", 2: "RCL", 3: "RCR", 4: "SHL", 5: "SHR", 6: "SAL", 7: "SAR"}


def count_value(rng: random.Random, width: int) -> int:
    """A count byte: mostly 0..2*width+1, then edges and whole random bytes (the
    processor masks the count to 5 or 6 bits)."""
    r = rng.random()
    if r < 0.6:
        return rng.randrange(2 * width + 2) & 0xFF
    if r < 0.8:
        return rng.choice((0, 1, 2, width - 1, width, width + 1, 31, 32, 33, 63, 64, 65, 0x80, 0xFF))
    return rng.getrandbits(8)


def masked(count: int, size: int) -> int:
    return count & (0x3F if size == 8 else 0x1F)


def _defined(op: str, size: int, count: int) -> int:
    """The SDM's flags after a shift or rotate by `count` (before masking): a zero masked
    count changes no flag; OF is defined for a masked count of 1 only; shifts make AF
    undefined, and SHL/SHR's CF when the count reaches the operand width; rotates leave
    SF ZF AF PF alone."""
    c = masked(count, size)
    if c == 0:
        return ARITH
    if op in ("ROL", "ROR", "RCL", "RCR"):
        return ARITH if c == 1 else ARITH & ~OF
    defined = ARITH & ~AF & ~(0 if c == 1 else OF)
    if op != "SAR" and c >= size * 8:
        defined &= ~CF
    return defined


def _count_of(case: Case, source: str) -> int:
    if source == "1":
        return 1
    if source == "cl":
        return case.regs[RCX] & 0xFF
    return case.code[-1]   # the imm8 ends the instruction


def _shift(opcode: int, digit: int, size: int, kind: str, source: str):
    def make(s: State) -> bytes:
        ops = Operands(s, size == 1)
        alias = source == "cl" and s.rng.random() < 0.1   # e.g. SHL CL, CL
        exclude = () if alias else (RCX,)
        rm = ops.mem(size, exclude=exclude) if kind == "mem" else ops.reg(size, exclude=exclude)
        immediate = b""
        if source == "cl" and not alias:
            s.put(RCX, 1, count_value(s.rng, size * 8))
            s.used.add(RCX)
        elif source == "imm":
            immediate = imm(count_value(s.rng, size * 8), 1)
        return encode(bytes([opcode]), None, rm, digit=digit, size=size, mode=s.mode, imm=immediate,
                      byte_rm=size == 1)
    return make


def _shift_forms() -> list[Form]:
    forms = []
    for digit, op in OPS.items():
        for size in SIZES:
            w = 0 if size == 1 else 1
            for source, opcode, what in (("1", 0xD0 + w, "1"), ("cl", 0xD2 + w, "CL"), ("imm", 0xC0 + w, "imm8")):
                for kind in KINDS:
                    name = f"{op} r/m{bits(size)},{what} ({opcode:02x} /{digit}) {kind}"
                    forms.append(Form(name, op, _shift(opcode, digit, size, kind, source),
                                      lambda case, op=op, size=size, source=source:
                                      _defined(op, size, _count_of(case, source))))
    return forms


def _double_count(rng: random.Random, size: int) -> int:
    """A count for SHLD/SHRD.  A 16-bit operand shifted by more than 16 gives an
    undefined result, so those counts are drawn with a masked value of 0..16."""
    while True:
        count = count_value(rng, size * 8)
        if size != 2 or masked(count, size) <= 16:
            return count


def _double(opcode: int, size: int, kind: str, source: str):
    def make(s: State) -> bytes:
        rm = s.memory(size, exclude=(RCX,)) if kind == "mem" else s.operand(size, exclude=(RCX,))
        src = s.operand(size, exclude=(RCX,))
        immediate = b""
        if source == "cl":
            s.put(RCX, 1, _double_count(s.rng, size))
            s.used.add(RCX)
        else:
            immediate = imm(_double_count(s.rng, size), 1)
        return encode(b"\x0f" + bytes([opcode]), src, rm, size=size, mode=s.mode, imm=immediate)
    return make


def _double_defined(case: Case, size: int, source: str) -> int:
    """SHLD/SHRD: no flag changes for a zero count; CF SF ZF PF by the result, OF for a
    count of 1 only, AF undefined."""
    c = masked(_count_of(case, source), size)
    if c == 0:
        return ARITH
    return ARITH & ~AF & ~(0 if c == 1 else OF)


def _double_forms() -> list[Form]:
    forms = []
    for mn, base in (("SHLD", 0xA4), ("SHRD", 0xAC)):
        for size in (2, 4, 8):
            for source, opcode, what in (("imm", base, "imm8"), ("cl", base + 1, "CL")):
                for kind in KINDS:
                    name = f"{mn} r/m{bits(size)},r,{what} (0f {opcode:02x}) {kind}"
                    forms.append(Form(name, mn, _double(opcode, size, kind, source),
                                      lambda case, size=size, source=source: _double_defined(case, size, source)))
    return forms


FORMS = _shift_forms() + _double_forms()
