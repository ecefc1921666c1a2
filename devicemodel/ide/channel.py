"""One IDE channel (QEMU's IDEBus ``ide.0``/``ide.1``): two device positions on one cable,
their command block (8 ports: data, error/features, sector count, LBA low/mid/high,
device, status/command) and control block (1 port: alternate status / device
control), the interrupt line and the bus-master DMA engine.

Register access, as QEMU's ide_ioport_read/write, ide_status_read, ide_ctrl_write:

* Writes to the task file go to both positions and are ignored while the selected one
  is busy (BSY or DRQ); the device register's DEV bit selects the position. Any write
  clears the device control register's HOB bit, which makes reads return the
  registers' previous ("high order") values.
* Reading the status register lowers the interrupt; the alternate status does not.
* With no disk on the channel every register reads 0; with the slave selected and
  absent, the status and error registers read 0 (so a driver sees no device there).
* The data register moves 16 or 32 bits at a time while DRQ is set and in the
  command's direction; otherwise reads give 0 and writes are ignored. Byte reads of it
  give 0xff. A 16-bit access elsewhere reaches two byte registers, a 32-bit one none.
* Writing the command register lowers the interrupt and runs the command, unless the
  selected position is busy or an absent slave.

Interrupts: INTRQ rises when a command (or a DRQ block) needs the host, unless the
device control register's nIEN is set, and also sets the bus-master interrupt bit.

Software reset (SRST): while the bit is set both positions are busy and any transfer
stops; when it clears they reset (registers, signature, 16-sector READ/WRITE MULTIPLE
blocks), run their diagnostic and report it (QEMU resets at once when SRST is set;
ATA-6 9.2 holds BSY until it is cleared), and device 0 is selected.
"""

from __future__ import annotations

from devicemodel.address_space import Region
from devicemodel.ide import ata, commands
from devicemodel.ide.bmdma import BusMasterDma
from devicemodel.ide.unit import Unit

COMMAND_BLOCK_SIZE = 8
CONTROL_BLOCK_SIZE = 1


