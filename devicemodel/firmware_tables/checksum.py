"""The byte checksum of the PC firmware tables (ACPI, MP): all bytes sum to 0 mod 256."""


def byte_sum(data: bytes) -> int:
    return sum(data) & 0xFF


def set_checksum(table: bytes, offset: int, length: int = None) -> bytes:
    """``table`` with the byte at ``offset`` set so that its first ``length`` bytes (all by
    default) sum to 0; the byte must be 0 on the way in."""
    length = len(table) if length is None else length
    value = -byte_sum(table[:length]) & 0xFF
    return table[:offset] + bytes((value,)) + table[offset + 1:]


def field_offset(struct, name: str) -> int:
    """The byte offset of field ``name`` in the fixed-size construct ``struct``."""
    offset = 0
    for sub in struct.subcons:
        if sub.name == name:
            return offset
        offset += sub.sizeof()
    raise KeyError(name)
