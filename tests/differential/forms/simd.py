"""MMX, SSE, SSE2, SSE3, SSSE3, SSE4.1 and SSE4.2 forms: every opcode and mandatory
prefix the core implements, with register and memory operands, random MXCSR (rounding,
DAZ, FTZ, sometimes unmasked exceptions, which fault with #XM as on the host), float
operands full of NaNs, infinities and denormals."""

from __future__ import annotations

from dataclasses import dataclass

from differential import values
from differential.encode import RAX, RCX, RDI, RDX, RSP, encode
from differential.forms import fpu_common as fc
from differential.harness import ARITH, Form, State

PFX = {"": b"", "66": b"\x66", "F3": b"\xf3", "F2": b"\xf2"}


@dataclass
class Shape:
    """How the operands of a form look: the ModRM.reg operand ('x' XMM, 'm' MMX,
    'g' general register) and the r/m operand as a register; `memsize` when memory."""
    reg: str
    rm: str
    memsize: int = 16
    align: bool = False
    lanes: str = "int"
    gsize: int = 4           # general-register operand size (8 sets REX.W)
    imm: str | None = None   # None, "any", "cmp", "round", "shift"
    store: bool = False      # the r/m operand is the destination (stores, PEXTR*)
    lengths: bool = False    # PCMPESTRx: string lengths in EAX and EDX


def _imm(s: State, kind: str | None) -> bytes:
    if kind is None:
        return b""
    rng = s.rng
    if kind == "cmp":
        v = rng.randrange(8)
    elif kind == "round":
        v = rng.randrange(16) if rng.random() < 0.9 else rng.getrandbits(8)
    elif kind == "shift":
        v = rng.choice((0, 1, 7, 8, 15, 16, 31, 32, 63, 64, 255)) if rng.random() < 0.4 else rng.randrange(70)
    else:
        v = rng.getrandbits(8)
    return bytes([v])


