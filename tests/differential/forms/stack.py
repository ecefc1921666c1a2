"""The stack: PUSH and POP of registers, memory (RSP-relative addresses included) and
immediates at 64- and 16-bit operand size, PUSHF POPF, ENTER LEAVE.  RSP points into
the data buffer, so pushed bytes are compared too."""

from __future__ import annotations

from differential import layout, values
from differential.encode import RBP, RSP, Mem, encode, imm
from differential.harness import ARITH, DF, Form, State

ALL_DEFINED = ARITH   # no stack instruction here leaves a flag undefined


def _stack(s: State, room: int = 0x40):
    """RSP somewhere around the middle of the buffer, usually 8-byte aligned."""
    sp = layout.MID + s.rng.randrange(-room, room)
    if s.rng.random() < 0.8:
        sp &= ~7
    s.pointer(RSP, sp)
    s.write(sp - 0x40, 0x80, s.rng.getrandbits(0x400))   # what POP finds is random too


def _push_pop_reg(opcode: int, size: int):
    def make(s: State) -> bytes:
        _stack(s)
        r = s.rng.randrange(s.nregs)
        if r != RSP:
            s.put(r, size)
        return encode(bytes([opcode]), opreg=r, size=size, w=False, mode=s.mode)
    return make


def _push_pop_mem(opcode: int, digit: int, size: int, kind: str):
    """FF /6 (PUSH r/m) and 8F /0 (POP r/m); "rsp" addresses memory relative to RSP,
    which POP computes after incrementing it."""
    def make(s: State) -> bytes:
        _stack(s)
        if kind == "reg":
            rm = s.operand(size, exclude=(RSP,))
        elif kind == "rsp":
            rm = Mem(base=RSP, disp=s.rng.randrange(-0x30, 0x30), addr=8 if s.mode == 64 else 4)
        else:
            rm = s.memory(size)
        return encode(bytes([opcode]), None, rm, digit=digit, size=size, w=False, mode=s.mode)
    return make


def _push_imm(opcode: int, size: int, imm_size: int):
    def make(s: State) -> bytes:
        _stack(s)
        return encode(bytes([opcode]), size=size, w=False, mode=s.mode,
                      imm=imm(values.operand(s.rng, imm_size * 8), imm_size))
    return make


def _pushf_popf(opcode: int, size: int):
    """PUSHF, and POPF of a value whose system flags are the runner's own (IF set, TF
    and AC clear): only the arithmetic flags and DF vary."""
    def make(s: State) -> bytes:
        _stack(s)
        sp = s.regs[RSP]
        s.write(sp, size, s.rng.getrandbits(12) & (ARITH | DF) | 0x202)
        return encode(bytes([opcode]), size=size, w=False, mode=s.mode)
    return make


def _enter(size: int):
    """ENTER alloc, level: RBP points into the buffer above RSP, for the nested frame
    pointers.  (Frame pointers copied from where ENTER pushes them would expose the
    order of its accesses, which differs between processors.)"""
    def make(s: State) -> bytes:
        _stack(s)
        level = s.rng.choice((0, 1, 2, 3, s.rng.randrange(8)))
        s.pointer(RBP, s.regs[RSP] + size * level + s.rng.randrange(0x40))
        # the frame stays in the region (guard.py lets it reach past the start)
        alloc = s.rng.choice((0, 8, 0x18, s.rng.randrange(s.regs[RSP] - layout.REGION - 0x100)))
        return encode(b"\xc8", size=size, w=False, mode=s.mode, imm=imm(alloc, 2) + imm(level, 1))
    return make


def _leave(size: int):
    def make(s: State) -> bytes:
        _stack(s)
        s.pointer(RBP, layout.MID + s.rng.randrange(-0x40, 0x40))
        return encode(b"\xc9", size=size, w=False, mode=s.mode)
    return make


def forms_for(mode: int) -> list[Form]:
    """The stack forms at the operand sizes of a mode: 64/16, or 32/16 (32-bit code)."""
    forms = []
    suffix = "" if mode == 64 else " [32-bit]"
    for size in ((8, 2) if mode == 64 else (4, 2)):
        b = size * 8
        forms.append(Form(f"PUSH r{b} (50+r)", "PUSH", _push_pop_reg(0x50, size), ALL_DEFINED))
        forms.append(Form(f"POP r{b} (58+r)", "POP", _push_pop_reg(0x58, size), ALL_DEFINED))
        for kind in ("reg", "mem", "rsp"):
            forms.append(Form(f"PUSH r/m{b} (ff /6) {kind}", "PUSH", _push_pop_mem(0xFF, 6, size, kind), ALL_DEFINED))
            forms.append(Form(f"POP r/m{b} (8f /0) {kind}", "POP", _push_pop_mem(0x8F, 0, size, kind), ALL_DEFINED))
        forms.append(Form(f"PUSH imm8 as {b} (6a)", "PUSH", _push_imm(0x6A, size, 1), ALL_DEFINED))
        forms.append(Form(f"PUSH imm as {b} (68)", "PUSH", _push_imm(0x68, size, 2 if size == 2 else 4), ALL_DEFINED))
        forms.append(Form(f"PUSHF {b} (9c)", "PUSHF/POPF", _pushf_popf(0x9C, size), ALL_DEFINED))
        forms.append(Form(f"POPF {b} (9d)", "PUSHF/POPF", _pushf_popf(0x9D, size), ALL_DEFINED))
        forms.append(Form(f"ENTER {b} (c8)", "ENTER/LEAVE", _enter(size), ALL_DEFINED))
        forms.append(Form(f"LEAVE {b} (c9)", "ENTER/LEAVE", _leave(size), ALL_DEFINED))
    for form in forms:
        form.name += suffix
        form.mode = mode
    return forms


FORMS = forms_for(64)
