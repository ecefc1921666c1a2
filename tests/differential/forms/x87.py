"""x87 FPU forms: every register form (D8-DF with mod 11) and memory form, run on a
stack of random depth holding NaNs, infinities, denormals, unnormals and ordinary
numbers, under random precision and rounding control and exception masks; the whole
FPU state comes out through FNSAVE (tags, TOP, condition codes, exception flags)."""

from __future__ import annotations

import struct

from differential import values
from differential.forms import fpu_common as fc
from differential.encode import encode
from differential.harness import ARITH, Form, State

# register forms that exist (decode_x87.c), by opcode: ModRM bytes C0..FF
INVALID = {
    0xD9: {0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xE2, 0xE3, 0xE6, 0xE7, 0xEF},
    0xDA: set(range(0xE0, 0x100)) - {0xE9},
    0xDB: set(range(0xE5, 0xE8)) | set(range(0xF8, 0x100)),
    0xDD: set(range(0xF0, 0x100)),
    0xDE: {0xD8, *range(0xDA, 0xE0)},
    0xDF: set(range(0xE1, 0xE8)) | set(range(0xF8, 0x100)),
}
CONTROL = {(0xDB, m) for m in range(0xE0, 0xE5)} | {(0xDF, 0xE0)}
FCOMI = {(op, m) for op in (0xDB, 0xDF) for m in range(0xE8, 0xF8)}


def _prologue(s: State, depth: int | None = None) -> bytes:
    rng = s.rng
    s.write(fc.layout.DATA + fc.CTRL_IN, 2, fc.fcw(rng))
    if depth is None:
        depth = rng.choice((0, 1, 2, 2, 3, 4, 7, 8)) if rng.random() < 0.3 else rng.randint(2, 4)
    # every physical register zero first: empty registers still hold old contents,
    # and a fault in an earlier case leaves the host's and the guest's different
    code = fc.FNINIT + b"\xd9\xee" * 8 + fc.FNINIT + fc.fldcw(fc.CTRL_IN)
    for k in range(depth):
        s.write(fc.layout.DATA + fc.IN + 10 * k, 10, int.from_bytes(fc.x87_value(rng), "little"))
        code += fc.fld80(fc.IN + 10 * k)
    return code


def _epilogue() -> bytes:
    return fc.fnsave(fc.OUT)


def _reg_form(opcode: int, modrms: list[int]):
    def make(s: State) -> bytes:
        return _prologue(s) + bytes([opcode, s.rng.choice(modrms)]) + _epilogue()
    return make


def _mem_value(rng, kind: str) -> int:
    if kind == "f32":
        return fc.f32(rng)
    if kind == "f64":
        return fc.f64(rng)
    if kind == "f80":
        return int.from_bytes(fc.x87_value(rng), "little")
    if kind == "bcd":
        digits = rng.randrange(10 ** 18)
        raw = int(str(digits), 16) | (rng.getrandbits(1) << 79)
        return raw if rng.random() < 0.9 else rng.getrandbits(80)
    bits = {"i16": 16, "i32": 32, "i64": 64}[kind]
    if rng.random() < 0.5:
        return values.operand(rng, bits)
    return rng.randint(-100000, 100000) & ((1 << bits) - 1)


def _mem_form(opcode: int, digit: int, size: int, kind: str, prefix: bytes = b""):
    def make(s: State) -> bytes:
        code = _prologue(s)
        mem = s.memory(size, _mem_value(s.rng, kind) & ((1 << (8 * size)) - 1))
        return code + encode(bytes([opcode]), digit, mem, prefix=prefix,
                             at=fc.layout.CODE + len(code)) + _epilogue()
    return make


FORMS: list[Form] = []

for opcode in range(0xD8, 0xE0):
    for digit in range(8):
        modrms = [0xC0 | digit << 3 | r for r in range(8)
                  if (0xC0 | digit << 3 | r) not in INVALID.get(opcode, set())
                  and (opcode, 0xC0 | digit << 3 | r) not in CONTROL]
        if not modrms:
            continue
        flags = ARITH
        if opcode == 0xD9 and digit >= 4:   # one form per instruction: FCHS, FLDPI, FSIN, ...
            for m in modrms:
                FORMS.append(Form(f"{opcode:02x} {m:02x}", "x87-reg", _reg_form(opcode, [m]), flags))
            continue
        FORMS.append(Form(f"{opcode:02x} /{digit} st(i)", "x87-reg", _reg_form(opcode, modrms), flags))
