"""Integer ALU forms: ADD OR ADC SBB AND SUB XOR CMP in every encoding, TEST, INC DEC
NEG NOT, LOCK-prefixed read-modify-write forms, and ADC/SBB carry chains."""

from __future__ import annotations

from differential import layout, values
from differential.encode import RAX, encode, imm
from differential.forms.common import SIZES, Operands, bits, modrm_form
from differential.harness import AF, ARITH, Form, State

LOGIC = ARITH & ~AF    # OF and CF cleared, SF ZF PF by result, AF undefined

# The arithmetic flags the SDM defines after each instruction (unaffected flags are
# defined: they keep their value).
DEFINED = {
    "ADD": ARITH, "OR": LOGIC, "ADC": ARITH, "SBB": ARITH, "AND": LOGIC, "SUB": ARITH,
    "XOR": LOGIC, "CMP": ARITH, "TEST": LOGIC, "INC": ARITH, "DEC": ARITH, "NEG": ARITH,
    "NOT": ARITH,
}
ALU_OPS = ("ADD", "OR", "ADC", "SBB", "AND", "SUB", "XOR", "CMP")
KINDS = ("reg", "mem")


def _iz(size: int) -> int:
    return 2 if size == 2 else 4


def _acc_imm(opcode: int, size: int, imm_size: int):
    def make(s: State) -> bytes:
        s.put(RAX, size)
        s.used.add(RAX)
        return encode(bytes([opcode]), size=size, imm=imm(values.operand(s.rng, imm_size * 8), imm_size))
    return make


def _alu_forms() -> list[Form]:
    forms = []
    for n, mn in enumerate(ALU_OPS):
        def add(name, make):
            forms.append(Form(f"{mn} {name}", mn, make, DEFINED[mn]))
        for size in SIZES:
            w = 0 if size == 1 else 1
            for kind in KINDS:
                add(f"r/m{bits(size)},r ({8 * n + w:02x}) {kind}", modrm_form(bytes([8 * n + w]), size, kind))
                add(f"r,r/m{bits(size)} ({8 * n + 2 + w:02x}) {kind}", modrm_form(bytes([8 * n + 2 + w]), size, kind))
                if size == 1:
                    add(f"r/m8,imm8 (80 /{n}) {kind}", modrm_form(b"\x80", 1, kind, digit=n, imm_size=1))
                else:
                    add(f"r/m{bits(size)},imm (81 /{n}) {kind}",
                        modrm_form(b"\x81", size, kind, digit=n, imm_size=_iz(size)))
                    add(f"r/m{bits(size)},imm8 (83 /{n}) {kind}", modrm_form(b"\x83", size, kind, digit=n, imm_size=1))
            add(f"acc{bits(size)},imm ({8 * n + 4 + w:02x})", _acc_imm(8 * n + 4 + w, size, 1 if size == 1 else _iz(size)))
    return forms


def _group3_forms() -> list[Form]:
    forms = []
    for size in SIZES:
        w = 0 if size == 1 else 1
        for kind in KINDS:
            forms.append(Form(f"TEST r/m{bits(size)},r ({0x84 + w:02x}) {kind}", "TEST",
                              modrm_form(bytes([0x84 + w]), size, kind), DEFINED["TEST"]))
            forms.append(Form(f"TEST r/m{bits(size)},imm ({0xf6 + w:02x} /0) {kind}", "TEST",
                              modrm_form(bytes([0xF6 + w]), size, kind, digit=0,
                                         imm_size=1 if size == 1 else _iz(size)), DEFINED["TEST"]))
            for mn, digit in (("NOT", 2), ("NEG", 3)):
                forms.append(Form(f"{mn} r/m{bits(size)} ({0xf6 + w:02x} /{digit}) {kind}", mn,
                                  modrm_form(bytes([0xF6 + w]), size, kind, digit=digit), DEFINED[mn]))
            for mn, digit in (("INC", 0), ("DEC", 1)):
                forms.append(Form(f"{mn} r/m{bits(size)} ({0xfe + w:02x} /{digit}) {kind}", mn,
                                  modrm_form(bytes([0xFE + w]), size, kind, digit=digit), DEFINED[mn]))
        forms.append(Form(f"TEST acc{bits(size)},imm ({0xa8 + w:02x})", "TEST",
                          _acc_imm(0xA8 + w, size, 1 if size == 1 else _iz(size)), DEFINED["TEST"]))
    return forms


def _locked_forms() -> list[Form]:
    """LOCK with a memory destination: the same results as without."""
    forms = []
    for n, mn in enumerate(ALU_OPS[:7]):
        for size in (1, 4, 8):
            w = 0 if size == 1 else 1
            forms.append(Form(f"LOCK {mn} m{bits(size)},r ({8 * n + w:02x})", "LOCK",
                              modrm_form(bytes([8 * n + w]), size, "mem", prefix=b"\xf0"), DEFINED[mn]))
    for mn, opcode, digit in (("INC", 0xFF, 0), ("DEC", 0xFF, 1), ("NOT", 0xF7, 2), ("NEG", 0xF7, 3)):
        forms.append(Form(f"LOCK {mn} m32 ({opcode:02x} /{digit})", "LOCK",
                          modrm_form(bytes([opcode]), 4, "mem", digit=digit, prefix=b"\xf0"), DEFINED[mn]))
    return forms


def _chain(size: int, length: int, subtract: bool):
    """A multi-word ADD/ADC.. or SUB/SBB.. over `length` words in memory and registers:
    the carry travels through every step."""
    first, then = (0x29, 0x19) if subtract else (0x01, 0x11)

    def make(s: State) -> bytes:
        ops = Operands(s, False)
        code = b""
        for k in range(length):
            op = first if k == 0 else then
            if s.rng.random() < 0.5:
                code += encode(bytes([op]), ops.reg(size), ops.mem(size), size=size, mode=s.mode,
                               at=layout.CODE + len(code))
            else:
                code += encode(bytes([op + 2]), ops.reg(size), ops.reg(size), size=size, mode=s.mode)
        return code
    return make


def _chain_forms() -> list[Form]:
    forms = []
    for size in (2, 4, 8):
        for subtract in (False, True):
            mn = "SUB/SBB" if subtract else "ADD/ADC"
            forms.append(Form(f"{mn} chain x4 {bits(size)}", "ADC/SBB chain", _chain(size, 4, subtract), ARITH))
    return forms


FORMS = _alu_forms() + _group3_forms() + _locked_forms() + _chain_forms()
