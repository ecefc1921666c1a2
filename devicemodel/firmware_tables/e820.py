"""The PC's physical memory map, as the BIOS reports it with INT 15h E820 (ACPI 6.5,
chapter 15), shared by every loader and firmware table.

The layout is QEMU's pc (i440fx) machine with its firmware:

    [0, 0x9fc00)                  RAM (conventional memory)
    [0x9fc00, 0xa0000)            reserved: the extended BIOS data area (EBDA)
    [0xf0000, 0x100000)           reserved: the system BIOS (RSDP, MP table)
    [1 MiB, low_top - 128 KiB)    RAM
    [low_top - 128 KiB, low_top)  reserved: ACPI tables
    [0xfffc0000, 4 GiB)           reserved: the BIOS ROM
    [4 GiB, 4 GiB + high)         RAM, when RAM does not fit below the PCI hole

RAM of ``ram_size`` bytes starts at 0 up to ``low_top``; as QEMU's pc machine does,
when ``ram_size`` is 3.5 GiB or more only the first 3 GiB stay below 4 GiB (the rest of
the 32-bit space is the PCI hole) and the remainder starts at 4 GiB. A RAM buffer of
``ram_size`` bytes backs both parts: its offset ``x < low_top`` is guest-physical ``x``,
its offset ``low_top + y`` is guest-physical ``4 GiB + y``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from construct import Int32ul, Int64ul, Struct

E820_RAM = 1
E820_RESERVED = 2
E820_ACPI = 3
E820_NVS = 4
E820_UNUSABLE = 5

FOUR_GIB = 1 << 32
LOW_MEMORY_END = 0x9FC00       # 639 KiB of conventional memory
EBDA_SEGMENT = LOW_MEMORY_END >> 4
EBDA_SIZE = 0x400
BIOS_AREA_BASE, BIOS_AREA_SIZE = 0xF0000, 0x10000
HIGH_MEMORY_BASE = 0x100000
ACPI_RESERVED = 0x20000        # the firmware keeps the top 128 KiB of low RAM for ACPI tables
BIOS_ROM_BASE, BIOS_ROM_SIZE = 0xFFFC0000, 0x40000

# QEMU's pc_piix.c: RAM of 0xe0000000 bytes or more is split at 3 GiB ("gigabyte_align").
SPLIT_THRESHOLD = 0xE0000000
SPLIT_LOW_TOP = 0xC0000000

# struct boot_e820_entry (Linux) / struct e820_entry (QEMU's etc/e820): packed, 20 bytes.
E820Entry = Struct(
    "addr" / Int64ul,
    "size" / Int64ul,
    "type" / Int32ul,
)


class MemoryRegion(NamedTuple):
    base: int
    length: int
    type: int

    @property
    def end(self) -> int:
        return self.base + self.length


@dataclass(frozen=True)
class PcMemoryLayout:
    """Where ``ram_size`` bytes of RAM appear in the guest-physical address space."""

    ram_size: int

    @property
    def low_top(self) -> int:
        """The end of RAM below 4 GiB."""
        return SPLIT_LOW_TOP if self.ram_size >= SPLIT_THRESHOLD else self.ram_size

    @property
    def high_size(self) -> int:
        """Bytes of RAM at 4 GiB and up."""
        return self.ram_size - self.low_top

    @property
    def acpi_base(self) -> int:
        """The reserved area at the top of low RAM where the ACPI tables go."""
        return self.low_top - ACPI_RESERVED

    @property
    def usable_low_top(self) -> int:
        """The end of the RAM a kernel may use below 4 GiB (the ACPI area excluded)."""
        return self.acpi_base if self.has_acpi_area else self.low_top

    @property
    def has_acpi_area(self) -> bool:
        return self.low_top > HIGH_MEMORY_BASE + ACPI_RESERVED

    def memory_map(self) -> list[MemoryRegion]:
        """The E820 map, sorted by address."""
        regions = [MemoryRegion(0, min(self.low_top, LOW_MEMORY_END), E820_RAM),
                   MemoryRegion(LOW_MEMORY_END, EBDA_SIZE, E820_RESERVED),
                   MemoryRegion(BIOS_AREA_BASE, BIOS_AREA_SIZE, E820_RESERVED)]
        if self.has_acpi_area:
            regions.append(MemoryRegion(HIGH_MEMORY_BASE, self.acpi_base - HIGH_MEMORY_BASE, E820_RAM))
            regions.append(MemoryRegion(self.acpi_base, ACPI_RESERVED, E820_RESERVED))
        regions.append(MemoryRegion(BIOS_ROM_BASE, BIOS_ROM_SIZE, E820_RESERVED))
        if self.high_size:
            regions.append(MemoryRegion(FOUR_GIB, self.high_size, E820_RAM))
        return regions

    def is_usable(self, base: int, length: int) -> bool:
        """Whether [base, base + length) lies inside one RAM region of the map."""
        return any(r.type == E820_RAM and r.base <= base and base + length <= r.end
                   for r in self.memory_map())


def pc_memory_map(ram_size: int) -> list[MemoryRegion]:
    """The PC's E820 memory map for ``ram_size`` bytes of RAM: (base, length, type) tuples."""
    return PcMemoryLayout(ram_size).memory_map()


def build_e820_table(regions) -> bytes:
    """The regions as packed ``E820Entry`` records (boot_params, fw_cfg's etc/e820)."""
    return b"".join(E820Entry.build(dict(addr=r.base, size=r.length, type=r.type)) for r in regions)
