"""Prefix combinations and invalid encodings, for the decoder: instructions behind
random runs of legacy prefixes (operand and address size, ignored segment overrides,
REP/REPNE where they mean nothing, LOCK), REX prefixes that do not immediately precede
the opcode (ignored), instructions longer than 15 bytes (#GP), LOCK where it is not
allowed and opcodes invalid in 64-bit mode (#UD).  Faults are expected here; the
vector, the faulting RIP and the untouched state must match the host's."""

from __future__ import annotations

from differential.encode import encode
from differential.forms.common import modrm_form
from differential.harness import ARITH, Form, State

# one-byte-opcode instructions without immediates: no prefix changes their length
BASES = [("ADD", 0x01, None), ("ADC", 0x13, None), ("SBB", 0x19, None), ("AND", 0x21, None),
         ("SUB", 0x2B, None), ("XOR", 0x31, None), ("CMP", 0x39, None), ("TEST", 0x85, None),
         ("XCHG", 0x87, None), ("MOV", 0x89, None), ("MOV", 0x8B, None), ("NOT", 0xF7, 2),
         ("NEG", 0xF7, 3), ("INC", 0xFF, 0), ("DEC", 0xFF, 1)]   # all flags defined
LEGACY = (0x66, 0x67, 0xF2, 0xF3, 0x26, 0x2E, 0x36, 0x3E, 0xF0)
# in 32-bit code 67 would switch to 16-bit addressing: another ModRM layout, addresses
# below 64 KiB
LEGACY_32 = tuple(p for p in LEGACY if p != 0x67)


def _soup(base_make, mode: int):
    """The base instruction behind up to 8 prefix bytes; in 64-bit mode some REX bytes
    among them, never the last one unless the instruction starts with its own REX (a
    REX applies only right before the opcode; other ones are ignored)."""
    def make(s: State) -> bytes:
        code = base_make(s)
        rng = s.rng
        soup = [rng.choice(LEGACY if mode == 64 else LEGACY_32) for _ in range(rng.randrange(1, 9))]
        if mode == 64:
            for _ in range(rng.randrange(3)):
                soup.insert(rng.randrange(len(soup)), rng.randrange(0x40, 0x50))
            if code[0] & 0xF0 == 0x40 and rng.random() < 0.5:
                soup.append(rng.randrange(0x40, 0x50))
        return bytes(soup) + code
    return make


def _invalid(opcode: bytes, tail: int = 8):
    """An encoding that raises #UD, followed by bytes that must not matter."""
    def make(s: State) -> bytes:
        return opcode + s.rng.randbytes(tail)
    return make


def _locked_register(s: State) -> bytes:
    """LOCK with a register destination: #UD."""
    return b"\xf0" + encode(b"\x01", s.operand(4), s.operand(4), mode=s.mode)


def _forms() -> list[Form]:
    forms = []
    for mode in (64, 32):
        suffix = "" if mode == 64 else " [32-bit]"
        for mn, opcode, digit in BASES:
            for kind in ("reg", "mem"):
                base = modrm_form(bytes([opcode]), 4, kind, digit=digit)
                forms.append(Form(f"prefixes + {mn} ({opcode:02x}{'' if digit is None else f' /{digit}'}) {kind}{suffix}",
                                  "prefixes", _soup(base, mode), ARITH, mode=mode, faults=True))
        forms.append(Form(f"LOCK ADD r32,r32 #UD{suffix}", "#UD", _locked_register, ARITH, mode=mode, faults=True))
    invalid_64 = {"PUSH ES": b"\x06", "POP ES": b"\x07", "PUSH CS": b"\x0e", "PUSH SS": b"\x16",
                  "POP SS": b"\x17", "PUSH DS": b"\x1e", "POP DS": b"\x1f", "DAA": b"\x27", "DAS": b"\x2f",
                  "AAA": b"\x37", "AAS": b"\x3f", "PUSHA": b"\x60", "POPA": b"\x61", "82 /0": b"\x82\xc0\x01",
                  "CALL far": b"\x9a", "INTO": b"\xce", "AAM": b"\xd4\x0a", "AAD": b"\xd5\x0a",
                  "JMP far": b"\xea", "UD2": b"\x0f\x0b", "LEA reg": b"\x8d\xc0", "LOCK MOV": b"\xf0\x89\x00",
                  "LOCK CMP m": b"\xf0\x39\x00", "CMPXCHG8B reg": b"\x0f\xc7\xc8", "MOVBE reg": b"\x0f\x38\xf0\xc0"}
    for name, opcode in invalid_64.items():
        forms.append(Form(f"{name} #UD ({opcode.hex(' ')})", "#UD", _invalid(opcode), ARITH, faults=True))
    longest = b"\x66" * 13 + b"\x01\xc0"            # 15 bytes: the limit
    forms.append(Form("15 bytes (66 x13 01 c0)", "prefixes", _invalid(longest, 0), ARITH))
    forms.append(Form("16 bytes #GP (66 x14 01 c0 ..)", "#GP", _invalid(b"\x66" + longest), ARITH, faults=True))
    return forms


FORMS = _forms()
