"""Guest RAM as devices reach it by DMA: guest-physical addresses translated to the
machine's RAM buffer through the PC memory layout (RAM below the PCI hole at 0, the rest
at 4 GiB). An access that is not wholly inside RAM raises ``GuestMemoryError``; a write
is reported to ``written(gpa, size)`` so that the processors forget code they decoded
from those bytes."""

from __future__ import annotations

from typing import Callable, Optional

from devicemodel.firmware_tables.e820 import FOUR_GIB, PcMemoryLayout


class GuestMemoryError(Exception):
    """A DMA address that is not guest RAM."""


class GuestMemory:
    def __init__(self, ram, layout: PcMemoryLayout, written: Optional[Callable[[int, int], None]] = None):
        self.ram = memoryview(ram)
        self.layout = layout
        self.written = written

    def _offset(self, gpa: int, size: int) -> int:
        """The RAM buffer offset of [gpa, gpa + size)."""
        low = self.layout.low_top
        if 0 <= gpa and gpa + size <= low:
            return gpa
        if FOUR_GIB <= gpa and gpa + size <= FOUR_GIB + self.layout.high_size:
            return low + gpa - FOUR_GIB
        raise GuestMemoryError(f"[{gpa:#x}, {gpa + size:#x}) is not guest RAM")

    def read(self, gpa: int, size: int) -> bytes:
        offset = self._offset(gpa, size)
        return bytes(self.ram[offset:offset + size])

    def write(self, gpa: int, data: bytes) -> None:
        offset = self._offset(gpa, len(data))
        self.ram[offset:offset + len(data)] = data
        if self.written is not None and data:
            self.written(gpa, len(data))

    def release(self) -> None:
        self.ram.release()
