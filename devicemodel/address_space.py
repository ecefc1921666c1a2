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

Overlaps, after QEMU's ``memory_region_add_subregion_overlap``: a region added with
``overlap=True`` may cover others (and be covered). Where regions overlap, the one with
the higher ``priority`` is the one the guest sees; at equal priority the region added
last wins (QEMU's order among siblings). Any other overlap is a configuration mistake
and is refused. PCI BARs map this way with priority 1 over the legacy devices, the
PIIX3 reset control register at 0xcf9 inside the PCI host's 0xcf8..0xcfb, and
isa-debugcon's port 0xe9 over pc-testdev's byte port. An access goes to the region
seen at its first byte when it lies inside that region's whole range (QEMU dispatches
a port access to the region found at its address): a ``outl`` to 0xcf8 reaches the PCI
host although 0xcf9 shows the reset control register.
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
    priority: int = 0

    @property
    def end(self) -> int:
        """The first address after the region."""
        return self.base + self.size

    def describe(self) -> str:
        return f"'{self.name}' [{self.base:#x}..{self.end - 1:#x}]"


class AddressSpace:
    """Regions in ``[0, size)`` and the flat view the guest sees of them; lookups bisect
    the flat view."""

    def __init__(self, name: str, size: int = 1 << 64):
        self.name = name
        self.size = size
        self._added: list[tuple[Region, bool]] = []   # (region, may overlap), in the order added
        self._starts: list[int] = []                  # the flat view: visible ranges ...
        self._ranges: list[tuple[int, int, Region]] = []  # ... (start, end, region), by start
        self.unassigned_reads = 0
        self.unassigned_writes = 0
        self.invalid_accesses = 0

    @property
    def regions(self) -> tuple[Region, ...]:
        """The regions, by ascending base address."""
        return tuple(sorted((r for r, _ in self._added), key=lambda r: r.base))

    def add_region(self, region: Region, overlap: bool = False) -> None:
        if region.size <= 0:
            raise AddressSpaceError(f"region {region.name!r} has size {region.size}; it must be positive")
        if region.base < 0 or region.end > self.size:
            raise AddressSpaceError(
                f"region {region.describe()} does not fit in address space "
                f"'{self.name}' [0x0..{self.size - 1:#x}]")
        if any(r is region for r, _ in self._added):
            raise AddressSpaceError(f"region {region.describe()} is already in address space '{self.name}'")
        if not overlap:
            for other, other_overlaps in self._added:
                if not other_overlaps and other.base < region.end and region.base < other.end:
                    raise AddressSpaceError(
                        f"region {region.describe()} overlaps region {other.describe()} "
                        f"in address space '{self.name}'")
        self._added.append((region, overlap))
        self._render()

    def remove_region(self, region: Region) -> None:
        index = next(i for i, (r, _) in enumerate(self._added) if r is region)
        del self._added[index]
        self._render()

    def _render(self) -> None:
        """Paint the regions from the most visible down, each where nothing is yet."""
        order = sorted(range(len(self._added)), key=lambda i: (-self._added[i][0].priority, -i))
        ranges: list[tuple[int, int, Region]] = []
        for i in order:
            region = self._added[i][0]
            start = region.base
            covered = sorted((s, e) for s, e, _ in ranges if s < region.end and region.base < e)
            for covered_start, covered_end in covered:
                if covered_start > start:
                    ranges.append((start, covered_start, region))
                start = max(start, covered_end)
            if start < region.end:
                ranges.append((start, region.end, region))
        ranges.sort(key=lambda r: r[0])
        self._ranges = ranges
        self._starts = [r[0] for r in ranges]

    def _visible(self, addr: int):
        """The index of the flat range holding ``addr``, or -1."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self._ranges[i][1]:
            return i
        return -1

    def find(self, addr: int) -> Optional[Region]:
        """The region the guest sees at ``addr``, or None."""
        i = self._visible(addr)
        return self._ranges[i][2] if i >= 0 else None

    def _target(self, addr: int, size: int):
        """The region that takes the whole access, None for unassigned space, or SPLIT."""
        i = self._visible(addr)
        if i < 0:
            after = bisect.bisect_right(self._starts, addr)
            if after < len(self._starts) and self._starts[after] < addr + size:
                return SPLIT    # from unassigned space into a region
            return None
        region = self._ranges[i][2]
        if addr + size > region.end:
            return SPLIT        # the access runs past the region's end
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
