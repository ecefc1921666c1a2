"""An IDE hard disk (QEMU's ``ide-hd``): a drive at one unit of an IDE bus, with the
identity it reports and the settings that survive resets.

Identity, as QEMU's ide_init_drive: serial ``QM0000N`` (N counts the unit positions of
the PIIX IDE function, primary master 1 .. secondary slave 4) unless ``serial=`` says
otherwise, model "QEMU HARDDISK", firmware revision "2.5+" (QEMU's hardware version),
and the geometry QEMU guesses (devicemodel.block.geometry). Settings that a device keeps
across resets: the write cache (on for cache modes with a volatile cache; SET FEATURES
turns it off and on), the transfer mode SET FEATURES selected (UDMA 5 at first), and
the heads and sectors per track of CHS addresses that INITIALIZE DEVICE PARAMETERS set
-- unless SET FEATURES enabled reverting to power-on defaults, which the next reset does
(once, as in QEMU).

Unlike QEMU, which refuses read-only drives for ide-hd, a read-only drive is attached
and the write commands abort (ABRT), so that a guest can read a disk it must not change.
"""

from __future__ import annotations

from devicemodel.block.drive import Drive
from devicemodel.block.geometry import guess_geometry
from devicemodel.ide import ata
from devicemodel.ide.identify import identify_words

MODEL = "QEMU HARDDISK"
FIRMWARE = "2.5+"
SERIAL_LENGTH = 20
MODEL_LENGTH = 40
FIRMWARE_LENGTH = 8


class IdeHd:
    qdev_type = "ide-hd"
    regions = ()                 # its registers are the bus's

    def __init__(self, drive: Drive, serial: str = "", model: str = MODEL, firmware: str = FIRMWARE):
        self.drive = drive
        self.serial = serial[:SERIAL_LENGTH]
        self.model = model[:MODEL_LENGTH]
        self.firmware = firmware[:FIRMWARE_LENGTH]
        self.sectors = drive.size // ata.SECTOR_SIZE
        sector0 = drive.read(0, ata.SECTOR_SIZE) if self.sectors else b""
        self.geometry = guess_geometry(sector0, self.sectors)
        self.write_cache = drive.cache.writeback
        self.transfer_mode = (ata.XFER_UDMA, 5)
        self.chs_translation = self.geometry[1:]     # (heads, sectors per track) of CHS addresses
        self.reset_reverts = False
        self.bus_name = ""           # where it is plugged: "ide.0" ...
        self.unit = 0

    def attached(self, bus_name: str, unit: int, position: int) -> None:
        """Plugged into ``bus_name`` at ``unit``, the function's unit position ``position`` (0-3)."""
        self.bus_name, self.unit = bus_name, unit
        if not self.serial:
            self.serial = f"QM{position + 1:05d}"

    def reset(self) -> None:
        if self.reset_reverts:
            self.reset_reverts = False
            self.chs_translation = self.geometry[1:]

    @property
    def read_only(self) -> bool:
        return self.drive.read_only

    def identify(self, mult_sectors: int) -> list[int]:
        current = (self.geometry[0], *self.chs_translation)
        return identify_words(serial=self.serial, firmware=self.firmware, model=self.model,
                              sectors=self.sectors, geometry=self.geometry, current_geometry=current,
                              mult_sectors=mult_sectors,
                              write_cache=self.write_cache, transfer_mode=self.transfer_mode, trim=True)

    def in_range(self, sector: int, count: int) -> bool:
        return 0 <= sector <= self.sectors and count <= self.sectors - sector

    def read(self, sector: int, count: int) -> bytes:
        return self.drive.read(sector * ata.SECTOR_SIZE, count * ata.SECTOR_SIZE)

    def read_bytes(self, offset: int, length: int) -> bytes:
        return self.drive.read(offset, length)

    def write_bytes(self, offset: int, data) -> None:
        """A write the guest sees complete; with the write cache off it is durable first."""
        self.drive.write(offset, data)
        if not self.write_cache:
            self.drive.flush()

    def flush(self) -> None:
        self.drive.flush()

    def discard(self, sector: int, count: int) -> None:
        self.drive.discard(sector * ata.SECTOR_SIZE, count * ata.SECTOR_SIZE)

    def save_state(self) -> dict:
        return {"write_cache": self.write_cache, "transfer_mode": list(self.transfer_mode),
                "chs_translation": list(self.chs_translation), "reset_reverts": self.reset_reverts}

    def load_state(self, state: dict) -> None:
        self.write_cache = state["write_cache"]
        self.transfer_mode = tuple(state["transfer_mode"])
        self.chs_translation = tuple(state["chs_translation"])
        self.reset_reverts = state["reset_reverts"]
