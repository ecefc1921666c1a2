"""The 8259A programmable interrupt controller pair of the PC, after the Intel 8259A
datasheet and QEMU's hw/intc/i8259.c.

Two chips: the master at 0x20/0x21 delivers to the CPU, the slave at 0xa0/0xa1 drives
the master's IR2 (cascade). Each chip has an edge/level control register (ELCR, as the
PIIX/ICH chipsets add it) at 0x4d0 (master) and 0x4d1 (slave); QEMU's masks keep the
timer, keyboard, cascade, RTC and FPU lines edge-triggered.

Per chip, the guest's side:

* command port (even): ICW1 (bit 4 set) starts initialization; OCW2 (bits 4:3 = 00)
  ends interrupts and rotates priorities; OCW3 (bits 4:3 = 01) selects IRR/ISR for
  reads, poll mode and special mask mode. Reads return IRR or ISR (OCW3 RR/RIS).
* data port (odd): ICW2 (vector base), ICW3 (cascade, accepted and ignored), ICW4
  (auto-EOI, special fully nested mode) during initialization, else OCW1: the IMR.
* In poll mode the next read of either port acknowledges the highest request and
  returns ``0x80 | level`` (0 if none).

Requests: an edge-triggered line sets its IRR bit on a rising edge, and the bit stays
until the interrupt is acknowledged even if the line falls again (as in QEMU, so that a
device's short pulse is never lost); a level-triggered line (ELCR bit, or ICW1.LTIM for
all lines) holds its IRR bit only while the line is high.

The CPU's side, on ``PicPair``: ``set_irq(line, level)`` for ISA lines 0..15, the INT
output (``has_interrupt()`` and the ``int_output(level)`` callback), and
``acknowledge()``, the INTA cycle that returns the vector. When the request went away
between INT and INTA (a level-triggered line fell, or the guest masked it), the 8259A
answers with its level 7: a spurious IRQ 7 (vector base + 7) from the master, IRQ 15
from the slave, without setting ISR.
"""

from __future__ import annotations

from typing import Callable, Optional

from devicemodel.address_space import Region

ICW1_IC4 = 0x01      # ICW4 follows
ICW1_SNGL = 0x02     # single chip: no ICW3
ICW1_LTIM = 0x08     # level-triggered mode for every line
ICW1_INIT = 0x10
ICW4_AEOI = 0x02
ICW4_SFNM = 0x10

OCW3_SELECT = 0x08   # bits 4:3 = 01 tell OCW3 from OCW2
OCW3_RIS = 0x01
OCW3_RR = 0x02
OCW3_POLL = 0x04
OCW3_SMM = 0x20
OCW3_ESMM = 0x40

# OCW2 commands, by bits 7:5 (R, SL, EOI)
OCW2_ROTATE_AEOI_CLEAR = 0
OCW2_NONSPECIFIC_EOI = 1
OCW2_SPECIFIC_EOI = 3
OCW2_ROTATE_AEOI_SET = 4
OCW2_ROTATE_NONSPECIFIC_EOI = 5
OCW2_SET_PRIORITY = 6
OCW2_ROTATE_SPECIFIC_EOI = 7

CASCADE_IRQ = 2
SPURIOUS_IRQ = 7
MASTER_ELCR_MASK = 0xF8  # IRQ 0, 1, 2 always edge
SLAVE_ELCR_MASK = 0xDE   # IRQ 8 and 13 always edge

# Initialization steps: which ICW the data port expects next.
READY, ICW2, ICW3, ICW4 = 0, 1, 2, 3

_STATE_FIELDS = ("irr", "imr", "isr", "elcr", "last_level", "priority_add", "irq_base",
                 "read_isr", "poll", "special_mask", "init_step", "auto_eoi",
                 "rotate_on_auto_eoi", "special_fully_nested", "icw4_needed", "single",
                 "level_triggered_all")


def _no_output(level: int) -> None:
    pass


