"""``x/i``: disassembly with capstone (``pip install pyhv[disasm]``), in QEMU's layout
and AT&T syntax (QEMU's disas/capstone.c): the address, up to eight bytes, the mnemonic
padded to eight columns and the operands."""

from __future__ import annotations

from devicemodel.monitor.parser import MonitorError

MAX_INSN = 15
BYTES_SHOWN = 8


def _capstone(bits: int):
    try:
        import capstone
    except ImportError:
        raise MonitorError("disassembly needs the capstone library, which is not installed "
                           "(pip install 'pyhv[disasm]')") from None
    mode = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}[bits]
    engine = capstone.Cs(capstone.CS_ARCH_X86, mode)
    engine.syntax = capstone.CS_OPT_SYNTAX_ATT
    return engine


def disassemble(read, addr: int, count: int, bits: int) -> list[str]:
    """``count`` instructions from ``addr``; ``read(addr, n)`` gives bytes or None."""
    engine = _capstone(bits)
    width = 8 if addr + count * MAX_INSN < 1 << 32 else 16
    lines = []
    for _ in range(count):
        code = None
        for size in (MAX_INSN, 8, 4, 1):     # near the end of RAM fewer bytes are there
            code = read(addr, size)
            if code is not None:
                break
        if code is None:
            lines.append(f"0x{addr:0{width}x}:  Cannot access memory")
            break
        insn = next(engine.disasm(code, addr, 1), None)
        if insn is None:
            shown, text, size = code[:1], ".byte    0x%02x" % code[0], 1
        else:
            shown, size = bytes(insn.bytes), insn.size
            text = f"{insn.mnemonic:<8} {insn.op_str}"
        hexes = "".join(f"{b:02x} " for b in shown[:BYTES_SHOWN])
        lines.append(f"0x{addr:0{width}x}:  {hexes:<{3 * BYTES_SHOWN + 1}}{text}")
        if len(shown) > BYTES_SHOWN:
            lines.append(f"0x{addr + BYTES_SHOWN:0{width}x}:  "
                         + "".join(f"{b:02x} " for b in shown[BYTES_SHOWN:]).rstrip())
        addr += size
    return lines