for opcode, m in sorted(CONTROL):
    FORMS.append(Form(f"{opcode:02x} {m:02x} control", "x87-control", _reg_form(opcode, [m]), ARITH))

ARITH_DIGITS = range(8)
MEM = [(0xD8, d, 4, "f32") for d in ARITH_DIGITS] + [(0xDC, d, 8, "f64") for d in ARITH_DIGITS] + \
      [(0xDA, d, 4, "i32") for d in ARITH_DIGITS] + [(0xDE, d, 2, "i16") for d in ARITH_DIGITS] + [
    (0xD9, 0, 4, "f32"), (0xD9, 2, 4, "f32"), (0xD9, 3, 4, "f32"),
    (0xDD, 0, 8, "f64"), (0xDD, 1, 8, "i64"), (0xDD, 2, 8, "f64"), (0xDD, 3, 8, "f64"),
    (0xDB, 0, 4, "i32"), (0xDB, 1, 4, "i32"), (0xDB, 2, 4, "i32"), (0xDB, 3, 4, "i32"),
    (0xDB, 5, 10, "f80"), (0xDB, 7, 10, "f80"),
    (0xDF, 0, 2, "i16"), (0xDF, 1, 2, "i16"), (0xDF, 2, 2, "i16"), (0xDF, 3, 2, "i16"),
    (0xDF, 4, 10, "bcd"), (0xDF, 5, 8, "i64"), (0xDF, 6, 10, "bcd"), (0xDF, 7, 8, "i64"),
    (0xD9, 5, 2, "i16"), (0xD9, 7, 2, "i16"), (0xDD, 7, 2, "i16"),   # FLDCW FNSTCW FNSTSW
    (0xD9, 4, 28, "env"), (0xD9, 6, 28, "env"), (0xDD, 4, 108, "env"), (0xDD, 6, 108, "env"),
]


def _env_value(s: State, size: int) -> int:
    """An environment (and registers) with plausible control and status words."""
    rng = s.rng
    raw = bytearray(rng.randbytes(size))
    raw[0:2] = fc.fcw(rng, 0.2).to_bytes(2, "little")
    if rng.random() < 0.5:
        raw[4:6] = (rng.getrandbits(16) & ~0x80).to_bytes(2, "little")
    for k in range(8 if size > 28 else 0):
        raw[28 + 10 * k:38 + 10 * k] = fc.x87_value(rng)
    return int.from_bytes(raw, "little")


for opcode, digit, size, kind in MEM:
    if kind == "env":
        def make(s: State, opcode=opcode, digit=digit, size=size) -> bytes:
            code = _prologue(s)
            ea = s.address(size)
            mem = s.memory(size, _env_value(s, size), ea=ea)
            code += encode(bytes([opcode]), digit, mem, at=fc.layout.CODE + len(code))
            if digit == 6:   # FNSTENV, FNSAVE: the pointers differ between processors
                offset = ea - fc.layout.DATA
                code += encode(b"\xc7", 0, fc.at(offset + 12), size=8, imm=b"\0\0\0\0")
                code += encode(b"\xc7", 0, fc.at(offset + 20), size=8, imm=b"\0\0\0\0")
            return code + _epilogue()
        FORMS.append(Form(f"{opcode:02x} /{digit} m{size * 8}", "x87-env", make, ARITH))
        continue
    FORMS.append(Form(f"{opcode:02x} /{digit} m{size * 8} {kind}", "x87-mem",
                      _mem_form(opcode, digit, size, kind), ARITH))


def _fnstsw_ax(s: State) -> bytes:
    return _prologue(s) + b"\xd8\xc1" + b"\xdf\xe0" + _epilogue()


def _pending(s: State) -> bytes:
    """An operation with unmasked exceptions, then FWAIT: #MF at the FWAIT (or not)."""
    return _prologue(s, depth=3) + b"\xde\xf9" + b"\x9b" + b"\xd9\xe8" + _epilogue()


FORMS.append(Form("df e0 fnstsw ax", "x87-control", _fnstsw_ax, ARITH))
FORMS.append(Form("fdivp; fwait (#MF)", "x87-control", _pending, ARITH, faults=True))