class I8259:
    """One 8259A. ``int_output(level)`` follows its INT pin."""

    def __init__(self, iobase: int, elcr_port: int, elcr_mask: int, master: bool,
                 int_output: Callable[[int], None] = _no_output, name: str = "pic"):
        self.iobase = iobase
        self.master = master
        self.elcr_mask = elcr_mask
        self.int_output = int_output
        self.name = name
        self.regions = (
            Region(base=iobase, size=2, name=name, read=self.read, write=self.write,
                   owner=self, sizes=(1, 2, 4), impl_size=1),
            Region(base=elcr_port, size=1, name=f"{name}-elcr", read=self._read_elcr,
                   write=self._write_elcr, owner=self, sizes=(1, 2, 4), impl_size=1),
        )
        self.elcr = 0
        self.irr = 0
        self._int_level = 0
        self._init_reset()

    def _init_reset(self) -> None:
        """What ICW1 and reset clear (QEMU's pic_reset_common); ELCR survives ICW1."""
        self.last_level = 0     # input line levels, for edge detection
        self.irr &= self.elcr   # level-triggered requests persist while their lines are high
        self.imr = 0
        self.isr = 0
        self.priority_add = 0   # the level with the highest priority (rotation)
        self.irq_base = 0
        self.read_isr = False
        self.poll = False
        self.special_mask = False
        self.init_step = READY
        self.auto_eoi = False
        self.rotate_on_auto_eoi = False
        self.special_fully_nested = False
        self.icw4_needed = False
        self.single = False
        self.level_triggered_all = False

    def reset(self) -> None:
        """System reset: everything, ELCR included."""
        self.elcr = 0
        self.irr = 0
        self._init_reset()
        self._update_output()

    # --- priority resolution -------------------------------------------------

    def _priority(self, mask: int) -> int:
        """The best priority (0 = highest) among the levels in ``mask``; 8 if none."""
        for priority in range(8):
            if mask & (1 << ((priority + self.priority_add) & 7)):
                return priority
        return 8

    def pending_level(self) -> int:
        """The level the chip would interrupt the CPU with now, or -1."""
        priority = self._priority(self.irr & ~self.imr)
        if priority == 8:
            return -1
        in_service = self.isr
        if self.special_mask:
            in_service &= ~self.imr  # masked levels in service do not block lower ones
        if self.special_fully_nested and self.master:
            in_service &= ~(1 << CASCADE_IRQ)  # a higher slave request may nest
        if priority < self._priority(in_service):
            return (priority + self.priority_add) & 7
        return -1

    def _update_output(self) -> None:
        level = 1 if self.pending_level() >= 0 else 0
        if level != self._int_level:
            self._int_level = level
            self.int_output(level)

    @property
    def output(self) -> int:
        """The INT pin's level."""
        return self._int_level

    # --- request inputs --------------------------------------------------------

    def _level_triggered(self, mask: int) -> bool:
        return bool(self.elcr & mask) or self.level_triggered_all

    def set_irq(self, line: int, level: int) -> None:
        """Drive input IR``line`` (0..7) to ``level``."""
        mask = 1 << line
        if level:
            if self._level_triggered(mask) or not self.last_level & mask:
                self.irr |= mask
            self.last_level |= mask
        else:
            if self._level_triggered(mask):
                self.irr &= ~mask
            self.last_level &= ~mask
        self._update_output()

    def intack(self, level: int) -> None:
        """The INTA pulses for ``level``: into service (or auto-EOI), edge request consumed."""
        mask = 1 << level
        if self.auto_eoi:
            if self.rotate_on_auto_eoi:
                self.priority_add = (level + 1) & 7
        else:
            self.isr |= mask
        if not self._level_triggered(mask):
            self.irr &= ~mask
        self._update_output()

    # --- the guest's side --------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if self.poll:
            self.poll = False
            level = self.pending_level()
            if level < 0:
                return 0
            self.intack(level)
            return 0x80 | level
        if offset == 0:
            return self.isr if self.read_isr else self.irr
        return self.imr

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0:
            if value & ICW1_INIT:
                self._write_icw1(value)
            elif value & OCW3_SELECT:
                self._write_ocw3(value)
            else:
                self._write_ocw2(value)
        elif self.init_step == READY:
            self.imr = value
            self._update_output()
        elif self.init_step == ICW2:
            self.irq_base = value & 0xF8
            if not self.single:
                self.init_step = ICW3
            else:
                self.init_step = ICW4 if self.icw4_needed else READY
        elif self.init_step == ICW3:
            self.init_step = ICW4 if self.icw4_needed else READY
        else:
            self.special_fully_nested = bool(value & ICW4_SFNM)
            self.auto_eoi = bool(value & ICW4_AEOI)
            self.init_step = READY

    def _write_icw1(self, value: int) -> None:
        self._init_reset()
        self.init_step = ICW2
        self.icw4_needed = bool(value & ICW1_IC4)
        self.single = bool(value & ICW1_SNGL)
        self.level_triggered_all = bool(value & ICW1_LTIM)
        self._update_output()

    def _write_ocw3(self, value: int) -> None:
        if value & OCW3_POLL:
            self.poll = True
        if value & OCW3_RR:
            self.read_isr = bool(value & OCW3_RIS)
        if value & OCW3_ESMM:
            self.special_mask = bool(value & OCW3_SMM)
            self._update_output()

    def _write_ocw2(self, value: int) -> None:
        command = value >> 5
        if command in (OCW2_ROTATE_AEOI_CLEAR, OCW2_ROTATE_AEOI_SET):
            self.rotate_on_auto_eoi = command == OCW2_ROTATE_AEOI_SET
        elif command in (OCW2_NONSPECIFIC_EOI, OCW2_ROTATE_NONSPECIFIC_EOI):
            priority = self._priority(self.isr)
            if priority != 8:
                level = (priority + self.priority_add) & 7
                self.isr &= ~(1 << level)
                if command == OCW2_ROTATE_NONSPECIFIC_EOI:
                    self.priority_add = (level + 1) & 7
        elif command in (OCW2_SPECIFIC_EOI, OCW2_ROTATE_SPECIFIC_EOI):
            level = value & 7
            self.isr &= ~(1 << level)
            if command == OCW2_ROTATE_SPECIFIC_EOI:
                self.priority_add = (level + 1) & 7
        elif command == OCW2_SET_PRIORITY:
            self.priority_add = (value + 1) & 7  # the named level becomes the lowest
        self._update_output()  # command 2 is a no-op

    def _read_elcr(self, offset: int, size: int) -> int:
        return self.elcr

    def _write_elcr(self, offset: int, size: int, value: int) -> None:
        self.elcr = value & self.elcr_mask

    # --- snapshots ---------------------------------------------------------------

    def save_state(self) -> dict:
        return {name: getattr(self, name) for name in _STATE_FIELDS}

    def load_state(self, state: dict) -> None:
        for name in _STATE_FIELDS:
            setattr(self, name, state[name])
        self._int_level = 1 if self.pending_level() >= 0 else 0


