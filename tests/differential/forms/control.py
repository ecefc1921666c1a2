"""Control transfer within a snippet: Jcc (rel8 and rel32, all 16 conditions), JMP,
LOOP LOOPE LOOPNE JRCXZ (and ECX forms with 67), forward and backward, CALL and RET
(near, relative and indirect).  Whether a branch was taken shows in R11, which the
instruction after it increments (LEA: flags untouched), and in RCX, RSP and memory."""

from __future__ import annotations

from differential import layout, values
from differential.encode import R11, RCX, RSP, encode, imm
from differential.forms.moves import CONDITIONS
from differential.harness import ARITH, Form, State

MARK = bytes.fromhex("4d8d5b01")   # lea r11, [r11+1]: counts the paths through it
ALL_DEFINED = ARITH   # branches leave every flag alone


def _marked(s: State):
    s.put(R11, 8)
    s.used.add(R11)


def _jcc(short: bool, cc: int):
    def make(s: State) -> bytes:
        _marked(s)
        if short:
            return bytes([0x70 + cc, len(MARK)]) + MARK
        return b"\x0f" + bytes([0x80 + cc]) + imm(len(MARK), 4) + MARK
    return make


def _jmp(short: bool):
    def make(s: State) -> bytes:
        _marked(s)
        skip = s.rng.choice((0, len(MARK)))   # a jump to the next instruction, or over it
        return (bytes([0xEB, skip]) if short else b"\xe9" + imm(skip, 4)) + MARK
    return make


def _loop(opcode: int, addr: int, backward: bool):
    """LOOPcc/JrCXZ forward over a marker, or LOOPcc backward over one (a counted loop:
    RCX at least 1, or the loop would run 2^64 times)."""
    prefix = b"\x67" if addr == 4 else b""

    def make(s: State) -> bytes:
        _marked(s)
        rng = s.rng
        upper = rng.getrandbits(32) << 32 if addr == 4 else 0
        if backward:
            s.pointer(RCX, rng.randint(1, 40) | upper)
            return MARK + prefix + bytes([opcode, (-(len(MARK) + len(prefix) + 2)) & 0xFF])
        count = rng.choice((0, 1, 2, values.operand(rng, addr * 8)))
        s.pointer(RCX, count | upper)
        return prefix + bytes([opcode, len(MARK)]) + MARK
    return make


def _stack(s: State):
    s.pointer(RSP, (layout.MID + s.rng.randrange(-0x40, 0x40)) & ~7)


def _call_rel(s: State) -> bytes:
    """CALL over (or onto) the marker: the return address lands on the stack."""
    _marked(s)
    _stack(s)
    return b"\xe8" + imm(s.rng.choice((0, len(MARK))), 4) + MARK


def _ret(release: bool):
    """RET / RET imm16 to the marker or past it, the target taken from the stack."""
    def make(s: State) -> bytes:
        _marked(s)
        _stack(s)
        length = 3 if release else 1
        target = layout.CODE + length + s.rng.choice((0, len(MARK)))
        s.write(s.regs[RSP], 8, target)
        code = b"\xc2" + imm(s.rng.choice((0, 8, s.rng.randrange(0x40))), 2) if release else b"\xc3"
        return code + MARK
    return make


def _indirect(digit: int, kind: str):
    """CALL r/m64 (FF /2) and JMP r/m64 (FF /4) to the marker or past it."""
    def make(s: State) -> bytes:
        _marked(s)
        _stack(s)
        rm = s.memory(8) if kind == "mem" else s.operand(8)
        code = encode(b"\xff", None, rm, digit=digit, size=4, mode=s.mode)
        target = layout.CODE + len(code) + s.rng.choice((0, len(MARK)))
        if kind == "mem":
            s.write(s.last_ea, 8, target)
        else:
            s.put(rm, 8, target)
        return code + MARK
    return make


def _forms() -> list[Form]:
    forms = []
    for cc, name in enumerate(CONDITIONS):
        forms.append(Form(f"J{name} rel8 ({0x70 + cc:02x})", "Jcc", _jcc(True, cc), ALL_DEFINED))
        forms.append(Form(f"J{name} rel32 (0f {0x80 + cc:02x})", "Jcc", _jcc(False, cc), ALL_DEFINED))
    forms.append(Form("JMP rel8 (eb)", "JMP", _jmp(True), ALL_DEFINED))
    forms.append(Form("JMP rel32 (e9)", "JMP", _jmp(False), ALL_DEFINED))
    for mn, opcode in (("LOOPNE", 0xE0), ("LOOPE", 0xE1), ("LOOP", 0xE2), ("JRCXZ", 0xE3)):
        for addr in (8, 4):
            reg = "RCX" if addr == 8 else "ECX"
            name = "JECXZ" if mn == "JRCXZ" and addr == 4 else mn
            forms.append(Form(f"{name} {reg} forward ({opcode:02x})", "LOOP/JRCXZ", _loop(opcode, addr, False),
                              ALL_DEFINED))
            if opcode != 0xE3:
                forms.append(Form(f"{mn} {reg} backward ({opcode:02x})", "LOOP/JRCXZ",
                                  _loop(opcode, addr, True), ALL_DEFINED))
    forms.append(Form("CALL rel32 (e8)", "CALL/RET", _call_rel, ALL_DEFINED))
    forms.append(Form("RET (c3)", "CALL/RET", _ret(False), ALL_DEFINED))
    forms.append(Form("RET imm16 (c2)", "CALL/RET", _ret(True), ALL_DEFINED))
    for kind in ("reg", "mem"):
        forms.append(Form(f"CALL r/m64 (ff /2) {kind}", "CALL/RET", _indirect(2, kind), ALL_DEFINED))
        forms.append(Form(f"JMP r/m64 (ff /4) {kind}", "JMP", _indirect(4, kind), ALL_DEFINED))
    return forms


FORMS = _forms()
