"""The initial ramdisk: read from its file and placed, as boot loaders do, as high in low
RAM as the kernel allows, page-aligned, above the kernel."""

from __future__ import annotations

from typing import Optional

from devicemodel.errors import LoaderError
from devicemodel.loaders.x86_boot import PAGE_SIZE


def read_initrd(path: Optional[str]) -> bytes:
    """The initrd's bytes (none without a file)."""
    if path is None:
        return b""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise LoaderError(f"could not open initrd file '{path}': {e.strerror}") from None


def place_initrd(path: Optional[str], size: int, limit: int, kernel_end: int) -> int:
    """The highest page-aligned address for ``size`` bytes ending at or below ``limit`` and
    starting at or above ``kernel_end``; 0 for an empty initrd."""
    if not size:
        return 0
    addr = (limit - size) & ~(PAGE_SIZE - 1)
    if addr < kernel_end:
        raise LoaderError(f"initrd '{path}' ({size} bytes) does not fit in guest RAM between the kernel "
                          f"(up to {kernel_end:#x}) and {limit:#x}; use a larger -m")
    return addr
