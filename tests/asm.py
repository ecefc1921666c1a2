"""Guest code for tests, written in assembly (Intel syntax) and assembled with the
system's GNU as, the same toolchain that builds firmware/.  A helper module, not tests."""

import functools
import subprocess
import tempfile
from pathlib import Path


@functools.lru_cache(maxsize=None)
def assemble(source: str, bits: int = 32, origin: int = 0) -> bytes:
    """Machine code of `source` for a `bits`-bit code segment, linked to run at `origin`."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "g.s").write_text(f".intel_syntax noprefix\n.code{bits}\n{source}\n")
        subprocess.run(["as", "--64", "-o", str(d / "g.o"), str(d / "g.s")], check=True, capture_output=True)
        subprocess.run(["ld", "-m", "elf_x86_64", "-Ttext", hex(origin), "--oformat", "binary",
                        "-o", str(d / "g.bin"), str(d / "g.o")], check=True, capture_output=True)
        return (d / "g.bin").read_bytes()
