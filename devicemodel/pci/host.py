"""The PCI host's configuration mechanism #1 (PCI Local Bus Specification 3.0, 3.2.2.3.2),
as QEMU's pci_host.c implements it for the i440FX.

CONFIG_ADDRESS (0xcf8, 32-bit): bit 31 enables configuration cycles, bits 23:16 select
the bus, 15:11 the device, 10:8 the function and 7:2 the dword register. Only a 32-bit
write sets it (QEMU ignores narrower writes, which on a PC go to other registers: the
byte at 0xcf9 is the PIIX3's reset control register, mapped over this one); reads
return it. CONFIG_DATA (0xcfc-0xcff) reads or writes 1, 2 or 4 bytes of the selected
register at the byte given by the port's low bits. With the enable bit clear, or for a
bus other than 0 (there are no bridges), data reads are all-ones and writes are lost.
"""

from __future__ import annotations

from devicemodel.address_space import Region
from devicemodel.pci.bus import PciBus

CONFIG_ADDRESS = 0xCF8
CONFIG_DATA = 0xCFC
ENABLE = 1 << 31


class PciHost:
    def __init__(self, bus: PciBus, name: str = "pci-conf"):
        self.bus = bus
        self.config_address = 0
        self.regions = (
            Region(base=CONFIG_ADDRESS, size=4, name=f"{name}-idx", read=self._read_address,
                   write=self._write_address, owner=self, sizes=(1, 2, 4)),
            Region(base=CONFIG_DATA, size=4, name=f"{name}-data", read=self._read_data,
                   write=self._write_data, owner=self, sizes=(1, 2, 4)),
        )

    def _read_address(self, offset: int, size: int) -> int:
        return self.config_address >> (8 * offset)

    def _write_address(self, offset: int, size: int, value: int) -> None:
        if offset == 0 and size == 4:
            self.config_address = value

    def _target(self, offset: int):
        """(devfn, register offset) that the data port at ``offset`` reaches, or None."""
        address = self.config_address
        if not address & ENABLE or (address >> 16) & 0xFF:
            return None
        return (address >> 8) & 0xFF, (address & 0xFC) | (offset & 3)

    def _read_data(self, offset: int, size: int) -> int:
        target = self._target(offset)
        if target is None:
            return (1 << (8 * size)) - 1
        return self.bus.read_config(target[0], target[1], size)

    def _write_data(self, offset: int, size: int, value: int) -> None:
        target = self._target(offset)
        if target is not None:
            self.bus.write_config(target[0], target[1], size, value)

    def reset(self) -> None:
        self.config_address = 0

    def save_state(self) -> dict:
        return {"config_address": self.config_address}

    def load_state(self, state: dict) -> None:
        self.config_address = state["config_address"]
