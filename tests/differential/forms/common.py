"""Operand builders shared by the form tables."""

from __future__ import annotations

from differential import values
from differential.encode import AH, BH, CH, DH, Mem, encode, imm
from differential.harness import State

SIZES = (1, 2, 4, 8)
# byte registers without a REX prefix: AL..BL and AH..BH
LEGACY_BYTE_REGS = (0, 1, 2, 3, AH, CH, DH, BH)


def bits(size: int) -> str:
    return f"{size * 8}"


class Operands:
    """The register pool of one case: with byte operands, either the legacy byte
    registers (AH..BH, no REX anywhere) or the REX ones (SPL..DIL, R8B..R15B)."""

    def __init__(self, s: State, has_byte_operand: bool, rex_w: bool = False):
        self.s = s
        self.legacy = has_byte_operand and not rex_w and (s.mode == 32 or s.rng.random() < 0.35)
        self.mem_exclude = range(8, 16) if self.legacy else ()

    def reg(self, size: int, value: int | None = None, exclude=()) -> int:
        pool = None
        if self.legacy:
            pool = LEGACY_BYTE_REGS if size == 1 else range(8)
        return self.s.operand(size, value, pool=pool, exclude=exclude)

    def mem(self, size: int, value: int | None = None, align: int = 1, exclude=(), ea: int | None = None) -> Mem:
        return self.s.memory(size, value, align=align, ea=ea, exclude=tuple(self.mem_exclude) + tuple(exclude))

    def rm(self, kind: str, size: int, value: int | None = None, exclude=()):
        return self.mem(size, value, exclude=exclude) if kind == "mem" else self.reg(size, value, exclude)


def modrm_form(opcode: bytes, size: int, kind: str, *, digit: int | None = None,
               imm_size: int = 0, prefix: bytes = b"", rm_size: int | None = None):
    """make() for `opcode` with a ModRM operand of `kind` ("reg"/"mem") and a register
    operand (or the /digit extension), plus an immediate of imm_size bytes."""
    rm_size = rm_size or size

    def make(s: State) -> bytes:
        ops = Operands(s, 1 in (size, rm_size), rex_w=size == 8)
        rm_operand = ops.rm(kind, rm_size)
        reg = ops.reg(size) if digit is None else None
        immediate = imm(values.operand(s.rng, imm_size * 8), imm_size) if imm_size else b""
        return encode(opcode, reg, rm_operand, digit=digit, size=size, mode=s.mode, imm=immediate,
                      prefix=prefix, byte_regs=size == 1, byte_rm=rm_size == 1)
    return make
