"""The few AML encodings (ACPI 6.5, chapter 20) and resource descriptors (6.4) that the
DSDT's PCI root bridge needs: names, scopes, devices, integers, packages, buffers."""

from __future__ import annotations

import struct

NAME_OP, SCOPE_OP, BUFFER_OP, PACKAGE_OP = 0x08, 0x10, 0x11, 0x12
ZERO_OP, ONE_OP = 0x00, 0x01
BYTE_PREFIX, WORD_PREFIX, DWORD_PREFIX, QWORD_PREFIX = 0x0A, 0x0B, 0x0C, 0x0E
EXT_OP_PREFIX, DEVICE_OP = 0x5B, 0x82
ROOT_CHAR = b"\\"


def pkg_length(body: bytes) -> bytes:
    """``body`` preceded by its PkgLength (which counts its own bytes too)."""
    for extra in range(4):
        total = len(body) + 1 + extra
        if extra == 0 and total < 0x40:
            return bytes((total,)) + body
        if extra and total < 1 << (4 + 8 * extra):
            return bytes((extra << 6 | total & 0xF,)) + (total >> 4).to_bytes(extra, "little") + body
    raise ValueError("AML package too long")


def integer(value: int) -> bytes:
    if value in (0, 1):
        return bytes((value,))
    for prefix, size in ((BYTE_PREFIX, 1), (WORD_PREFIX, 2), (DWORD_PREFIX, 4), (QWORD_PREFIX, 8)):
        if value < 1 << (8 * size):
            return bytes((prefix,)) + value.to_bytes(size, "little")
    raise ValueError(f"AML integer {value:#x} is too large")


def name(seg: str, value: bytes) -> bytes:
    return bytes((NAME_OP,)) + name_seg(seg) + value


def name_seg(seg: str) -> bytes:
    """A NameSeg padded with '_', after the root prefix if it has one ("\\_SB")."""
    root = seg.startswith("\\")
    return (ROOT_CHAR if root else b"") + seg[root:].encode().ljust(4, b"_")


def scope(path: str, *terms: bytes) -> bytes:
    return bytes((SCOPE_OP,)) + pkg_length(name_seg(path) + b"".join(terms))


def device(seg: str, *terms: bytes) -> bytes:
    return bytes((EXT_OP_PREFIX, DEVICE_OP)) + pkg_length(name_seg(seg) + b"".join(terms))


def package(*elements: bytes) -> bytes:
    return bytes((PACKAGE_OP,)) + pkg_length(bytes((len(elements),)) + b"".join(elements))


def buffer(data: bytes) -> bytes:
    return bytes((BUFFER_OP,)) + pkg_length(integer(len(data)) + data)


def eisa_id(text: str) -> bytes:
    """EisaId ("PNP0A03"): three letters in 5 bits each and four hex digits, big-endian."""
    letters = (ord(text[0]) - 0x40) << 10 | (ord(text[1]) - 0x40) << 5 | (ord(text[2]) - 0x40)
    return integer(int.from_bytes(struct.pack(">HH", letters, int(text[3:], 16)), "little"))


# --- resource descriptors -------------------------------------------------------------

RESOURCE_MEMORY, RESOURCE_IO, RESOURCE_BUS = 0, 1, 2
# General flags: a producer decoding positively with a fixed minimum and maximum
PRODUCER_FIXED = 0x0C
IO_ENTIRE_RANGE = 0x03
MEMORY_READ_WRITE, MEMORY_CACHEABLE = 0x01, 0x02


def word_address(kind: int, minimum: int, maximum: int, type_flags: int = 0) -> bytes:
    """Word Address Space Descriptor (6.4.3.5.3) of a bridge's window."""
    body = struct.pack("<BBBHHHHH", kind, PRODUCER_FIXED, type_flags, 0, minimum, maximum, 0,
                       maximum - minimum + 1)
    return struct.pack("<BH", 0x88, len(body)) + body


def dword_memory(minimum: int, maximum: int, cacheable: bool) -> bytes:
    """DWord Address Space Descriptor (6.4.3.5.2) of a memory window."""
    flags = MEMORY_READ_WRITE | (MEMORY_CACHEABLE if cacheable else 0)
    body = struct.pack("<BBBIIIII", RESOURCE_MEMORY, PRODUCER_FIXED, flags, 0, minimum, maximum, 0,
                       maximum - minimum + 1)
    return struct.pack("<BH", 0x87, len(body)) + body


def io_port(base: int, length: int) -> bytes:
    """I/O Port Descriptor (6.4.2.5), 16-bit decode, at a fixed address."""
    return struct.pack("<BBHHBB", 0x47, 0x01, base, base, 1, length)


def resource_template(*descriptors: bytes) -> bytes:
    return buffer(b"".join(descriptors) + bytes((0x79, 0x00)))     # End Tag, checksum 0 (none)
