"""Stores that reach the read-only guard page after the data buffer: read-modify-write
instructions, stores, pushes and string stores whose operand lies just below the
guard, across its start or inside it (and an ENTER whose frame leaves the region).  A store that faults must leave everything as it
was (a split store writes neither page), and REP string instructions keep the
progress of the iterations before the faulting one."""

from __future__ import annotations

from differential import layout
from differential.encode import RAX, RBX, RCX, RDI, RDX, RSI, RSP, encode, imm
from differential.forms.bits import DEFINED as BIT_DEFINED
from differential.forms.common import Operands, bits
from differential.harness import ARITH, DF, Form, State

# the RMW and store forms: (name, opcode, /digit or None, operand sizes)
STORES = [("ADD", b"\x01", None, (2, 4, 8)), ("SBB", b"\x19", None, (2, 4, 8)),
          ("INC", b"\xff", 0, (2, 4, 8)), ("NEG", b"\xf7", 3, (2, 4, 8)), ("NOT", b"\xf7", 2, (4,)),
          ("XCHG", b"\x87", None, (4, 8)), ("XADD", b"\x0f\xc1", None, (4, 8)),
          ("CMPXCHG", b"\x0f\xb1", None, (4, 8)), ("MOV store", b"\x89", None, (2, 4, 8)),
          ("MOV load", b"\x8b", None, (4, 8)), ("ADD byte", b"\x00", None, (1,)),
          ("SETB", b"\x0f\x92", 0, (1,)), ("BTS", b"\x0f\xab", None, (4,))]


def _near_guard(s: State, size: int) -> int:
    """An address below the guard (the operand fits), across its start, or inside it."""
    return layout.GUARD - s.rng.choice((size, size + 1, 0, -1) + tuple(range(1, size)))


def _store(opcode: bytes, digit, size: int):
    def make(s: State) -> bytes:
        ops = Operands(s, size == 1)
        m = ops.mem(size, ea=_near_guard(s, size))
        reg = None
        if digit is None:
            reg = ops.reg(size, 0 if opcode == b"\x0f\xab" else None)   # BTS: bit 0, here
        return encode(opcode, reg, m, digit=digit, size=size, mode=s.mode, byte_regs=size == 1)
    return make


def _stack(s: State, room: int):
    """RSP so that a push of `room` bytes fits, crosses into the guard, or starts in it."""
    s.pointer(RSP, layout.GUARD + s.rng.choice((0, room, s.rng.randrange(1, room + 1))))


def _push(code: bytes, room: int):
    def make(s: State) -> bytes:
        _stack(s, room)
        return code
    return make


def _push_imm(s: State) -> bytes:
    _stack(s, 8)
    return b"\x68" + imm(s.rng.getrandbits(32), 4)


def _string_store(opcode: int, size: int, source: bool):
    """REP STOS/MOVS upwards into the guard: the iterations that fit are done, RCX RDI
    (RSI) say how far they got."""
    def make(s: State) -> bytes:
        s.flags &= ~DF
        rng = s.rng
        s.pointer(RDI, layout.GUARD - rng.randrange(0, 6 * size) - rng.randrange(size))
        if source:
            s.pointer(RSI, layout.MID + rng.randrange(-0x100, 0x100))
        s.pointer(RCX, rng.randrange(1, 12))
        return b"\xf3" + encode(bytes([opcode]), size=size, mode=s.mode)
    return make


def _enter_past_region(s: State) -> bytes:
    """ENTER whose new stack top is below the mapped region: #PF (SDM: "if a write using
    the final value of the stack pointer would cause a page fault"), RSP and RBP kept."""
    s.pointer(RSP, layout.MID + s.rng.randrange(-0x40, 0x40))
    alloc = s.regs[RSP] - layout.REGION + s.rng.randrange(-0x100, 0x100)
    return b"\xc8" + imm(alloc, 2) + bytes([s.rng.randrange(3)])


def _cmpxchg8b(s: State) -> bytes:
    s.used |= {RAX, RBX, RCX, RDX}
    m = s.memory(8, ea=_near_guard(s, 8))
    return encode(b"\x0f\xc7", None, m, digit=1, size=4, mode=s.mode)


def _forms() -> list[Form]:
    forms = []
    for name, opcode, digit, sizes in STORES:
        for size in sizes:
            flags = BIT_DEFINED["BTS"] if name == "BTS" else ARITH
            forms.append(Form(f"{name} m{bits(size)} at the guard ({opcode.hex(' ')})", "guard",
                              _store(opcode, digit, size), flags, faults=True))
    forms.append(Form("PUSH r64 at the guard (50+r)", "guard", _push(b"\x53", 8), ARITH, faults=True))
    forms.append(Form("PUSH imm32 at the guard (68)", "guard", _push_imm, ARITH, faults=True))
    forms.append(Form("PUSHF 64 at the guard (9c)", "guard", _push(b"\x9c", 8), ARITH, faults=True))
    forms.append(Form("CALL rel32 at the guard (e8)", "guard", _push(b"\xe8\x00\x00\x00\x00", 8), ARITH,
                      faults=True))
    forms.append(Form("ENTER 0,1 at the guard (c8)", "guard", _push(b"\xc8\x10\x00\x01", 16), ARITH,
                      faults=True))
    for size in (1, 2, 4, 8):
        forms.append(Form(f"REP STOS {bits(size)} into the guard", "guard",
                          _string_store(0xAA + (size > 1), size, False), ARITH, faults=True))
        forms.append(Form(f"REP MOVS {bits(size)} into the guard", "guard",
                          _string_store(0xA4 + (size > 1), size, True), ARITH, faults=True))
    forms.append(Form("CMPXCHG8B m64 at the guard (0f c7 /1)", "guard", _cmpxchg8b, ARITH, faults=True))
    forms.append(Form("ENTER past the region start (c8)", "guard", _enter_past_region, ARITH, faults=True))
    return forms


FORMS = _forms()
