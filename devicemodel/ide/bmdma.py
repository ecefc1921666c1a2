"""The bus-master IDE DMA engine of one channel (PIIX3/PIIX4 datasheets, "Bus Master IDE
Registers"; SFF-8038i), as QEMU's hw/ide/pci.c and piix.c model it.

Registers, at offsets 0-7 of the channel's half of BAR 4 (primary at 0, secondary at 8):

* 0, command (byte): bit 0 start/stop bus master, bit 3 direction (1: the engine writes
  memory, for a device-to-host transfer). Setting the start bit points the engine at the
  start of the PRD table and makes it active; clearing it stops the engine (the active
  bit clears) and leaves the ATA command to the driver's reset. As in QEMU the
  direction is kept but the ATA command decides which way data moves.
* 2, status (byte): bit 0 active (read-only), bit 1 error and bit 2 interrupt (write 1
  to clear), bits 5 and 6 "drive 0/1 DMA capable" (plain storage for the firmware).
  The interrupt bit sets whenever the channel raises its interrupt.
* 4-7, PRD table pointer (any size): bits 31:2 (the table is dword-aligned).
* 1 and 3 read 0xff; other sizes at 0-3 read all-ones and are ignored when written.

The PRD table is a list of 8-byte entries {le32 base; le16 byte count; le16 flags}:
bit 0 of the base is ignored (regions start on an even address), a byte count's bit 0
is ignored and 0 means 64 KiB, and flag bit 15 (EOT) marks the last entry. As in QEMU,
the engine reads at most one page of entries (512) from the table's start: a table
without EOT ends there. A transfer reads the table on to its end, so a second ATA
command without a new start finds no regions left.

How a transfer ends (SFF-8038i's table of status results):
* the PRDs cover the transfer exactly: active clears, the interrupt bit sets;
* they are longer than the transfer: the interrupt bit sets and active stays set;
* they are shorter: nothing moves, active clears, no interrupt (the driver finds
  "interrupt 0, active 0" and resets the device);
* the table or a region is not guest RAM (a master abort on real hardware): nothing
  moves, the error and interrupt bits set, active clears, and the ATA command fails.
Every access goes through ``GuestMemory``, which refuses anything that is not RAM.
"""

from __future__ import annotations

from devicemodel.guest_memory import GuestMemory

CMD_START = 0x01
CMD_WRITE_MEMORY = 0x08
CMD_MASK = CMD_START | CMD_WRITE_MEMORY
STATUS_ACTIVE = 0x01
STATUS_ERROR = 0x02
STATUS_INTERRUPT = 0x04
STATUS_DMA_CAPABLE = 0x60
PRD_SIZE = 8
PRD_EOT = 0x80000000
PRD_TABLE_LIMIT = 4096        # QEMU's fail-safe: entries beyond one page are never read
REGION_MAX = 0x10000
REGISTERS = 8


class BusMasterDma:
    def __init__(self, memory: GuestMemory):
        self.memory = memory
        self.channel = None           # the IDE channel it serves (set by the channel)
        self.reset()

    def reset(self) -> None:
        self.command = 0
        self.status = 0
        self.table = 0
        self.cursor = 0               # offset in the table of the next entry to read
        self.table_done = False       # EOT read (or the page's end reached)

    @property
    def active(self) -> bool:
        return bool(self.status & STATUS_ACTIVE)

    # --- registers -----------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if offset >= 4:
            return (self.table >> (8 * (offset - 4))) & ((1 << (8 * size)) - 1)
        if size != 1:
            return (1 << (8 * size)) - 1
        return {0: self.command, 2: self.status}.get(offset, 0xFF)

    def write(self, offset: int, size: int, value: int) -> None:
        if offset >= 4:
            shift, mask = 8 * (offset - 4), (1 << (8 * size)) - 1
            self.table = (self.table & ~(mask << shift) | (value & mask) << shift) & 0xFFFFFFFC
        elif size == 1 and offset == 0:
            self._write_command(value)
        elif size == 1 and offset == 2:
            self.status = (value & STATUS_DMA_CAPABLE) | (self.status & STATUS_ACTIVE) \
                | (self.status & ~value & (STATUS_ERROR | STATUS_INTERRUPT))

    def _write_command(self, value: int) -> None:
        starting = value & CMD_START and not self.command & CMD_START
        stopping = self.command & CMD_START and not value & CMD_START
        self.command = value & CMD_MASK
        if stopping:
            self.status &= ~STATUS_ACTIVE
        elif starting:
            self.cursor, self.table_done = 0, False
            if not self.active:
                self.status |= STATUS_ACTIVE
                if self.channel is not None:
                    self.channel.dma_ready()

    # --- the transfer --------------------------------------------------------------

    def regions(self, limit: int) -> tuple[list[tuple[int, int]], int]:
        """Walk the PRD table: the (address, length) pieces of the first ``limit`` bytes
        the PRDs describe, and the total the PRDs describe. DmaError if an entry or a
        piece is not RAM."""
        pieces, taken, described = [], 0, 0
        while not self.table_done:
            entry = self.memory.read_int((self.table + self.cursor) & 0xFFFFFFFF, PRD_SIZE)
            self.cursor += PRD_SIZE
            self.table_done = bool(entry >> 32 & PRD_EOT) or self.cursor >= PRD_TABLE_LIMIT
            base, count = (entry & 0xFFFFFFFF) & ~1, entry >> 32
            length = (count & 0xFFFE) or REGION_MAX
            piece = min(length, limit - taken)
            if piece:
                self.memory.offset(base, piece)
                pieces.append((base, piece))
                taken += piece
            described += length
        return pieces, described

    def finish(self, more: bool) -> None:
        """The ATA command's transfer is over; ``more``: the PRDs went further (stay active)."""
        self.status = self.status | STATUS_ACTIVE if more else self.status & ~STATUS_ACTIVE

    def fail(self) -> None:
        """The engine hit something that is not RAM (a master abort)."""
        self.status = (self.status | STATUS_ERROR) & ~STATUS_ACTIVE

    def interrupt(self) -> None:
        self.status |= STATUS_INTERRUPT

    def save_state(self) -> dict:
        return {"command": self.command, "status": self.status, "table": self.table,
                "cursor": self.cursor, "table_done": self.table_done}

    def load_state(self, state: dict) -> None:
        self.command, self.status, self.table = state["command"], state["status"], state["table"]
        self.cursor, self.table_done = state["cursor"], state["table_done"]

