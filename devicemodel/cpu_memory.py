"""The physical address space as one vCPU sees it: its own local APIC's page at the APIC
base while the APIC is in xAPIC mode, the machine's MMIO space everywhere else. (Every
processor has its APIC at the same address, and each reaches only its own: QEMU overlays
the APIC region on each CPU's address space.) Relocating the APIC base moves the page."""

from __future__ import annotations

from devicemodel.devices.apic import PAGE_SIZE, XAPIC


class CpuMemory:
    def __init__(self, mmio, lapic):
        self.mmio = mmio
        self.lapic = lapic

    def _apic_offset(self, addr: int):
        lapic = self.lapic
        if lapic.mode == XAPIC:
            offset = addr - lapic.base_address
            if 0 <= offset < PAGE_SIZE:
                return offset
        return None

    def read(self, addr: int, size: int) -> int:
        offset = self._apic_offset(addr)
        if offset is None:
            return self.mmio.read(addr, size)
        return self.lapic.mmio_read(offset, size)

    def write(self, addr: int, size: int, value: int) -> None:
        offset = self._apic_offset(addr)
        if offset is None:
            self.mmio.write(addr, size, value)
        else:
            self.lapic.mmio_write(offset, size, value)
