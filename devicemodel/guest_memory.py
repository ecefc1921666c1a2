"""Guest-physical memory as a DMA engine sees it: the machine's RAM buffer laid out as
the PC lays it out (``PcMemoryLayout``: the buffer's first ``low_top`` bytes at
guest-physical 0, the rest at 4 GiB).

Every address a device gets from the guest is untrusted: ``read``/``write`` accept a
range only if it lies wholly inside one RAM block, and raise ``DmaError`` otherwise --
MMIO, the PCI hole, past the end of RAM, negative addresses, and ranges whose end wraps
past 2^64. Nothing outside the buffer is ever touched.

Writes go through ``on_write(gpa, size)`` after the bytes land, so that the hypervisor
can forget code it decoded from those pages and log them as dirty (``VM.
guest_memory_written``), as a real DMA write into RAM would be seen by the processors.

``discard(gpa, size)`` gives whole pages back to the host (the balloon): with RAM that
is a private anonymous mmap (the machine's), madvise(MADV_DONTNEED) frees them and they
read as zeros afterwards; other buffers are zeroed.
"""

from __future__ import annotations

import mmap
from typing import Callable, Optional

from devicemodel.firmware_tables.e820 import FOUR_GIB, PcMemoryLayout

ADDRESS_LIMIT = 1 << 64


class DmaError(Exception):
    """A DMA range that is not guest RAM."""


class GuestMemory:
    """DMA access to ``ram`` (a writable buffer of the layout's ``ram_size`` bytes)."""

    def __init__(self, ram, layout: Optional[PcMemoryLayout] = None,
                 on_write: Optional[Callable[[int, int], None]] = None):
        self._ram = ram
        self._mem = memoryview(ram).cast("B")
        self.layout = layout or PcMemoryLayout(len(self._mem))
        if self.layout.ram_size != len(self._mem):
            raise ValueError(f"RAM buffer of {len(self._mem)} bytes for a layout of {self.layout.ram_size}")
        self.on_write = on_write
        low, high = self.layout.low_top, self.layout.high_size
        # (guest-physical base, end, buffer offset) of each RAM block
        self._blocks = [(0, low, 0)] + ([(FOUR_GIB, FOUR_GIB + high, low)] if high else [])

    def offset(self, gpa: int, size: int) -> int:
        """The buffer offset of ``[gpa, gpa + size)``; DmaError unless it is all RAM."""
        if gpa < 0 or size < 0 or gpa + size > ADDRESS_LIMIT:
            raise DmaError(f"DMA range {gpa:#x}+{size:#x} is outside the physical address space")
        for base, end, offset in self._blocks:
            if base <= gpa and gpa + size <= end:
                return offset + gpa - base
        raise DmaError(f"DMA range {gpa:#x}+{size:#x} is not guest RAM")

    def read(self, gpa: int, size: int) -> bytes:
        start = self.offset(gpa, size)
        return bytes(self._mem[start:start + size])

    def write(self, gpa: int, data) -> None:
        size = len(data)
        start = self.offset(gpa, size)
        self._mem[start:start + size] = data
        if self.on_write is not None and size:
            self.on_write(gpa, size)

    def read_int(self, gpa: int, size: int) -> int:
        """A little-endian integer of ``size`` bytes (virtio's rings are little-endian)."""
        start = self.offset(gpa, size)
        return int.from_bytes(self._mem[start:start + size], "little")

    def write_int(self, gpa: int, size: int, value: int) -> None:
        self.write(gpa, value.to_bytes(size, "little"))

    def discard(self, gpa: int, size: int) -> None:
        """Free the host memory behind ``[gpa, gpa + size)`` (page-aligned); it reads as zeros."""
        if gpa % mmap.PAGESIZE or size % mmap.PAGESIZE:
            raise DmaError(f"discard of {gpa:#x}+{size:#x} is not page-aligned")
        start = self.offset(gpa, size)
        if isinstance(self._ram, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
            self._ram.madvise(mmap.MADV_DONTNEED, start, size)
        else:
            self._mem[start:start + size] = bytes(size)
        if self.on_write is not None and size:
            self.on_write(gpa, size)

    def fill(self, gpa: int, size: int, byte: int = 0) -> None:
        self.write(gpa, bytes([byte]) * size)
