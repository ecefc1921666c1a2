"""A small x86 instruction encoder for the differential tests: legacy prefixes, REX,
ModRM/SIB with every addressing form (64-bit, 32-bit and 16-bit addressing,
RIP-relative) and immediates.  Forms name their opcode bytes explicitly, so each
encoding (r/m,r vs r,r/m, imm8 vs imm32, short forms) is tested on purpose."""

from __future__ import annotations

from dataclasses import dataclass

from differential import layout

RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI = range(8)
R8, R9, R10, R11, R12, R13, R14, R15 = range(8, 16)
# byte registers AH, CH, DH, BH: encodable only without a REX prefix
AH, CH, DH, BH = 16, 17, 18, 19
HIGH_BYTE = (AH, CH, DH, BH)

NAMES = {
    8: ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"] + [f"r{n}" for n in range(8, 16)],
    4: ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"] + [f"r{n}d" for n in range(8, 16)],
    2: ["ax", "cx", "dx", "bx", "sp", "bp", "si", "di"] + [f"r{n}w" for n in range(8, 16)],
    1: ["al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil"] + [f"r{n}b" for n in range(8, 16)]
       + ["ah", "ch", "dh", "bh"],
}

# 16-bit addressing: ModRM.rm -> (base, index)
ADDR16 = {0: (RBX, RSI), 1: (RBX, RDI), 2: (RBP, RSI), 3: (RBP, RDI),
          4: (RSI, None), 5: (RDI, None), 6: (RBP, None), 7: (RBX, None)}


def gpr_of(reg: int) -> int:
    """The 64-bit register holding a (possibly high-byte) register operand."""
    return reg - AH if reg in HIGH_BYTE else reg


@dataclass(frozen=True)
class Mem:
    """A memory operand.  `rip` means RIP-relative with `disp` as the absolute target
    (the encoder turns it into a displacement).  `addr` is the address size in bytes
    (8 or 4 in 64-bit mode, 4 or 2 in 32-bit mode).  `disp_size` forces the displacement
    width (0, 1 or 4) where more than one is possible."""
    base: int | None = None
    index: int | None = None
    scale: int = 0
    disp: int = 0
    rip: bool = False
    addr: int = 8
    disp_size: int | None = None

    def regs(self):
        return {r for r in (self.base, self.index) if r is not None}


def _disp_size(m: Mem, needs_disp: bool) -> int:
    if m.disp_size is not None:
        return m.disp_size
    if m.disp == 0 and not needs_disp:
        return 0
    return 1 if -128 <= m.disp <= 127 else 4


