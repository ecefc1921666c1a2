"""Bit tests and scans: BT BTS BTR BTC with register and immediate offsets on register
and memory operands (register offsets reach beyond a memory operand, both ways),
BSF BSR, and TZCNT LZCNT POPCNT where the host has them."""

from __future__ import annotations

from differential import values
from differential.encode import encode, gpr_of, imm
from differential.forms.common import Operands, bits
from differential.harness import ARITH, CF, ZF, Case, Form, State
from differential.host import host_has

KINDS = ("reg", "mem")
# the SDM's defined flags; the rest are undefined
DEFINED = {"BT": CF | ZF, "BTS": CF | ZF, "BTR": CF | ZF, "BTC": CF | ZF, "BSF": ZF, "BSR": ZF,
           "TZCNT": CF | ZF, "LZCNT": CF | ZF, "POPCNT": ARITH}
BIT_OPS = ("BT", "BTS", "BTR", "BTC")


def _bit_offset(s: State, size: int, kind: str) -> int:
    """A register bit offset: inside the operand, or (memory operands) up to 1023 bits
    either way; register operands take any value, the processor reduces it."""
    width = size * 8
    r = s.rng.random()
    if r < 0.4:
        return s.rng.randrange(width)
    if kind == "mem":
        return s.rng.randrange(-1024, 1024) & values.mask(width)
    return values.operand(s.rng, width)


def _bt_reg(opcode: int, size: int, kind: str):
    def make(s: State) -> bytes:
        ops = Operands(s, False)
        rm = ops.rm(kind, size)
        offset = ops.reg(size, _bit_offset(s, size, kind))
        return encode(b"\x0f" + bytes([opcode]), offset, rm, size=size, mode=s.mode)
    return make


def _scan(opcode: bytes, size: int, kind: str, prefix: bytes = b""):
    """BSF/BSR/TZCNT/LZCNT/POPCNT r, r/m: the source is zero one time in eight."""
    def make(s: State) -> bytes:
        ops = Operands(s, False)
        source = 0 if s.rng.random() < 0.125 else values.operand(s.rng, size * 8)
        rm = ops.rm(kind, size, source)
        dest = ops.reg(size)      # may alias a register source: that value counts
        s.info["dest"] = gpr_of(dest)
        s.info["source_zero"] = (source if kind == "mem" else s.value(rm, size)) == 0
        return encode(opcode, dest, rm, size=size, mode=s.mode, prefix=prefix)
    return make


def _undefined_if_zero(case: Case) -> dict[int, int]:
    """BSF/BSR leave the destination undefined for a zero source."""
    return {case.info["dest"]: values.M64} if case.info["source_zero"] else {}


def _forms() -> list[Form]:
    forms = []
    for size in (2, 4, 8):
        for kind in KINDS:
            for n, mn in enumerate(BIT_OPS):
                forms.append(Form(f"{mn} r/m{bits(size)},r (0f {0xa3 + 8 * n:02x}) {kind}", mn,
                                  _bt_reg(0xA3 + 8 * n, size, kind), DEFINED[mn]))
                forms.append(Form(f"{mn} r/m{bits(size)},imm8 (0f ba /{4 + n}) {kind}", mn,
                                  lambda s, n=n, size=size, kind=kind: encode(
                                      b"\x0f\xba", None, Operands(s, False).rm(kind, size), digit=4 + n,
                                      size=size, mode=s.mode, imm=imm(s.rng.getrandbits(8), 1)),
                                  DEFINED[mn]))
            forms.append(Form(f"BSF r,r/m{bits(size)} (0f bc) {kind}", "BSF", _scan(b"\x0f\xbc", size, kind),
                              DEFINED["BSF"], undefined=_undefined_if_zero))
            forms.append(Form(f"BSR r,r/m{bits(size)} (0f bd) {kind}", "BSR", _scan(b"\x0f\xbd", size, kind),
                              DEFINED["BSR"], undefined=_undefined_if_zero))
            for mn, opcode, feature in (("TZCNT", b"\x0f\xbc", "bmi1"), ("LZCNT", b"\x0f\xbd", "abm"),
                                        ("POPCNT", b"\x0f\xb8", "popcnt")):
                if host_has(feature):
                    forms.append(Form(f"{mn} r,r/m{bits(size)} (f3 {opcode.hex(' ')}) {kind}", mn,
                                      _scan(opcode, size, kind, prefix=b"\xf3"), DEFINED[mn]))
    return forms


FORMS = _forms()