def _make(opcode: bytes, pfx: str, shape: Shape, kind: str, digit: int | None = None, unmasked=0.1):
    def make(s: State) -> bytes:
        rng = s.rng
        s.write(fc.layout.DATA + fc.CTRL_IN, 4, fc.mxcsr(rng, unmasked))
        s.write(fc.layout.DATA + fc.MXCSR_RESTORE, 4, 0x1F80)
        for k in range(3):
            s.write(fc.layout.DATA + fc.IN + 16 * k, 16, int.from_bytes(fc.lanes(rng, shape.lanes), "little"))
        code = fc.ldmxcsr(fc.CTRL_IN) + fc.movdqu_load(0, fc.IN + 0x20)
        regs = {"x": list(range(16)), "m": list(range(8)), "g": [r for r in range(16) if r != RSP]}
        # the register operands (a GPR operand never doubles as an address register)
        reg = digit if digit is not None else rng.choice(regs[shape.reg])
        rm = None
        if kind == "reg":
            pool = regs[shape.rm]
            rm = rng.choice(pool) if rng.random() < 0.15 or shape.rm != shape.reg else \
                rng.choice([r for r in pool if r != reg])
        loads, stores = b"", b""
        for operand, kind_of, slot in ((None if digit is not None else reg, shape.reg, 0),
                                       (rm, shape.rm, 0x10)):
            if operand is None:
                continue
            if kind_of == "x":
                loads += fc.movdqu_load(operand, fc.IN + slot)
                stores += fc.movdqu_store(operand, fc.OUT + slot)
            elif kind_of == "m":
                loads += fc.movq_mm_load(operand, fc.IN + slot)
                stores += fc.movq_mm_store(operand, fc.OUT + 0x30 + slot // 2)
            else:
                s.put(operand, shape.gsize)
                s.used.add(operand)
        if shape.lengths:
            for r in (RAX, RDX):
                s.put(r, 8, rng.randint(-20, 20) if rng.random() < 0.9 else values.operand(rng, 64))
                s.used.add(r)
        if kind == "mem":
            align = 16 if shape.align else rng.choice((1, 2, 4, 8, 16))
            value = int.from_bytes(fc.lanes(rng, shape.lanes)[:shape.memsize], "little")
            exclude = {reg} if shape.reg == "g" else set()
            rm = s.memory(shape.memsize, value, align=align, exclude=tuple(exclude | {RAX, RDX, RCX, RDI}))
        insn = encode(opcode, reg, rm, prefix=PFX[pfx], size=8 if shape.gsize == 8 else 4,
                      imm=_imm(s, shape.imm), at=fc.layout.CODE + len(code + loads))
        mmx = "m" in (shape.reg, shape.rm)
        tail = fc.movdqu_store(0, fc.OUT + 0x20) + fc.stmxcsr(fc.MXCSR_OUT) + fc.ldmxcsr(fc.MXCSR_RESTORE)
        return code + loads + insn + stores + tail + (fc.EMMS if mmx else b"")
    return make


FORMS: list[Form] = []


def add(group: str, name: str, opcode: bytes, pfx: str, shape: Shape, kinds=("reg", "mem"),
        digit: int | None = None, faults: bool = True):
    for kind in kinds:
        FORMS.append(Form(f"{pfx + ' ' if pfx else ''}{opcode.hex(' ')} {name} {kind}", group,
                          _make(opcode, pfx, shape, kind, digit), ARITH, faults=faults))


def _0f(op: int) -> bytes:
    return bytes([0x0F, op])


# ---- integer MMX / SSE2 ------------------------------------------------------------------
INT_0F = [*range(0x60, 0x6C), 0x74, 0x75, 0x76, *range(0xD1, 0xD6), *range(0xD8, 0xE6),
          *range(0xE8, 0xF0), *range(0xF1, 0xF7), *range(0xF8, 0xFF)]
for op in INT_0F:
    add("mmx", "int", _0f(op), "", Shape("m", "m", 4 if op <= 0x62 else 8))
    add("sse2-int", "int", _0f(op), "66", Shape("x", "x", 16, align=True))
for op in (0x6C, 0x6D):
    add("sse2-int", "punpckqdq", _0f(op), "66", Shape("x", "x", 16, align=True))
for pfx, lanes in (("", "f32"), ("66", "f64")):
    for op in (0x14, 0x15, 0x54, 0x55, 0x56, 0x57):
        add("sse-logic", "unpck/logic", _0f(op), pfx, Shape("x", "x", 16, align=True, lanes=lanes))

# ---- floating point ----------------------------------------------------------------------
FP = {   # opcode: memory size per prefix (none, 66, F3, F2)
    0x51: (16, 16, 4, 8), 0x52: (16, 0, 4, 0), 0x53: (16, 0, 4, 0), 0x58: (16, 16, 4, 8),
    0x59: (16, 16, 4, 8), 0x5A: (8, 16, 4, 8), 0x5B: (16, 16, 16, 0), 0x5C: (16, 16, 4, 8),
    0x5D: (16, 16, 4, 8), 0x5E: (16, 16, 4, 8), 0x5F: (16, 16, 4, 8), 0x7C: (0, 16, 0, 16),
    0x7D: (0, 16, 0, 16), 0xD0: (0, 16, 0, 16), 0xE6: (0, 16, 8, 16), 0xC2: (16, 16, 4, 8),
    0x2E: (4, 8, 0, 0), 0x2F: (4, 8, 0, 0),
}
for op, sizes in FP.items():
    for pfx, mem in zip(("", "66", "F3", "F2"), sizes):
        if not mem:
            continue
        lanes = "f32" if pfx in ("", "F3") else "f64"
        if (op, pfx) in ((0x5B, ""), (0xE6, "F3")):
            lanes = "int"
        group = "sse3" if op in (0x7C, 0x7D, 0xD0) else ("sse" if lanes == "f32" else "sse2")
        add(group, "fp", _0f(op), pfx, Shape("x", "x", mem, align=mem == 16 and (op, pfx) != (0x5A, ""),
                                              lanes=lanes, imm="cmp" if op == 0xC2 else None))
for op in (0x2A, 0x2C, 0x2D):
    for pfx in ("F3", "F2"):
        for gsize in (4, 8):
            lanes = "f32" if pfx == "F3" else "f64"
            if op == 0x2A:
                shape = Shape("x", "g", gsize, lanes=lanes, gsize=gsize)
            else:
                shape = Shape("g", "x", 4 if pfx == "F3" else 8, lanes=lanes, gsize=gsize)
            add("sse-cvt", f"cvt gpr{gsize * 8}", _0f(op), pfx, shape)
    add("sse-cvt", "cvt mmx", _0f(op), "",
        Shape("x", "m", 8, lanes="int") if op == 0x2A else Shape("m", "x", 8, lanes="f32"))
    add("sse-cvt", "cvt mmx", _0f(op), "66",
        Shape("x", "m", 8, lanes="int") if op == 0x2A else Shape("m", "x", 16, align=True, lanes="f64"))

# ---- data movement and shuffles ----------------------------------------------------------
MOV = "sse-move"
for pfx, lanes in (("", "f32"), ("66", "f64")):
    add(MOV, "movu load", _0f(0x10), pfx, Shape("x", "x", 16, lanes=lanes))
    add(MOV, "movu store", _0f(0x11), pfx, Shape("x", "x", 16, store=True))
    add(MOV, "mova load", _0f(0x28), pfx, Shape("x", "x", 16, align=True))
    add(MOV, "mova store", _0f(0x29), pfx, Shape("x", "x", 16, align=True, store=True))
    add(MOV, "movnt", _0f(0x2B), pfx, Shape("x", "x", 16, align=True, store=True), kinds=("mem",))
    add(MOV, "movl/hp store", _0f(0x13), pfx, Shape("x", "x", 8, store=True), kinds=("mem",))
    add(MOV, "movh/lp store", _0f(0x17), pfx, Shape("x", "x", 8, store=True), kinds=("mem",))
    add(MOV, "movmskp", _0f(0x50), pfx, Shape("g", "x", lanes=lanes), kinds=("reg",))
    add(MOV, "shufp", _0f(0xC6), pfx, Shape("x", "x", 16, align=True, imm="any"))
add(MOV, "movlps/movhlps", _0f(0x12), "", Shape("x", "x", 8))
add(MOV, "movhps/movlhps", _0f(0x16), "", Shape("x", "x", 8))
add(MOV, "movlpd", _0f(0x12), "66", Shape("x", "x", 8), kinds=("mem",))
add(MOV, "movhpd", _0f(0x16), "66", Shape("x", "x", 8), kinds=("mem",))
for pfx, size in (("F3", 4), ("F2", 8)):
    add(MOV, "movs load", _0f(0x10), pfx, Shape("x", "x", size))
    add(MOV, "movs store", _0f(0x11), pfx, Shape("x", "x", size, store=True))
add("sse3", "movsldup", _0f(0x12), "F3", Shape("x", "x", 16, align=True))
add("sse3", "movshdup", _0f(0x16), "F3", Shape("x", "x", 16, align=True))
add("sse3", "movddup", _0f(0x12), "F2", Shape("x", "x", 8))
add("sse3", "lddqu", _0f(0xF0), "F2", Shape("x", "x", 16), kinds=("mem",))
add(MOV, "movdqa load", _0f(0x6F), "66", Shape("x", "x", 16, align=True))
add(MOV, "movdqu load", _0f(0x6F), "F3", Shape("x", "x", 16))
add(MOV, "movdqa store", _0f(0x7F), "66", Shape("x", "x", 16, align=True, store=True))
add(MOV, "movdqu store", _0f(0x7F), "F3", Shape("x", "x", 16, store=True))
add(MOV, "movntdq", _0f(0xE7), "66", Shape("x", "x", 16, align=True, store=True), kinds=("mem",))
add(MOV, "movq mm load", _0f(0x6F), "", Shape("m", "m", 8))
add(MOV, "movq mm store", _0f(0x7F), "", Shape("m", "m", 8, store=True))
add(MOV, "movntq", _0f(0xE7), "", Shape("m", "m", 8, store=True), kinds=("mem",))
add(MOV, "movq xmm load", _0f(0x7E), "F3", Shape("x", "x", 8))
add(MOV, "movq xmm store", _0f(0xD6), "66", Shape("x", "x", 8, store=True))
add(MOV, "movq2dq", _0f(0xD6), "F3", Shape("x", "m"), kinds=("reg",))
add(MOV, "movdq2q", _0f(0xD6), "F2", Shape("m", "x"), kinds=("reg",))
for gsize in (4, 8):
    add(MOV, f"movd/q mm load {gsize}", _0f(0x6E), "", Shape("m", "g", gsize, gsize=gsize))
    add(MOV, f"movd/q xmm load {gsize}", _0f(0x6E), "66", Shape("x", "g", gsize, gsize=gsize))
    add(MOV, f"movd/q mm store {gsize}", _0f(0x7E), "", Shape("m", "g", gsize, gsize=gsize, store=True))
    add(MOV, f"movd/q xmm store {gsize}", _0f(0x7E), "66", Shape("x", "g", gsize, gsize=gsize, store=True))
    add(MOV, f"movnti {gsize}", _0f(0xC3), "", Shape("g", "g", gsize, gsize=gsize, store=True), kinds=("mem",))
    add(MOV, f"pmovmskb mm {gsize}", _0f(0xD7), "", Shape("g", "m", gsize=gsize), kinds=("reg",))
    add(MOV, f"pmovmskb xmm {gsize}", _0f(0xD7), "66", Shape("g", "x", gsize=gsize), kinds=("reg",))
    add(MOV, f"pextrw mm {gsize}", _0f(0xC5), "", Shape("g", "m", gsize=gsize, imm="any"), kinds=("reg",))
    add(MOV, f"pextrw xmm {gsize}", _0f(0xC5), "66", Shape("g", "x", gsize=gsize, imm="any"), kinds=("reg",))
add(MOV, "pinsrw mm", _0f(0xC4), "", Shape("m", "g", 2, imm="any"))
add(MOV, "pinsrw xmm", _0f(0xC4), "66", Shape("x", "g", 2, imm="any"))
add(MOV, "pshufw", _0f(0x70), "", Shape("m", "m", 8, imm="any"))
for pfx in ("66", "F3", "F2"):
    add(MOV, "pshufd/hw/lw", _0f(0x70), pfx, Shape("x", "x", 16, align=True, imm="any"))
for op, digits in ((0x71, (2, 4, 6)), (0x72, (2, 4, 6)), (0x73, (2, 6))):
    for d in digits:
        add("mmx", f"shift imm /{d}", _0f(op), "", Shape("m", "m", imm="shift"), kinds=("reg",), digit=d)
    for d in digits + ((3, 7) if op == 0x73 else ()):
        add("sse2-int", f"shift imm /{d}", _0f(op), "66", Shape("x", "x", imm="shift"), kinds=("reg",), digit=d)

# ---- SSSE3, SSE4.1, SSE4.2 ---------------------------------------------------------------
for op in [*range(0x00, 0x0C), 0x1C, 0x1D, 0x1E]:
    add("ssse3", "op", bytes([0x0F, 0x38, op]), "", Shape("m", "m", 8))
    add("ssse3", "op", bytes([0x0F, 0x38, op]), "66", Shape("x", "x", 16, align=True))
add("ssse3", "palignr", b"\x0f\x3a\x0f", "", Shape("m", "m", 8, imm="any"))
add("ssse3", "palignr", b"\x0f\x3a\x0f", "66", Shape("x", "x", 16, align=True, imm="any"))
SSE41 = {0x10: 16, 0x14: 16, 0x15: 16, 0x17: 16, 0x20: 8, 0x21: 4, 0x22: 2, 0x23: 8, 0x24: 4,
         0x25: 8, 0x28: 16, 0x29: 16, 0x2B: 16, 0x30: 8, 0x31: 4, 0x32: 2, 0x33: 8, 0x34: 4,
         0x35: 8, **{op: 16 for op in range(0x37, 0x42)}}
for op, mem in SSE41.items():
    add("sse4", "op", bytes([0x0F, 0x38, op]), "66", Shape("x", "x", mem, align=mem == 16,
                                                           lanes="f32" if op == 0x14 else "int"))
add("sse4", "movntdqa", b"\x0f\x38\x2a", "66", Shape("x", "x", 16, align=True), kinds=("mem",))
for op, lanes, mem in ((0x08, "f32", 16), (0x09, "f64", 16), (0x0A, "f32", 4), (0x0B, "f64", 8),
                       (0x40, "f32", 16), (0x41, "f64", 16)):
    add("sse4", "round/dp", bytes([0x0F, 0x3A, op]), "66",
        Shape("x", "x", mem, align=mem == 16, lanes=lanes, imm="round" if op < 0x40 else "any"))
for op in (0x0C, 0x0D, 0x0E, 0x42):
    add("sse4", "blend/mpsadbw", bytes([0x0F, 0x3A, op]), "66", Shape("x", "x", 16, align=True, imm="any"))
for op in (0x60, 0x61, 0x62, 0x63):
    add("sse4", "pcmpstr", bytes([0x0F, 0x3A, op]), "66",
        Shape("x", "x", 16, lanes="str", imm="any", lengths=op < 0x62))
for op, size in ((0x14, 1), (0x15, 2), (0x16, 4), (0x17, 4)):
    add("sse4", "pextr/extractps", bytes([0x0F, 0x3A, op]), "66", Shape("x", "g", size, imm="any", store=True))
add("sse4", "pextrq", b"\x0f\x3a\x16", "66", Shape("x", "g", 8, gsize=8, imm="any", store=True))
add("sse4", "pinsrb", b"\x0f\x3a\x20", "66", Shape("x", "g", 1, imm="any"))
add("sse4", "pinsrd", b"\x0f\x3a\x22", "66", Shape("x", "g", 4, imm="any"))
add("sse4", "pinsrq", b"\x0f\x3a\x22", "66", Shape("x", "g", 8, gsize=8, imm="any"))
add("sse4", "insertps", b"\x0f\x3a\x21", "66", Shape("x", "x", 4, imm="any"))
for gsize in (4, 8):
    add("sse4", f"crc32 r/m8 r{gsize * 8}", b"\x0f\x38\xf0", "F2", Shape("g", "g", 1, gsize=gsize))
    add("sse4", f"crc32 r/m{gsize * 8}", b"\x0f\x38\xf1", "F2", Shape("g", "g", gsize, gsize=gsize))
