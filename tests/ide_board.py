"""The pc machine's PCI chipset with its PIIX3 IDE function on fresh address spaces, RAM
and disk images, driven through the ports as a guest drives it (a helper module for the
IDE tests, not a test file)."""

from __future__ import annotations

import struct

from devicemodel.address_space import AddressSpace
from devicemodel.block.drive import open_drive, parse_drive
from devicemodel.clock import VirtualClock
from devicemodel.guest_memory import GuestMemory
from devicemodel.ide.disk import IdeHd
from devicemodel.pci import regs
from devicemodel.pci.pc_chipset import PcChipset
from irq_line import IrqLines

MiB = 1 << 20
SECTOR = 512
RAM_SIZE = 4 * MiB
IDE_DEVFN = (1 << 3) | 1
PRIMARY = (0x1F0, 0x3F6, 14)
SECONDARY = (0x170, 0x376, 15)

# status and error bits
ERR, DRQ, DSC, DRDY, BSY = 0x01, 0x08, 0x10, 0x40, 0x80
ABRT, IDNF = 0x04, 0x10
NIEN, SRST, HOB = 0x02, 0x04, 0x80
BM_START, BM_TO_MEMORY = 0x01, 0x08
BM_ACTIVE, BM_ERROR, BM_INTR = 0x01, 0x02, 0x04
EOT = 0x80000000


def sector_pattern(lba: int) -> bytes:
    data = bytearray((lba * 31 + i * 7) & 0xFF for i in range(SECTOR))
    data[:8] = b"SECT" + struct.pack("<I", lba & 0xFFFFFFFF)
    return bytes(data)


def make_image(path, sectors: int, pattern: bool = True) -> bytes:
    """A raw image whose sector N is ``sector_pattern(N)`` (or zeros)."""
    data = b"".join(sector_pattern(n) for n in range(sectors)) if pattern else bytes(sectors * SECTOR)
    path.write_bytes(data)
    return data


class Board:
    """``disks``: position (0 primary master .. 3 secondary slave) -> image path,
    or (path, extra -drive options)."""

    def __init__(self, disks: dict, firmware: bool = True):
        self.pio = AddressSpace("io", 0x10000)
        self.mmio = AddressSpace("memory")
        self.ram = bytearray(RAM_SIZE)
        self.memory = GuestMemory(self.ram)
        self.irqs = IrqLines(16)
        self.chipset = PcChipset(pio=self.pio, mmio=self.mmio, clock=VirtualClock(), set_isa_irq=self.irqs.set_irq,
                                 request_reset=lambda *a, **k: None, power_off=lambda: None,
                                 suspend=lambda: None, memory=self.memory)
        self.ide = self.chipset.ide
        self.drives = {}
        specs = []
        for position, image in sorted(disks.items()):
            path, options = image if isinstance(image, tuple) else (image, "")
            spec = parse_drive(f"file={path},if=none,format=raw,id=d{position}{options}", specs)
            specs.append(spec)
            drive = open_drive(spec)
            self.drives[position] = drive
            self.ide.attach(self.ide.channels[position // 2], position % 2, IdeHd(drive))
        if firmware:
            self.chipset.init_firmware(RAM_SIZE)
            self.config_write(regs.COMMAND, 2, self.config_read(regs.COMMAND, 2) | regs.COMMAND_MASTER)
        self.bmiba = self.config_read(0x20, 4) & ~3

    def close(self):
        for drive in self.drives.values():
            drive.close()

    # --- configuration space and ports ------------------------------------------------

    def config_read(self, offset, size):
        return self.chipset.bus.read_config(IDE_DEVFN, offset, size)

    def config_write(self, offset, size, value):
        self.chipset.bus.write_config(IDE_DEVFN, offset, size, value)

    def inb(self, port):
        return self.pio.read(port, 1)

    def outb(self, port, value):
        self.pio.write(port, 1, value)

    def irq_level(self, channel=PRIMARY):
        return self.irqs.levels[channel[2]]

    def irq_rises(self, channel=PRIMARY):
        return sum(1 for line, level in self.irqs.changes if line == channel[2] and level)

    # --- ATA ------------------------------------------------------------------------

    def status(self, channel=PRIMARY):
        return self.inb(channel[0] + 7)

    def altstatus(self, channel=PRIMARY):
        return self.inb(channel[1])

    def error(self, channel=PRIMARY):
        return self.inb(channel[0] + 1)

    def taskfile(self, channel=PRIMARY):
        return [self.inb(channel[0] + reg) for reg in (2, 3, 4, 5, 6)]

    def select(self, unit, channel=PRIMARY, lba=True):
        self.outb(channel[0] + 6, 0xA0 | (0x40 if lba else 0) | unit << 4)

    def command28(self, command, lba=0, count=0, feature=0, unit=0, channel=PRIMARY):
        base = channel[0]
        self.outb(base + 6, 0xE0 | unit << 4 | (lba >> 24) & 0x0F)
        for reg, value in ((1, feature), (2, count), (3, lba), (4, lba >> 8), (5, lba >> 16)):
            self.outb(base + reg, value & 0xFF)
        self.outb(base + 7, command)

    def command48(self, command, lba=0, count=0, unit=0, channel=PRIMARY):
        base = channel[0]
        self.outb(base + 6, 0xE0 | unit << 4)
        for reg, value in ((2, count >> 8), (3, lba >> 24), (4, lba >> 32), (5, lba >> 40),
                           (2, count), (3, lba), (4, lba >> 8), (5, lba >> 16)):
            self.outb(base + reg, value & 0xFF)
        self.outb(base + 7, command)

    def read_data(self, length, channel=PRIMARY, size=2):
        return b"".join(self.pio.read(channel[0], size).to_bytes(size, "little") for _ in range(length // size))

    def write_data(self, data, channel=PRIMARY, size=2):
        for i in range(0, len(data), size):
            self.pio.write(channel[0], size, int.from_bytes(data[i:i + size], "little"))

    def identify(self, unit=0, channel=PRIMARY):
        self.select(unit, channel)
        self.outb(channel[0] + 7, 0xEC)
        return list(struct.unpack("<256H", self.read_data(SECTOR, channel)))

    # --- bus-master DMA ---------------------------------------------------------------

    def bm_port(self, offset, channel=PRIMARY):
        return self.bmiba + (8 if channel is SECONDARY else 0) + offset

    def prd_table(self, entries, at=0x1000, channel=PRIMARY):
        """Write PRD ``entries`` [(base, byte count, eot)] at ``at``; point the engine there."""
        for i, (base, count, eot) in enumerate(entries):
            struct.pack_into("<II", self.ram, at + 8 * i, base, (count & 0xFFFF) | (EOT if eot else 0))
        self.pio.write(self.bm_port(4, channel), 4, at)

    def bm_start(self, to_memory=True, channel=PRIMARY):
        """Stop the engine, set the direction, start it (as Linux's ata_bmdma_setup/start)."""
        direction = BM_TO_MEMORY if to_memory else 0
        self.outb(self.bm_port(0, channel), direction)
        self.outb(self.bm_port(0, channel), direction | BM_START)

    def bm_stop(self, channel=PRIMARY):
        self.outb(self.bm_port(0, channel), 0)

    def bm_status(self, channel=PRIMARY):
        return self.inb(self.bm_port(2, channel))
