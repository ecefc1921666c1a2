"""Data movement and exchange: MOV in every encoding (moffs and imm64 included), MOVZX
MOVSX MOVSXD, LEA with every addressing form, XCHG (and 90 as NOP), XADD, CMPXCHG
CMPXCHG8B CMPXCHG16B, BSWAP, MOVBE, XLAT, CMOVcc and SETcc for all 16 conditions, the
accumulator extensions CBW..CQO, LAHF SAHF and the flag instructions; the fences and
CLFLUSH, which move nothing a program can see (SFENCE once decoded as CLFLUSH of a
register "address" and faulted)."""

from __future__ import annotations

from differential import layout, values
from differential.encode import RAX, RBX, RCX, RDX, RSP, Mem, encode, imm
from differential.forms.common import SIZES, Operands, bits, modrm_form
from differential.harness import ARITH, Form, State
from differential.host import host_has

KINDS = ("reg", "mem")
CONDITIONS = ("O", "NO", "B", "AE", "E", "NE", "BE", "A", "S", "NS", "P", "NP", "L", "GE", "LE", "G")
# None of these instructions has undefined flags: the ones they do not write keep their
# values (CMPXCHG and XADD set them as CMP and ADD do).
ALL_DEFINED = ARITH


def _form(name: str, group: str, make) -> Form:
    return Form(name, group, make, ALL_DEFINED)


def _plain(code: bytes, regs=(), size: int = 8):
    """A fixed instruction whose implicit register operands get operand values."""
    def make(s: State) -> bytes:
        for r in regs:
            s.put(r, size)
        return code
    return make


def _mov_imm_reg(size: int):
    """B0+r ib / B8+r iw/id/io: the only encoding with a 64-bit immediate."""
    def make(s: State) -> bytes:
        ops = Operands(s, size == 1)
        r = ops.reg(size)
        return encode(bytes([0xB0 if size == 1 else 0xB8]), opreg=r, size=size, mode=s.mode,
                      imm=imm(values.operand(s.rng, size * 8), size), byte_regs=size == 1)
    return make


def _moffs(opcode: int, size: int, addr: int):
    """A0..A3: the accumulator and an absolute address (8 bytes, or 4 with 67)."""
    def make(s: State) -> bytes:
        ea = s.address()
        s.write(ea, size, values.operand(s.rng, size * 8))
        s.put(RAX, size)
        return encode(bytes([opcode]), size=size, mode=s.mode, prefix=b"\x67" if addr == 4 else b"",
                      imm=imm(ea, addr))
    return make


