"""Address spaces of regions with read/write callbacks, after QEMU's memory API.

The same class serves the port-I/O space (0..0xffff) and the MMIO space. A region
covers ``[base, base + size)``; its callbacks get the offset from the region's base:
``read(offset, size) -> int`` and ``write(offset, size, value)``.

Access sizes follow QEMU's two rules:

* ``sizes`` (QEMU's ``.valid``): the access sizes the guest may use. Any other size is
  invalid: it behaves like an access to unassigned space and is counted in
  ``invalid_accesses``.
* ``impl_size`` (QEMU's ``.impl.max_access_size``): the widest access the callbacks
  implement. A wider valid access is split into ``impl_size`` pieces, little-endian,
  lowest address first (a 16-bit ``out`` to a byte-wide UART writes two registers).

An access that is not inside one region (it runs past a region's end, or into a region
from unassigned space) is split into byte accesses, each dispatched on its own, as
QEMU splits accesses at region boundaries: ``outl`` to isa-debug-exit's default two
ports still reaches the device.

Unassigned space reads as all-ones and ignores writes; both are counted.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable, Optional

from devicemodel.errors import AddressSpaceError

ReadFn = Callable[[int, int], int]
WriteFn = Callable[[int, int, int], None]


SPLIT = object()  # an access that is not inside one region


def _ones(size: int) -> int:
    return (1 << (8 * size)) - 1


@dataclass(eq=False)
class Region:
    """A range of an address space served by one device.

    A missing callback makes the region behave as unassigned space for that direction.
    """

    base: int
    size: int
    name: str
    read: Optional[ReadFn] = None
    write: Optional[WriteFn] = None
    owner: object = None
    sizes: tuple[int, ...] = (1, 2, 4)
    impl_size: Optional[int] = None

    @property
    def end(self) -> int:
        """The first address after the region."""
        return self.base + self.size

    def describe(self) -> str:
        return f"'{self.name}' [{self.base:#x}..{self.end - 1:#x}]"


class AddressSpace:
    """A sorted, non-overlapping set of regions in ``[0, size)``; lookups bisect."""

    def __init__(self, name: str, size: int = 1 << 64):
        self.name = name
        self.size = size
        self._bases: list[int] = []
        self._regions: list[Region] = []
        self.unassigned_reads = 0
        self.unassigned_writes = 0
        self.invalid_accesses = 0

    @property
    def regions(self) -> tuple[Region, ...]:
        """The regions, by ascending base address."""
        return tuple(self._regions)

    def add_region(self, region: Region) -> None:
        if region.size <= 0:
            raise AddressSpaceError(f"region {region.name!r} has size {region.size}; it must be positive")
        if region.base < 0 or region.end > self.size:
            raise AddressSpaceError(
                f"region {region.describe()} does not fit in address space "
                f"'{self.name}' [0x0..{self.size - 1:#x}]")
        i = bisect.bisect_right(self._bases, region.base)
        for neighbour in self._regions[max(i - 1, 0):i + 1]:
            if neighbour.base < region.end and region.base < neighbour.end:
                raise AddressSpaceError(
                    f"region {region.describe()} overlaps region {neighbour.describe()} "
                    f"in address space '{self.name}'")
        self._bases.insert(i, region.base)
        self._regions.insert(i, region)

    def remove_region(self, region: Region) -> None:
        i = self._regions.index(region)
        del self._bases[i]
        del self._regions[i]

    def find(self, addr: int) -> Optional[Region]:
        """The region containing ``addr``, or None."""
        i = bisect.bisect_right(self._bases, addr) - 1
        if i >= 0:
            region = self._regions[i]
            if addr < region.end:
                return region
        return None

    def _target(self, addr: int, size: int):
        """The region that holds the whole access, None for unassigned space, or SPLIT."""
        i = bisect.bisect_right(self._bases, addr + size - 1) - 1  # last region starting by the last byte
        if i < 0:
            return None
        region = self._regions[i]
        if region.base > addr or addr < region.end < addr + size:
            return SPLIT  # a region starts inside the access, or the access runs past its end
        if region.end <= addr:
            return None
        if size not in region.sizes:
            self.invalid_accesses += 1
            return None
        return region

    def read(self, addr: int, size: int) -> int:
        region = self._target(addr, size)
        if region is SPLIT:
            return sum(self.read(addr + i, 1) << (8 * i) for i in range(size))
        if region is None or region.read is None:
            self.unassigned_reads += 1
            return _ones(size)
        offset = addr - region.base
        step = region.impl_size
        if step is None or size <= step:
            return region.read(offset, size) & _ones(size)
        value = 0
        for i in range(0, size, step):
            value |= (region.read(offset + i, step) & _ones(step)) << (8 * i)
        return value

    def write(self, addr: int, size: int, value: int) -> None:
        region = self._target(addr, size)
        if region is SPLIT:
            for i in range(size):
                self.write(addr + i, 1, (value >> (8 * i)) & 0xFF)
            return
        if region is None or region.write is None:
            self.unassigned_writes += 1
            return
        offset = addr - region.base
        value &= _ones(size)
        step = region.impl_size
        if step is None or size <= step:
            region.write(offset, size, value)
            return
        for i in range(0, size, step):
            region.write(offset + i, step, (value >> (8 * i)) & _ones(step))
