"""Guest memory for the monitor: physical reads of RAM, virtual reads through the current
vCPU's page tables (the processor's own walk, without setting accessed flags), and the
``x``/``xp`` dump in QEMU's layout (hmp memory_dump())."""

from __future__ import annotations

from typing import Optional

from devicemodel.monitor.parser import Format, MonitorError

PAGE = 4096


def read_physical(machine, gpa: int, size: int) -> Optional[bytes]:
    """Bytes of guest RAM, or None if any of them is not RAM."""
    out = bytearray()
    while size > 0:
        chunk = min(size, PAGE - (gpa & (PAGE - 1)))
        data = machine.vm.read_guest(gpa, chunk)
        if data is None:
            return None
        out += data
        gpa, size = gpa + chunk, size - chunk
    return bytes(out)


def translate_virtual(vcpu, gva: int) -> Optional[int]:
    """The guest-physical address of ``gva`` (KVM_TRANSLATE's walk), or None."""
    from kvm.translate import TRANSLATE_PROBE, PageFault, UnbackedPagingStructure, translate
    try:
        return translate(vcpu, gva, TRANSLATE_PROBE)
    except (PageFault, UnbackedPagingStructure):
        return None


def read_virtual(machine, vcpu, gva: int, size: int) -> Optional[bytes]:
    out = bytearray()
    while size > 0:
        chunk = min(size, PAGE - (gva & (PAGE - 1)))
        gpa = translate_virtual(vcpu, gva)
        data = None if gpa is None else read_physical(machine, gpa, chunk)
        if data is None:
            return None
        out += data
        gva, size = (gva + chunk) & ((1 << 64) - 1), size - chunk
    return bytes(out)


def _printc(value: int) -> str:
    """QEMU's monitor_printc."""
    special = {ord("'"): "\\'", ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r"}
    if value in special:
        return f"'{special[value]}'"
    if 32 <= value <= 126:
        return f"'{chr(value)}'"
    return f"'\\x{value:02x}'"


def _digits(fmt: str, size: int) -> int:
    if fmt == "o":
        return -(-size * 8 // 3)
    if fmt in ("u", "d"):
        return -(-size * 8 * 10 // 33)
    return size * 2


def format_dump(read, addr: int, fmt: Format) -> list[str]:
    """The lines of ``x``/``xp``: ``read(addr, n)`` gives bytes or None."""
    size = fmt.size
    length = size * fmt.count
    line_size = 8 if size == 1 else 16
    digits = _digits(fmt.format, size)
    lines = []
    while length > 0:
        chunk = min(length, line_size)
        head = f"{addr:016x}:"
        data = read(addr, chunk)
        if data is None:
            lines.append(head + " Cannot access memory")
            break
        words = []
        for i in range(0, chunk, size):
            value = int.from_bytes(data[i:i + size], "little")
            if fmt.format == "x":
                words.append(f"0x{value:0{digits}x}")
            elif fmt.format == "o":
                words.append(f"{_octal(value):>{digits}}")
            elif fmt.format == "c":
                words.append(_printc(value))
            else:
                words.append(f"{value:>{digits}}")
        lines.append(head + "".join(" " + w for w in words))
        addr, length = addr + chunk, length - chunk
    return lines


def _octal(value: int) -> str:
    """C's ``%#o``: a leading 0 unless the value is 0."""
    return "0" if value == 0 else "0" + format(value, "o")

