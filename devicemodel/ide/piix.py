"""The PIIX3 IDE controller (Intel 82371SB function 1), 00:01.1 of QEMU's pc machine,
after QEMU's hw/ide/piix.c and the PIIX3 datasheet.

Identity: 8086:7010, class 0x0101 (IDE) with programming interface 0x80 (bus master
capable, both channels in legacy "compatibility" mode), no interrupt pin; after reset
the command register is 0 and the status register has fast back-to-back and medium
DEVSEL timing, as QEMU's piix_ide_reset leaves them.

The channels stay at the legacy addresses whatever the configuration says (as in
QEMU): primary 0x1f0-0x1f7 and 0x3f6 on ISA IRQ 14, secondary 0x170-0x177 and 0x376 on
ISA IRQ 15. BAR 4 (BMIBA, 0x20) is a 16-byte I/O BAR holding the bus-master registers,
primary at 0, secondary at 8. The timing registers IDETIM (0x40-0x41 primary, 0x42-0x43
secondary; bit 15 is the channel's decode enable, which Linux's ata_piix requires) and
SIDETIM (0x44) are plain storage: timings mean nothing to an emulated disk. A firmware
sets the decode enables (SeaBIOS's piix_ide_setup; devicemodel.pci.firmware_init).
"""

from __future__ import annotations

from typing import Callable

from devicemodel.guest_memory import GuestMemory
from devicemodel.ide.bmdma import REGISTERS, BusMasterDma
from devicemodel.ide.channel import Channel
from devicemodel.pci import regs
from devicemodel.pci.device import PciDevice

DEVICE_ID = 0x7010
CLASS_STORAGE_IDE = 0x0101
PROG_IF_BUS_MASTER = 0x80
BMIBA_BAR = 4
BMIBA_SIZE = 16
IDETIM = (0x40, 0x42)
IDETIM_DECODE_ENABLE = 0x8000
UNITS_PER_BUS = 2
# command block, control block, ISA IRQ of the primary and secondary channel
LEGACY_CHANNELS = ((0x1F0, 0x3F6, 14), (0x170, 0x376, 15))


class PiixIde(PciDevice):
    qdev_type = "piix3-ide"

    def __init__(self, memory: GuestMemory, set_isa_irq: Callable[[int, int], None], name: str = "piix3-ide"):
        super().__init__(vendor_id=regs.VENDOR_INTEL, device_id=DEVICE_ID, class_code=CLASS_STORAGE_IDE,
                         prog_if=PROG_IF_BUS_MASTER, name=name)
        self.channels = []
        for index, (command_base, control_base, irq) in enumerate(LEGACY_CHANNELS):
            self.channels.append(Channel(f"ide.{index}", command_base, control_base,
                                         irq=lambda level, irq=irq: set_isa_irq(irq, level),
                                         bm=BusMasterDma(memory), owner=self))
        self.add_bar(BMIBA_BAR, BMIBA_SIZE, io=True, read=self._read_bmdma, write=self._write_bmdma)
        self._reset_config()

    @property
    def legacy_regions(self) -> list:
        """The channels' command and control blocks, for the port address space."""
        return [region for channel in self.channels for region in (channel.command_region, channel.control_region)]

    def _read_bmdma(self, offset: int, size: int) -> int:
        return self.channels[offset // REGISTERS].bm.read(offset % REGISTERS, size)

    def _write_bmdma(self, offset: int, size: int, value: int) -> None:
        self.channels[offset // REGISTERS].bm.write(offset % REGISTERS, size, value)

    def _reset_config(self) -> None:
        self.set(regs.COMMAND, 2, 0)
        self.set(regs.STATUS, 2, regs.STATUS_FAST_BACK | regs.STATUS_DEVSEL_MEDIUM)
        self.set(regs.BASE_ADDRESS_0 + 4 * BMIBA_BAR, 4, regs.BAR_SPACE_IO)
        self.update_mappings()

    def reset(self) -> None:
        for channel in self.channels:
            channel.reset()
        self._reset_config()

    # --- the IDE buses ------------------------------------------------------------------

    def ide_bus(self, name: str):
        """The channel called ``name`` ("ide.0", "ide.1"), or None."""
        return next((channel for channel in self.channels if channel.name == name), None)

    def free_unit(self, channel=None):
        """(channel, unit) of the first free position, on ``channel`` or anywhere; None if full."""
        for candidate in [channel] if channel is not None else self.channels:
            for unit in range(UNITS_PER_BUS):
                if candidate.units[unit].disk is None:
                    return candidate, unit
        return None

    def attach(self, channel: Channel, unit: int, disk) -> None:
        disk.attached(channel.name, unit, self.channels.index(channel) * UNITS_PER_BUS + unit)
        channel.attach(unit, disk)

    def disks(self) -> list:
        return [unit.disk for channel in self.channels for unit in channel.units if unit.disk is not None]

    def qtree_lines(self, indent: str) -> list[str]:
        """What ``info qtree`` shows under this function: its buses and their disks."""
        lines = []
        for channel in reversed(self.channels):          # QEMU lists the newest bus first
            lines += [f"{indent}bus: {channel.name}", f"{indent}  type IDE"]
            for unit in channel.units:
                disk = unit.disk
                if disk is not None:
                    lines += [f'{indent}  dev: {disk.qdev_type}, id ""',
                              f'{indent}    drive = "{disk.drive.id}"',
                              f'{indent}    serial = "{disk.serial}"',
                              f'{indent}    model = "{disk.model}"',
                              f'{indent}    unit = {disk.unit} (0x{disk.unit:x})']
        return lines

    def save_state(self) -> dict:
        return {**super().save_state(), "channels": [channel.save_state() for channel in self.channels]}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        for channel, channel_state in zip(self.channels, state["channels"]):
            channel.load_state(channel_state)