def _lea(size: int):
    """LEA with arbitrary register values: the address is computed, never accessed, and
    truncated to the operand and address sizes."""
    def make(s: State) -> bytes:
        rng = s.rng
        dest = s.pick()
        addr = rng.choice((8, 8, 4)) if s.mode == 64 else 4
        if rng.random() < 0.1 and s.mode == 64:
            m = Mem(rip=True, disp=layout.CODE + rng.randrange(-1 << 31, 1 << 31) // 2)
        else:
            base = rng.choice([None] + list(range(s.nregs)))
            index = rng.choice([None] + [r for r in range(s.nregs) if r != RSP])
            if base is None and index is None:
                index = RAX
            disp = rng.choice((0, rng.randrange(-128, 128), rng.randrange(-1 << 31, 1 << 31)))
            m = Mem(base=base, index=index, scale=rng.randrange(4), disp=disp, addr=addr)
            for r in m.regs():
                s.put(r, 8 if s.mode == 64 else 4)
        return encode(b"\x8d", dest, m, size=size, mode=s.mode)
    return make


def _xchg_acc(size: int):
    """90+r: XCHG rAX with a register (90 itself is NOP, without zero-extension)."""
    def make(s: State) -> bytes:
        s.put(RAX, size)
        r = s.operand(size)
        return encode(b"\x90", opreg=r, size=size, mode=s.mode)
    return make


def _cmpxchg(size: int, kind: str):
    """CMPXCHG r/m, r: the accumulator equals the destination half of the time."""
    def make(s: State) -> bytes:
        ops = Operands(s, size == 1)
        value = values.operand(s.rng, size * 8)
        s.put(RAX, size, value if s.rng.random() < 0.5 else None)
        s.used.add(RAX)
        rm = ops.rm(kind, size, value if s.rng.random() < 0.9 else None)
        src = ops.reg(size)
        return encode(b"\x0f" + bytes([0xB0 if size == 1 else 0xB1]), src, rm, size=size, mode=s.mode,
                      byte_regs=size == 1)
    return make


def _cmpxchg_wide(size: int):
    """CMPXCHG8B m64 (size 8) / CMPXCHG16B m128 (size 16, aligned): rDX:rAX against
    memory, rCX:rBX stored on a match (half of the cases)."""
    half = size // 2

    def make(s: State) -> bytes:
        ea = s.address(align=16 if size == 16 else 1)
        current = s.rng.getrandbits(size * 8)
        s.write(ea, size, current)
        expected = current if s.rng.random() < 0.5 else current ^ (1 << s.rng.randrange(size * 8))
        s.put(RAX, half, expected)
        s.put(RDX, half, expected >> (half * 8))
        s.put(RBX, half)
        s.put(RCX, half)
        s.used |= {RAX, RBX, RCX, RDX}
        m = s.memory(size, current, ea=ea)
        return encode(b"\x0f\xc7", None, m, digit=1, size=8, w=size == 16, mode=s.mode)
    return make


def _bswap(size: int):
    def make(s: State) -> bytes:
        return encode(b"\x0f\xc8", opreg=s.operand(size), size=size, mode=s.mode)
    return make


def _xlat(addr: int):
    """XLAT: AL = [rBX + AL] (EBX with 67)."""
    def make(s: State) -> bytes:
        s.put(RAX, 1)
        table = layout.MID - s.rng.randrange(0x100)
        s.pointer(RBX, table | (s.rng.getrandbits(32) << 32 if addr == 4 else 0))
        return (b"\x67" if addr == 4 else b"") + b"\xd7"
    return make


def _mov_forms() -> list[Form]:
    forms = []
    for size in SIZES:
        w = 0 if size == 1 else 1
        for kind in KINDS:
            forms.append(_form(f"MOV r/m{bits(size)},r ({0x88 + w:02x}) {kind}", "MOV",
                               modrm_form(bytes([0x88 + w]), size, kind)))
            forms.append(_form(f"MOV r,r/m{bits(size)} ({0x8a + w:02x}) {kind}", "MOV",
                               modrm_form(bytes([0x8A + w]), size, kind)))
            forms.append(_form(f"MOV r/m{bits(size)},imm ({0xc6 + w:02x} /0) {kind}", "MOV",
                               modrm_form(bytes([0xC6 + w]), size, kind, digit=0,
                                          imm_size=min(size, 4))))
        forms.append(_form(f"MOV r{bits(size)},imm{bits(size)} ({0xb0 if size == 1 else 0xb8:02x}+r)", "MOV",
                           _mov_imm_reg(size)))
        for addr in (8, 4):
            forms.append(_form(f"MOV acc{bits(size)},moffs{addr * 8} ({0xa0 + w:02x})", "MOV",
                               _moffs(0xA0 + w, size, addr)))
            forms.append(_form(f"MOV moffs{addr * 8},acc{bits(size)} ({0xa2 + w:02x})", "MOV",
                               _moffs(0xA2 + w, size, addr)))
    for size in (2, 4, 8):
        for kind in KINDS:
            for mn, opcode, source in (("MOVZX", 0xB6, 1), ("MOVZX", 0xB7, 2), ("MOVSX", 0xBE, 1), ("MOVSX", 0xBF, 2)):
                forms.append(_form(f"{mn} r{bits(size)},r/m{bits(source)} (0f {opcode:02x}) {kind}", mn,
                                   modrm_form(b"\x0f" + bytes([opcode]), size, kind, rm_size=source)))
            forms.append(_form(f"MOVSXD r{bits(size)},r/m32 (63) {kind}", "MOVSXD",
                               modrm_form(b"\x63", size, kind, rm_size=4 if size == 8 else size)))
        forms.append(_form(f"LEA r{bits(size)},m (8d)", "LEA", _lea(size)))
    return forms


def _exchange_forms() -> list[Form]:
    forms = []
    for size in SIZES:
        w = 0 if size == 1 else 1
        for kind in KINDS:
            forms.append(_form(f"XCHG r/m{bits(size)},r ({0x86 + w:02x}) {kind}", "XCHG",
                               modrm_form(bytes([0x86 + w]), size, kind)))
            forms.append(_form(f"XADD r/m{bits(size)},r (0f {0xc0 + w:02x}) {kind}", "XADD",
                               modrm_form(b"\x0f" + bytes([0xC0 + w]), size, kind)))
            forms.append(_form(f"CMPXCHG r/m{bits(size)},r (0f {0xb0 + w:02x}) {kind}", "CMPXCHG",
                               _cmpxchg(size, kind)))
        forms.append(_form("LOCK XADD m{} (f0 0f c1)".format(bits(size)) if size > 1 else
                           "LOCK XADD m8 (f0 0f c0)", "XADD",
                           modrm_form(b"\x0f" + bytes([0xC0 + w]), size, "mem", prefix=b"\xf0")))
        forms.append(_form(f"LOCK CMPXCHG m{bits(size)} (f0 0f {0xb0 + w:02x})", "CMPXCHG",
                           modrm_form(b"\x0f" + bytes([0xB0 + w]), size, "mem", prefix=b"\xf0")))
        if size > 1:
            forms.append(_form(f"XCHG acc{bits(size)},r (90+r)", "XCHG", _xchg_acc(size)))
    forms.append(_form("CMPXCHG8B m64 (0f c7 /1)", "CMPXCHG8B", _cmpxchg_wide(8)))
    if host_has("cx16"):
        forms.append(_form("CMPXCHG16B m128 (48 0f c7 /1)", "CMPXCHG16B", _cmpxchg_wide(16)))
    for size in (4, 8):
        forms.append(_form(f"BSWAP r{bits(size)} (0f c8+r)", "BSWAP", _bswap(size)))
    if host_has("movbe"):
        for size in (2, 4, 8):
            forms.append(_form(f"MOVBE r{bits(size)},m (0f 38 f0)", "MOVBE",
                               modrm_form(b"\x0f\x38\xf0", size, "mem")))
            forms.append(_form(f"MOVBE m,r{bits(size)} (0f 38 f1)", "MOVBE",
                               modrm_form(b"\x0f\x38\xf1", size, "mem")))
    for addr in (8, 4):
        forms.append(_form(f"XLAT (d7) addr{addr * 8}", "XLAT", _xlat(addr)))
    return forms


def _condition_forms() -> list[Form]:
    forms = []
    for cc, name in enumerate(CONDITIONS):
        for kind in KINDS:
            forms.append(_form(f"SET{name} r/m8 (0f {0x90 + cc:02x}) {kind}", "SETcc",
                               modrm_form(b"\x0f" + bytes([0x90 + cc]), 1, kind, digit=0)))
            for size in (2, 4, 8):
                forms.append(_form(f"CMOV{name} r{bits(size)},r/m (0f {0x40 + cc:02x}) {kind}", "CMOVcc",
                                   modrm_form(b"\x0f" + bytes([0x40 + cc]), size, kind)))
    return forms


def _accumulator_forms() -> list[Form]:
    forms = []
    for size, (cbw, cwd) in ((2, ("CBW", "CWD")), (4, ("CWDE", "CDQ")), (8, ("CDQE", "CQO"))):
        prefix = encode(b"\x98", size=size)[:-1]
        forms.append(_form(f"{cbw} ({prefix.hex()}98)", "CBW..CQO", _plain(prefix + b"\x98", (RAX,), size)))
        forms.append(_form(f"{cwd} ({prefix.hex()}99)", "CBW..CQO", _plain(prefix + b"\x99", (RAX, RDX), size)))
    for mn, opcode in (("LAHF", 0x9F), ("SAHF", 0x9E), ("CLC", 0xF8), ("STC", 0xF9), ("CMC", 0xF5),
                       ("CLD", 0xFC), ("STD", 0xFD)):
        forms.append(_form(f"{mn} ({opcode:02x})", "flags", _plain(bytes([opcode]), (RAX,), 2)))
    return forms


def _ordering_forms() -> list[Form]:
    """0F AE /5 /6 /7 with a register ModRM: LFENCE, MFENCE, SFENCE; CLFLUSH."""
    forms = [_form(f"{mn} (0f ae {modrm:02x})", "fences", _plain(b"\x0f\xae" + bytes([modrm]), (RAX,)))
             for mn, modrm in (("LFENCE", 0xE8), ("MFENCE", 0xF0), ("SFENCE", 0xF8))]
    forms.append(_form("CLFLUSH m8 (0f ae /7)", "fences", modrm_form(b"\x0f\xae", 1, "mem", digit=7)))
    return forms


FORMS = _mov_forms() + _exchange_forms() + _condition_forms() + _accumulator_forms() + _ordering_forms()