class PicPair:
    """The cascaded master/slave pair with ISA lines 0..15 and the CPU's INTR/INTA side.

    ``int_output(level)`` follows the master's INT pin (the CPU's INTR line); the vCPU
    loop calls ``acknowledge()`` when it can inject an external interrupt.
    """

    def __init__(self, int_output: Callable[[int], None] = _no_output):
        self.master = I8259(0x20, 0x4D0, MASTER_ELCR_MASK, master=True,
                            int_output=int_output, name="pic-master")
        self.slave = I8259(0xA0, 0x4D1, SLAVE_ELCR_MASK, master=False,
                           int_output=lambda level: self.master.set_irq(CASCADE_IRQ, level),
                           name="pic-slave")
        self.regions = self.master.regions + self.slave.regions
        self.name = "isa-i8259"
        self.irq_count = [0] * 16    # rising edges per line, for the monitor's info irq
        self._line_levels = 0

    def reset(self) -> None:
        self.slave.reset()
        self.master.reset()

    def set_irq(self, line: int, level: int) -> None:
        """Drive ISA interrupt line ``line`` (0..15) to ``level`` (0 or 1)."""
        if not 0 <= line < 16:
            raise ValueError(f"ISA IRQ {line} out of range 0..15")
        if level and not self._line_levels & (1 << line):
            self.irq_count[line] += 1
        self._line_levels = (self._line_levels | (1 << line)) if level else (self._line_levels & ~(1 << line))
        chip = self.master if line < 8 else self.slave
        chip.set_irq(line & 7, 1 if level else 0)

    def has_interrupt(self) -> bool:
        """Whether INTR is asserted: an unmasked request beats everything in service."""
        return bool(self.master.output)

    def acknowledge(self) -> int:
        """The INTA cycle: the vector of the highest-priority request, now in service.

        With no request left (it went away after INTR rose) the answer is the spurious
        IRQ 7 of the master (or IRQ 15 of the slave behind a cascade request).
        """
        level = self.master.pending_level()
        if level < 0:
            return self.master.irq_base + SPURIOUS_IRQ
        if level == CASCADE_IRQ:
            slave_level = self.slave.pending_level()
            if slave_level >= 0:
                self.slave.intack(slave_level)
            else:
                slave_level = SPURIOUS_IRQ
            vector = self.slave.irq_base + slave_level
        else:
            vector = self.master.irq_base + level
        self.master.intack(level)
        return vector

    def pending_irq(self) -> Optional[int]:
        """The ISA line ``acknowledge()`` would deliver now, or None (for the monitor)."""
        level = self.master.pending_level()
        if level < 0:
            return None
        if level == CASCADE_IRQ:
            slave_level = self.slave.pending_level()
            return 8 + slave_level if slave_level >= 0 else None
        return level

    def monitor_info(self) -> str:
        """QEMU's ``info pic`` lines for the pair (slave first, as QEMU lists them)."""
        return "\n".join(
            f"{name}: irr={chip.irr:02x} imr={chip.imr:02x} isr={chip.isr:02x} "
            f"hprio={chip.priority_add} irq_base={chip.irq_base:02x} rr_sel={int(chip.read_isr)} "
            f"elcr={chip.elcr:02x} fnm={int(chip.special_fully_nested)}"
            for name, chip in (("pic1", self.slave), ("pic0", self.master)))

    def save_state(self) -> dict:
        return {"master": self.master.save_state(), "slave": self.slave.save_state()}

    def load_state(self, state: dict) -> None:
        self.slave.load_state(state["slave"])
        self.master.load_state(state["master"])
