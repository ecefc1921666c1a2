"""Placing the PC firmware's tables in guest RAM, where a BIOS would leave them.

The RSDP and the MP floating pointer and configuration table go in the system BIOS area
(0xf0000, E820-reserved), where kernels search for them; the ACPI tables go in the
reserved top 128 KiB of low RAM; the BIOS data area at 0x400 says where the EBDA is and
how much conventional memory there is. Without ``acpi`` (QEMU's acpi=off, and the
microvm machine) there are no ACPI tables and no RSDP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from devicemodel.errors import ConfigError
from devicemodel.firmware_tables.acpi import AcpiTables, build_acpi_tables
from devicemodel.firmware_tables.bda import write_bda
from devicemodel.firmware_tables.e820 import ACPI_RESERVED, HIGH_MEMORY_BASE, PcMemoryLayout
from devicemodel.firmware_tables.mptable import build_floating_pointer, build_mp_config_table

RSDP_ADDR = 0xF0000
MP_FLOATING_POINTER_ADDR = 0xF0040
MP_CONFIG_TABLE_ADDR = 0xF0050


@dataclass(frozen=True)
class PcFirmwareTables:
    """Where the tables went: ``rsdp_addr`` is what the Linux and PVH loaders pass on."""

    rsdp_addr: Optional[int]
    mp_floating_pointer_addr: int
    mp_config_table_addr: int
    acpi: Optional[AcpiTables]


def install_pc_firmware_tables(ram, cpus: int = 1, hpet: bool = False, com_ports=(0x3F8,),
                               pm_timer_32bit: bool = False, acpi: bool = True) -> PcFirmwareTables:
    """Write the BDA, the MP tables and the ACPI tables for ``cpus`` vCPUs into ``ram``."""
    with memoryview(ram) as mem:
        layout = PcMemoryLayout(len(mem))
        if not layout.has_acpi_area:
            raise ConfigError(f"guest RAM of {len(mem)} bytes is too small for the firmware tables; "
                              f"the PC needs more than {(HIGH_MEMORY_BASE + ACPI_RESERVED) // 1024} KiB")
        tables = build_acpi_tables(layout.acpi_base, RSDP_ADDR, cpus, hpet=hpet, pm_timer_32bit=pm_timer_32bit,
                                   pci_window_start=layout.low_top) if acpi else None
        mp_config = build_mp_config_table(cpus)
        pointer = build_floating_pointer(MP_CONFIG_TABLE_ADDR)
        write_bda(mem, com_ports)
        if tables is not None:
            tables.write(mem)
        mem[MP_FLOATING_POINTER_ADDR:MP_FLOATING_POINTER_ADDR + len(pointer)] = pointer
        mem[MP_CONFIG_TABLE_ADDR:MP_CONFIG_TABLE_ADDR + len(mp_config)] = mp_config
    return PcFirmwareTables(RSDP_ADDR if acpi else None, MP_FLOATING_POINTER_ADDR, MP_CONFIG_TABLE_ADDR, tables)
