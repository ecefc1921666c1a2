"""32-bit code: the instructions that only exist outside 64-bit mode (DAA DAS AAA AAS
AAM AAD, PUSHA POPA, INC/DEC 40+r/48+r, the 82 alias of group 1, ARPL, JCXZ and LOOP
with CX) and the general forms again at 32- and 16-bit operand size in 32-bit code.
Natively they run in compatibility mode; emulated, alternately in legacy protected mode
and in compatibility mode."""

from __future__ import annotations

import dataclasses

from differential import layout, values
from differential.encode import RAX, RBX, RCX, RSP, encode
from differential.forms import alu, bits, moves, muldiv, shifts, stack, strings
from differential.forms.common import modrm_form
from differential.forms.moves import CONDITIONS
from differential.harness import AF, ARITH, CF, OF, PF, SF, ZF, Form, State

DEFINED = {
    "DAA": ARITH & ~OF, "DAS": ARITH & ~OF,   # OF undefined
    "AAA": AF | CF, "AAS": AF | CF,           # OF SF ZF PF undefined
    "AAM": SF | ZF | PF, "AAD": SF | ZF | PF,  # OF AF CF undefined
    "PUSHA": ARITH, "POPA": ARITH, "INC": ARITH, "DEC": ARITH, "ARPL": ARITH,
}
MARK32 = bytes.fromhex("8d5b01")   # lea ebx, [ebx+1]


def _form(name: str, group: str, make, flags: int, **kw) -> Form:
    return Form(name + " [32-bit]", group, make, flags, mode=32, **kw)


def _ascii(opcode: int):
    """DAA DAS AAA AAS: AL (and AH) with the case's random AF and CF."""
    def make(s: State) -> bytes:
        s.put(RAX, 2)
        return bytes([opcode])
    return make


def _aam_aad(opcode: int, faulting: bool = False):
    """AAM/AAD imm8: base 10 half of the time; AAM with base 0 raises #DE."""
    def make(s: State) -> bytes:
        s.put(RAX, 2)
        base = 0 if faulting else (10 if s.rng.random() < 0.5 else s.rng.randint(1, 255))
        return bytes([opcode, base])
    return make


def _pusha_popa(opcode: int, size: int):
    def make(s: State) -> bytes:
        s.pointer(RSP, layout.MID + s.rng.randrange(-0x40, 0x40))
        for r in range(8):
            if r != RSP:
                s.put(r, 4)
        return encode(bytes([opcode]), size=size, mode=32)
    return make


def _inc_dec_short(opcode: int, size: int):
    def make(s: State) -> bytes:
        return encode(bytes([opcode]), opreg=s.operand(size), size=size, mode=32)
    return make


def _arpl(kind: str):
    """ARPL r/m16, r16: random selectors, so the RPL is raised about a third of the time."""
    return modrm_form(b"\x63", 4, kind, rm_size=2)


def _jcc32(cc: int):
    def make(s: State) -> bytes:
        s.put(RBX, 4)
        s.used.add(RBX)
        return bytes([0x70 + cc, len(MARK32)]) + MARK32
    return make


def _loop16(opcode: int, prefix: bytes):
    """LOOPcc / JCXZ / JECXZ forward over the marker; 67 makes the count CX."""
    def make(s: State) -> bytes:
        s.put(RBX, 4)
        s.used.add(RBX)
        width = 16 if prefix else 32
        s.pointer(RCX, s.rng.choice((0, 1, 2, values.operand(s.rng, width))) | s.rng.getrandbits(32) & ~values.mask(width))
        return prefix + bytes([opcode, len(MARK32)]) + MARK32
    return make


def _legacy_forms() -> list[Form]:
    forms = []
    for mn, opcode in (("DAA", 0x27), ("DAS", 0x2F), ("AAA", 0x37), ("AAS", 0x3F)):
        forms.append(_form(f"{mn} ({opcode:02x})", "BCD", _ascii(opcode), DEFINED[mn]))
    forms.append(_form("AAM imm8 (d4)", "BCD", _aam_aad(0xD4), DEFINED["AAM"]))
    forms.append(_form("AAD imm8 (d5)", "BCD", _aam_aad(0xD5), DEFINED["AAD"]))
    forms.append(_form("AAM 0 #DE (d4 00)", "BCD", _aam_aad(0xD4, faulting=True), DEFINED["AAM"], faults=True))
    for size in (4, 2):
        b = size * 8
        forms.append(_form(f"PUSHA {b} (60)", "PUSHA/POPA", _pusha_popa(0x60, size), DEFINED["PUSHA"]))
        forms.append(_form(f"POPA {b} (61)", "PUSHA/POPA", _pusha_popa(0x61, size), DEFINED["POPA"]))
        forms.append(_form(f"INC r{b} (40+r)", "INC/DEC 40+r", _inc_dec_short(0x40, size), DEFINED["INC"]))
        forms.append(_form(f"DEC r{b} (48+r)", "INC/DEC 40+r", _inc_dec_short(0x48, size), DEFINED["DEC"]))
    for n, mn in enumerate(alu.ALU_OPS):
        for kind in ("reg", "mem"):
            forms.append(_form(f"{mn} r/m8,imm8 (82 /{n}) {kind}", "82 alias",
                               modrm_form(b"\x82", 1, kind, digit=n, imm_size=1), alu.DEFINED[mn]))
    for kind in ("reg", "mem"):
        forms.append(_form(f"ARPL r/m16,r16 (63) {kind}", "ARPL", _arpl(kind), DEFINED["ARPL"]))
    for cc, name in enumerate(CONDITIONS):
        forms.append(_form(f"J{name} rel8 ({0x70 + cc:02x})", "Jcc/LOOP", _jcc32(cc), ARITH))
    for mn, opcode in (("LOOPNE", 0xE0), ("LOOPE", 0xE1), ("LOOP", 0xE2), ("JECXZ", 0xE3)):
        forms.append(_form(f"{mn} ECX ({opcode:02x})", "Jcc/LOOP", _loop16(opcode, b""), ARITH))
        forms.append(_form(f"{mn.replace('JECXZ', 'JCXZ')} CX (67 {opcode:02x})", "Jcc/LOOP",
                           _loop16(opcode, b"\x67"), ARITH))
    return forms


def _general_in_32bit() -> list[Form]:
    """The general forms that exist in 32-bit code, at their 8/16/32-bit sizes."""
    picked = [f for f in alu.FORMS + shifts.FORMS + muldiv.FORMS + bits.FORMS if "64" not in f.name]
    movable = {"MOV", "MOVZX", "MOVSX", "LEA", "XCHG", "XADD", "CMPXCHG", "CMPXCHG8B", "BSWAP", "MOVBE",
               "SETcc", "CMOVcc", "CBW..CQO", "flags"}
    picked += [f for f in moves.FORMS if f.group in movable and "moffs" not in f.name
               and ("64" not in f.name or f.group == "CMPXCHG8B") and "CDQE" not in f.name and "CQO" not in f.name]
    picked += [f for f in strings.FORMS if f.name.endswith("addr32") and " 64 " not in f.name]
    clones = [dataclasses.replace(f, name=f.name + " [32-bit]", mode=32) for f in picked]
    return clones + stack.forms_for(32)


FORMS = _legacy_forms() + _general_in_32bit()