class Channel:
    def __init__(self, name: str, command_base: int, control_base: int, irq, bm: BusMasterDma, owner=None):
        self.name = name
        self.irq_out = irq
        self.bm = bm
        bm.channel = self
        self.units = [Unit(), Unit()]
        self.command_region = Region(command_base, COMMAND_BLOCK_SIZE, "ide", read=self._read_command_block,
                                     write=self._write_command_block, owner=owner)
        self.control_region = Region(control_base, CONTROL_BLOCK_SIZE, "ide", read=self._read_control_block,
                                     write=self._write_control_block, owner=owner)
        self.irq_level = 0
        self.reset()

    def reset(self) -> None:
        """A hardware reset of the channel and its DMA engine (QEMU's ide_bus_reset)."""
        self.selected = 0
        self.control = 0
        self.dma_unit = None
        for unit in self.units:
            unit.reset()
        self.bm.reset()
        self._set_irq(0)

    def attach(self, unit: int, disk) -> None:
        self.units[unit].disk = disk
        self.units[unit].set_signature()

    @property
    def current(self) -> Unit:
        return self.units[self.selected]

    @property
    def empty(self) -> bool:
        return all(unit.disk is None for unit in self.units)

    @property
    def absent_slave(self) -> bool:
        return self.selected == 1 and self.units[1].disk is None

    # --- interrupts ----------------------------------------------------------------

    def raise_irq(self) -> None:
        if not self.control & ata.CTL_NIEN:
            self.bm.interrupt()
            self._set_irq(1)

    def lower_irq(self) -> None:
        self._set_irq(0)

    def _set_irq(self, level: int) -> None:
        if level != self.irq_level:
            self.irq_level = level
            self.irq_out(level)

    # --- the command block -----------------------------------------------------------

    def _read_command_block(self, offset: int, size: int) -> int:
        if offset == ata.REG_DATA and size > 1:
            return self.read_data(size)
        if size == 1:
            return self.read_register(offset)
        if size == 2:
            return self.read_register(offset) | self.read_register(offset + 1) << 8
        return 0xFFFFFFFF

    def _write_command_block(self, offset: int, size: int, value: int) -> None:
        if offset == ata.REG_DATA and size > 1:
            self.write_data(size, value)
        elif size == 1:
            self.write_register(offset, value)
        elif size == 2:
            self.write_register(offset, value & 0xFF)
            self.write_register(offset + 1, value >> 8)

    def read_register(self, reg: int) -> int:
        u = self.current
        hob = bool(self.control & ata.CTL_HOB)
        if reg == ata.REG_DATA:
            return 0xFF
        if reg == ata.REG_STATUS_COMMAND:
            self.lower_irq()
            return 0 if self.empty or self.absent_slave else u.status
        if self.empty:
            return 0
        if reg == ata.REG_ERROR_FEATURE:
            return 0 if self.absent_slave else (u.hob_feature if hob else u.error)
        if reg == ata.REG_DEVICE:
            return u.select
        return u.read_taskfile(reg, hob)

    def write_register(self, reg: int, value: int) -> None:
        if reg != ata.REG_STATUS_COMMAND and self.current.status & (ata.BSY | ata.DRQ):
            return
        if reg == ata.REG_DATA:
            return
        self.control &= ~ata.CTL_HOB
        if reg == ata.REG_STATUS_COMMAND:
            self.lower_irq()
            self.execute(value)
            return
        for unit in self.units:
            unit.write_taskfile(reg, value)
        if reg == ata.REG_DEVICE:
            self.selected = 1 if value & ata.DEV_SELECT else 0

    # --- the data register -----------------------------------------------------------

    def read_data(self, size: int) -> int:
        u = self.current
        if not u.status & ata.DRQ or not u.to_host or u.pos + size > len(u.data):
            return 0
        value = int.from_bytes(u.data[u.pos:u.pos + size], "little")
        self._advance(u, size)
        return value

    def write_data(self, size: int, value: int) -> None:
        u = self.current
        if not u.status & ata.DRQ or u.to_host or u.pos + size > len(u.data):
            return
        u.data[u.pos:u.pos + size] = value.to_bytes(size, "little")
        self._advance(u, size)

    def _advance(self, u: Unit, size: int) -> None:
        u.pos += size
        if u.pos >= len(u.data):
            u.status &= ~ata.DRQ
            commands.TRANSFER_ENDS[u.end](self, u)

    # --- the control block -----------------------------------------------------------

    def _read_control_block(self, offset: int, size: int) -> int:
        return 0 if self.empty or self.absent_slave else self.current.status

    def _write_control_block(self, offset: int, size: int, value: int) -> None:
        was_reset = self.control & ata.CTL_SRST
        self.control = value
        if value & ata.CTL_SRST and not was_reset:
            for unit in self.units:
                unit.halt_transfer()
                unit.dma_kind = None
                unit.status |= ata.BSY
            self.dma_unit = None
        elif was_reset and not value & ata.CTL_SRST:
            self.selected = 0
            for unit in self.units:
                unit.reset()
                commands.cmd_execute_diagnostic(self, unit, ata.CMD_EDD)

    # --- commands --------------------------------------------------------------------

    def execute(self, command: int) -> None:
        u = self.current
        if self.absent_slave or u.status & (ata.BSY | ata.DRQ):
            return
        handler, set_dsc = commands.COMMANDS.get(command, (None, False))
        if u.disk is None and command != ata.CMD_EDD:
            handler = None
        if handler is None:
            u.abort()
            self.raise_irq()
            return
        u.status = ata.DRDY | ata.BSY
        u.error = 0
        if handler(self, u, command):
            u.status &= ~ata.BSY
            if set_dsc and not u.error:
                u.status |= ata.DSC
            self.raise_irq()

    # --- DMA -------------------------------------------------------------------------

    def start_dma(self, u: Unit, kind: str) -> None:
        """The command waits for the bus-master engine; it runs now if the engine does."""
        u.status = ata.DRDY | ata.DSC | ata.DRQ
        u.dma_kind = kind
        self.dma_unit = u
        if self.bm.active:
            self._run_dma()

    def dma_ready(self) -> None:
        """The engine was started."""
        if self.dma_unit is not None and self.dma_unit.dma_kind is not None:
            self._run_dma()

    def _run_dma(self) -> None:
        u, self.dma_unit = self.dma_unit, None
        commands.dma_transfer(self, u)

    # --- state -------------------------------------------------------------------------

    def save_state(self) -> dict:
        return {"selected": self.selected, "control": self.control, "irq_level": self.irq_level,
                "dma_unit": None if self.dma_unit is None else self.units.index(self.dma_unit),
                "units": [unit.save_state() for unit in self.units], "bm": self.bm.save_state()}

    def load_state(self, state: dict) -> None:
        self.selected, self.control, self.irq_level = state["selected"], state["control"], state["irq_level"]
        self.dma_unit = None if state["dma_unit"] is None else self.units[state["dma_unit"]]
        for unit, unit_state in zip(self.units, state["units"]):
            unit.load_state(unit_state)
        self.bm.load_state(state["bm"])
