"""The forms encode what their names say: GNU objdump disassembles a few snippets of
every form and must find the named instruction (so the coverage report is honest)."""

import shutil
import subprocess

import pytest

from differential import values
from differential.forms import ALL, FAMILIES
from differential.harness import State

PREFIXES = {"lock", "rep", "repz", "repnz", "addr32", "addr16", "data16"}
# what objdump calls some instructions (Intel syntax; it may add a w/d/q size suffix)
ALIASES = {"sal": ("shl",), "xchg": ("xchg", "nop"), "mov": ("mov", "movabs"),
           "add/adc": ("add",), "sub/sbb": ("sub",)}
SNIPPETS_PER_FORM = 3


def _expected(name: str) -> tuple[str, ...]:
    words = [w.lower() for w in name.split()]
    while words[0] in ("lock", "rep", "repe", "repne"):
        words.pop(0)
    return ALIASES.get(words[0], (words[0],))


def _disassemble(code: bytes, mode: int, path) -> dict[int, str]:
    """Mnemonic at each instruction offset of a linear disassembly."""
    path.write_bytes(code)
    arch = "i386:x86-64" if mode == 64 else "i386"
    out = subprocess.run(["objdump", "-D", "-b", "binary", "-m", arch, "-M", "intel", str(path)],
                         capture_output=True, check=True).stdout.decode()
    mnemonics = {}
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[0].strip().endswith(":"):
            words = [w for w in fields[2].split() if w not in PREFIXES]
            mnemonics[int(fields[0].strip()[:-1], 16)] = words[0] if words else ""
    return mnemonics


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs GNU objdump (binutils)")
@pytest.mark.parametrize("mode", (64, 32))
def test_forms_encode_their_instruction(mode, tmp_path):
    # prefix runs and invalid encodings are the decoder's tests; objdump renders them
    # in its own ways; the SIMD and x87 forms are named by their opcodes, not mnemonics
    by_opcode = {id(f) for family in ("simd", "x87") for f in FAMILIES[family]}
    forms = [f for f in ALL if f.mode == mode and f.group not in ("prefixes", "#UD", "#GP")
             and id(f) not in by_opcode]
    spans, code = [], b""
    for form in forms:
        rng = values.rng_for(form.name)
        for _ in range(SNIPPETS_PER_FORM):
            state = State(rng, mode)
            snippet = form.make(state)
            spans.append((form, len(code), len(code) + len(snippet)))
            code += snippet
    mnemonics = _disassemble(code, mode, tmp_path / "snippets.bin")
    wrong = []
    for form, start, end in spans:
        found = {m for at, m in mnemonics.items() if start <= at < end}
        wanted = _expected(form.name)
        if not any(m == w or (m[:-1] == w and m[-1] in "wdq") for m in found for w in wanted):
            wrong.append(f"{form.name}: {code[start:end].hex(' ')} disassembles to {sorted(found)}")
    assert not wrong, "\n".join(wrong[:20])
