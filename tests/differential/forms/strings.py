"""String instructions: MOVS STOS LODS CMPS SCAS at every element size, without and
with REP / REPE / REPNE, at 64- and 32-bit address size (67: ESI EDI ECX, upper halves
ignored), with DF set or clear (the case's random DF).  Source and destination may
overlap; CMPS and SCAS often meet equal elements so REPE/REPNE stop anywhere."""

from __future__ import annotations

from differential import layout, values
from differential.encode import RAX, RCX, RDI, RSI, encode
from differential.forms.common import SIZES, bits
from differential.harness import ARITH, Form, State

MAX_COUNT = 12   # elements per REP run: up to 96 bytes either way from the middle


def _upper_garbage(s: State, addr: int) -> int:
    """Bits above a 32-bit address or count in 64-bit mode, which 67 makes ignored."""
    return s.rng.getrandbits(32) << 32 if addr == 4 and s.mode == 64 else 0


def _pointer(s: State, reg: int, addr: int):
    """A string pointer in the middle of the buffer."""
    s.pointer(reg, layout.MID + s.rng.randrange(-0x70, 0x70) | _upper_garbage(s, addr))


def _string(opcode: int, size: int, rep: bytes, addr: int, uses_si: bool, uses_di: bool, compares: bool):
    def make(s: State) -> bytes:
        rng = s.rng
        if uses_si:
            _pointer(s, RSI, addr)
        if uses_di:
            _pointer(s, RDI, addr)
        if rep:   # the count (ECX with 67: the upper half is garbage)
            count = rng.choice((0, 1, 2, rng.randrange(MAX_COUNT + 1), rng.randrange(MAX_COUNT + 1)))
            s.pointer(RCX, count | _upper_garbage(s, addr))
        s.put(RAX, size)
        if compares and rng.random() < 0.7:
            _equal_run(s, size, addr, uses_si, rng.randrange(MAX_COUNT + 1))
        default_addr = 8 if s.mode == 64 else 4
        return rep + encode(bytes([opcode]), size=size, mode=s.mode, prefix=b"\x67" if addr != default_addr else b"")
    return make


def _equal_run(s: State, size: int, addr: int, against_si: bool, n: int):
    """Make the first n compared elements equal: the destination's to the source's
    (CMPS) or to the accumulator (SCAS), in the direction DF gives."""
    step = -size if s.flags & 0x400 else size
    mask = values.mask(addr * 8)
    di = s.regs[RDI] & mask
    si = s.regs[RSI] & mask
    for k in range(n):
        d = di + k * step
        if not layout.DATA <= d <= layout.DATA + layout.DATA_SIZE - size:
            break
        if against_si:
            src = si + k * step
            if not layout.DATA <= src <= layout.DATA + layout.DATA_SIZE - size:
                break
            s.write(d, size, s.read(src, size))
        else:
            s.write(d, size, s.regs[RAX])


def _forms() -> list[Form]:
    forms = []
    table = (("MOVS", 0xA4, True, True, False), ("STOS", 0xAA, False, True, False),
             ("LODS", 0xAC, True, False, False), ("CMPS", 0xA6, True, True, True),
             ("SCAS", 0xAE, False, True, True))
    for mn, opcode, si, di, compares in table:
        reps = ((b"", ""), (b"\xf3", "REPE " if compares else "REP "))
        reps += ((b"\xf2", "REPNE "),) if compares else ()
        for size in SIZES:
            op = opcode + (size > 1)
            for rep, rep_name in reps:
                for addr in (8, 4):
                    name = f"{rep_name}{mn} {bits(size)} ({rep.hex()}{op:02x}) addr{addr * 8}"
                    forms.append(Form(name, mn, _string(op, size, rep, addr, si, di, compares), ARITH))
    return forms


FORMS = _forms()
