"""One device position of an IDE channel (master or slave; QEMU's IDEState): its copy of
the task file, its status and error, the PIO data buffer, and the disk there, if any.

Both positions see every task-file write (they share the cable); each keeps the values
written before, the "high order bytes" that the 48-bit commands read (ATA-6 6.20).
The address of a command is LBA28, LBA48 or CHS as the device register's LBA bit and
the command say; the sector count 0 means 256 (65536 for a 48-bit command).
"""

from __future__ import annotations

from typing import Optional

from devicemodel.ide import ata
from devicemodel.ide.disk import IdeHd

TASKFILE = ("feature", "nsector", "sector", "lcyl", "hcyl")   # registers 1-5, with a high-order copy


class Unit:
    def __init__(self):
        self.disk: Optional[IdeHd] = None
        self.reset()

    def reset(self) -> None:
        """Power-on, hardware or software reset (QEMU's ide_reset): registers cleared, the
        signature in place, no transfer."""
        self.mult_sectors = ata.MAX_MULT_SECTORS
        for name in TASKFILE:
            setattr(self, name, 0)
            setattr(self, "hob_" + name, 0)
        self.error = 0
        self.select = ata.DEV_OBSOLETE
        self.status = ata.DRDY | ata.DSC
        self.lba48 = False
        self.req_sectors = 0            # sectors per DRQ block of the PIO command
        self.dma_kind: Optional[str] = None
        self.set_signature()
        self.halt_transfer()
        if self.disk is not None:
            self.disk.reset()

    def set_signature(self) -> None:
        """What a disk leaves in the task file after a reset or diagnostic (ATA-6 9.12);
        an absent device reads as 0xff in the cylinder registers, as in QEMU."""
        self.select &= ~ata.DEV_HEAD
        self.nsector = self.sector = 1
        self.lcyl = self.hcyl = 0 if self.disk is not None else 0xFF

    def write_taskfile(self, reg: int, value: int) -> None:
        if reg == ata.REG_DEVICE:
            self.select = value | ata.DEV_OBSOLETE
            return
        name = TASKFILE[reg - 1]
        setattr(self, "hob_" + name, getattr(self, name) & 0xFF)
        setattr(self, name, value)

    def read_taskfile(self, reg: int, hob: bool) -> int:
        name = TASKFILE[reg - 1]
        return getattr(self, "hob_" + name) if hob else getattr(self, name) & 0xFF

    def take_count(self, lba48: bool) -> None:
        """The command's sector count in ``nsector`` (QEMU's ide_cmd_lba48_transform)."""
        self.lba48 = lba48
        if lba48:
            self.nsector = (self.hob_nsector << 8 | self.nsector) or 0x10000
        else:
            self.nsector = self.nsector or 0x100

    # --- the command's address ---------------------------------------------------------

    def sector_number(self) -> int:
        """The address in the task file; negative for a CHS address that does not exist
        (sector 0, or no CHS translation because INITIALIZE DEVICE PARAMETERS set 0
        sectors per track)."""
        if self.select & ata.DEV_LBA:
            low = self.hcyl << 16 | self.lcyl << 8 | self.sector
            if self.lba48:
                return self.hob_hcyl << 40 | self.hob_lcyl << 32 | self.hob_sector << 24 | low
            return (self.select & ata.DEV_HEAD) << 24 | low
        heads, per_track = self.disk.chs_translation
        if not per_track:
            return -1
        cylinder = self.hcyl << 8 | self.lcyl
        return (cylinder * heads + (self.select & ata.DEV_HEAD)) * per_track + self.sector - 1

    def set_sector_number(self, number: int) -> None:
        if self.select & ata.DEV_LBA:
            self.sector, self.lcyl, self.hcyl = number & 0xFF, number >> 8 & 0xFF, number >> 16 & 0xFF
            if self.lba48:
                self.hob_sector, self.hob_lcyl, self.hob_hcyl = (number >> 24 & 0xFF, number >> 32 & 0xFF,
                                                                 number >> 40 & 0xFF)
            else:
                self.select = self.select & ~ata.DEV_HEAD | number >> 24 & ata.DEV_HEAD
            return
        heads, per_track = self.disk.chs_translation
        cylinder, rest = divmod(number, heads * per_track)
        self.hcyl, self.lcyl = cylinder >> 8 & 0xFF, cylinder & 0xFF
        self.select = self.select & ~ata.DEV_HEAD | (rest // per_track) & ata.DEV_HEAD
        self.sector = rest % per_track + 1

    # --- the PIO data phase ------------------------------------------------------------

    def start_transfer(self, data, end: str, to_host: bool) -> None:
        """Offer ``data`` (to_host) or wait for ``len(data)`` bytes from the host; ``end``
        names what runs when the last byte has moved (``channel.TRANSFER_ENDS``)."""
        self.data, self.pos, self.end, self.to_host = data, 0, end, to_host
        if not self.status & ata.ERR:
            self.status |= ata.DRQ

    def halt_transfer(self) -> None:
        self.data, self.pos, self.end, self.to_host = bytearray(), 0, None, True
        self.status &= ~ata.DRQ

    def abort(self, error: int = ata.ABRT) -> None:
        """The command failed (QEMU's ide_abort_command)."""
        self.halt_transfer()
        self.status = ata.DRDY | ata.ERR
        self.error = error

    def save_state(self) -> dict:
        state = {name: getattr(self, name) for name in TASKFILE}
        state.update({"hob_" + name: getattr(self, "hob_" + name) for name in TASKFILE})
        state.update(error=self.error, select=self.select, status=self.status, lba48=self.lba48,
                     mult_sectors=self.mult_sectors, req_sectors=self.req_sectors, dma_kind=self.dma_kind,
                     data=bytes(self.data), pos=self.pos, end=self.end, to_host=self.to_host,
                     disk=self.disk.save_state() if self.disk is not None else None)
        return state

    def load_state(self, state: dict) -> None:
        for name, value in state.items():
            if name != "disk":
                setattr(self, name, value)
        self.data = bytearray(state["data"])
        if self.disk is not None:
            self.disk.load_state(state["disk"])