def _modrm_mem16(reg_field: int, m: Mem) -> bytes:
    if m.base is None and m.index is None:
        return bytes([(reg_field & 7) << 3 | 6]) + (m.disp & 0xFFFF).to_bytes(2, "little")
    rm = next(k for k, v in ADDR16.items() if v == (m.base, m.index))
    size = _disp_size(m, rm == 6)
    size = 2 if size == 4 else size
    mod = {0: 0, 1: 1, 2: 2}[size]
    return bytes([mod << 6 | (reg_field & 7) << 3 | rm]) + (m.disp & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def _modrm_mem(reg_field: int, m: Mem, mode: int, rip_disp: int) -> tuple[bytes, int]:
    """ModRM, SIB and displacement; returns them and the REX.X/REX.B bits needed."""
    rex = 0
    if m.rip:
        return bytes([(reg_field & 7) << 3 | 5]) + (rip_disp & 0xFFFFFFFF).to_bytes(4, "little"), 0
    if m.index is not None:
        assert m.index != RSP, "RSP cannot be an index"
        rex |= 2 if m.index & 8 else 0
    if m.base is not None:
        rex |= 1 if m.base & 8 else 0
    disp32 = (m.disp & 0xFFFFFFFF).to_bytes(4, "little")
    if m.base is None:
        if m.index is None and mode == 32:
            return bytes([(reg_field & 7) << 3 | 5]) + disp32, rex
        index = 4 if m.index is None else m.index & 7
        return bytes([(reg_field & 7) << 3 | 4, m.scale << 6 | index << 3 | 5]) + disp32, rex
    size = _disp_size(m, (m.base & 7) == RBP)
    mod = {0: 0, 1: 1, 4: 2}[size]
    disp = (m.disp & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    if m.index is None and (m.base & 7) != RSP:
        return bytes([mod << 6 | (reg_field & 7) << 3 | (m.base & 7)]) + disp, rex
    index = 4 if m.index is None else m.index & 7
    return bytes([mod << 6 | (reg_field & 7) << 3 | 4, m.scale << 6 | index << 3 | (m.base & 7)]) + disp, rex


def encode(opcode: bytes, reg: int | None = None, rm: int | Mem | None = None, *,
           digit: int | None = None, size: int = 4,
           mode: int = 64, imm: bytes = b"", prefix: bytes = b"", w: bool | None = None,
           byte_regs: bool = False, byte_rm: bool | None = None, at: int = layout.CODE,
           opreg: int | None = None) -> bytes:
    """One instruction.  `reg` is the ModRM.reg register, or `digit` the opcode
    extension in its place; `rm` the r/m operand (register number or Mem), or None for
    no ModRM.  `opreg` is a register
    added to the last opcode byte (B0+r, 50+r, ...).  `size` is the operand size: 2 adds
    the 66 prefix, 8 sets REX.W unless `w` says otherwise.  `byte_regs` says the register
    operands are byte registers (SPL..DIL need a REX prefix, AH..BH forbid one);
    `byte_rm` says so of the r/m operand alone (default: as byte_regs).  `at` is the
    instruction's address, for RIP-relative targets (default: a snippet's first)."""
    if w is None:
        w = size == 8
    legacy = bytearray(prefix)
    if size == 2:
        legacy.append(0x66)
    if isinstance(rm, Mem) and rm.addr != (8 if mode == 64 else 4):
        legacy.append(0x67)
    rex = 8 if w else 0
    if byte_rm is None:
        byte_rm = byte_regs
    byte_operands = [r for r, is_byte in ((reg, byte_regs),
                                          (rm if isinstance(rm, int) else None, byte_rm),
                                          (opreg, byte_regs)) if r is not None and is_byte]
    need_rex = any(4 <= r <= 7 for r in byte_operands)
    forbid_rex = any(r in HIGH_BYTE for r in byte_operands)
    body = b""
    if rm is not None:
        if digit is not None:
            reg_field = digit
        else:
            reg_field = reg - AH + 4 if reg in HIGH_BYTE else reg
        rex |= 4 if reg_field & 8 else 0
        if isinstance(rm, Mem):
            if rm.addr == 2:
                body = _modrm_mem16(reg_field, rm)
            else:
                body, bits = _modrm_mem(reg_field, rm, mode, 0)
                rex |= bits
        else:
            rm_field = rm - AH + 4 if rm in HIGH_BYTE else rm
            rex |= 1 if rm_field & 8 else 0
            body = bytes([0xC0 | (reg_field & 7) << 3 | (rm_field & 7)])
    op = bytearray(opcode)
    if opreg is not None:
        r = opreg - AH + 4 if opreg in HIGH_BYTE else opreg
        rex |= 1 if r & 8 else 0
        op[-1] |= r & 7
    if forbid_rex:
        assert rex == 0 and not need_rex, "AH..BH cannot be encoded with a REX prefix"
    if need_rex or rex:
        assert mode == 64, "REX prefix outside 64-bit mode"
        rex_bytes = bytes([0x40 | rex])
    else:
        rex_bytes = b""
    insn = bytes(legacy) + rex_bytes + bytes(op) + body + imm
    if isinstance(rm, Mem) and rm.rip:
        # the displacement counts from the end of the instruction
        body, _ = _modrm_mem(reg_field, rm, mode, rm.disp - (at + len(insn)))
        insn = bytes(legacy) + rex_bytes + bytes(op) + body + imm
    return insn


def imm(value: int, size: int) -> bytes:
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
