"""The HPET (IA-PC High Precision Event Timer specification 1.0a) at 0xfed00000, with
QEMU's capabilities, defaults and timer behaviour (hw/timer/hpet.c).

Registers (32- or 64-bit accesses):

    0x000 capabilities and ID: vendor 8086, 64-bit counter, legacy replacement
          capable, 3 timers, counter period 10 ns (100 MHz)
    0x010 configuration: ENABLE_CNF (bit 0: the main counter runs), LEG_RT_CNF (bit 1)
    0x020 interrupt status: a level-triggered timer's bit; write 1 to clear it
    0x0f0 main counter (writable; it only counts while enabled)
    0x100 + 0x20 n  timer n configuration and capabilities, + 8 comparator

Timer n configuration: INT_TYPE (bit 1, level), INT_ENB (2), TYPE (3, periodic),
VAL_SET (6), 32MODE (8), INT_ROUTE (13:9, an I/O APIC input allowed by the route
capability in bits 63:32). A timer matches, per the specification, whenever the
counter's low 64 (or 32) bits become equal to its comparator: a comparator left behind
the counter matches only after the counter wraps (QEMU instead fires at once, and adds
an interrupt at the 32-bit wrap). A periodic timer then adds its period to the
comparator (VAL_SET lets the next comparator write set the comparator itself rather
than the period). A match with interrupts enabled pulses the routed line (edge) or
raises it and sets the status bit (level).

Legacy replacement: timer 0 drives IRQ 0 and timer 1 IRQ 8 in place of the PIT and
the RTC, whose outputs the HPET therefore passes through: wire the PIT's IRQ to
``pit_irq`` and the RTC's to ``rtc_irq``. Outputs go to ``set_irq(line, level)``,
``line`` being the ISA IRQ / GSI. FSB (MSI) delivery is not offered.
"""

from __future__ import annotations

from typing import Callable

from devicemodel.address_space import Region
from devicemodel.clock import DeviceTimer

HPET_BASE = 0xFED00000
HPET_LEN = 0x400
NUM_TIMERS = 3
CLK_PERIOD_FS = 10_000_000       # 10 ns
NS_PER_TICK = 10
CAPABILITIES = 0x8086A001 | ((NUM_TIMERS - 1) << 8) | (CLK_PERIOD_FS << 32)

REG_ID = 0x000
REG_CFG = 0x010
REG_STATUS = 0x020
REG_COUNTER = 0x0F0
TIMER_BASE = 0x100
TIMER_STRIDE = 0x20
TN_CFG, TN_CMP = 0x00, 0x08

CFG_ENABLE = 0x01
CFG_LEGACY = 0x02
CFG_WRITE_MASK = 0x03

TN_TYPE_LEVEL = 0x002
TN_ENABLE = 0x004
TN_PERIODIC = 0x008
TN_PERIODIC_CAP = 0x010
TN_SIZE_CAP = 0x020
TN_SETVAL = 0x040
TN_32BIT = 0x100
TN_INT_ROUTE_SHIFT = 9
TN_INT_ROUTE_MASK = 0x3E00
TN_CFG_WRITE_MASK = TN_TYPE_LEVEL | TN_ENABLE | TN_PERIODIC | TN_SETVAL | TN_32BIT | TN_INT_ROUTE_MASK

DEFAULT_INTCAP = 0x4             # QEMU's route capability: I/O APIC input 2
PIT_IRQ, RTC_IRQ = 0, 8
MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1
FOREVER_TICKS = 1 << 62          # farther than any VM runs: not scheduled


def _no_irq(line: int, level: int) -> None:
    pass


def _aligned_pieces(offset: int, size: int):
    """(offset, size) pieces of an access as QEMU's memory core cuts it: naturally
    aligned, at most 8 bytes; only 4- and 8-byte pieces reach the registers."""
    end = offset + size
    while offset < end:
        piece = min(1 << ((end - offset).bit_length() - 1), offset & -offset or 8, 8)
        if piece >= 4:
            yield offset, piece
        offset += piece


class HpetTimer:
    def __init__(self, hpet: "Hpet", index: int):
        self.hpet = hpet
        self.index = index
        self.clock_timer = DeviceTimer(hpet.clock, self._fire)
        self.reset()

    def reset(self) -> None:
        self.clock_timer.cancel()
        self.config = TN_PERIODIC_CAP | TN_SIZE_CAP | (self.hpet.intcap << 32)
        self.cmp = MASK64
        self.period = 0

    @property
    def width_mask(self) -> int:
        return MASK32 if self.config & TN_32BIT else MASK64

    def route(self) -> int:
        if self.index <= 1 and self.hpet.config & CFG_LEGACY:
            return PIT_IRQ if self.index == 0 else RTC_IRQ
        return (self.config & TN_INT_ROUTE_MASK) >> TN_INT_ROUTE_SHIFT

    def arm(self) -> None:
        """Schedule the next match: the next counter value whose low bits (32 or 64)
        equal the comparator."""
        ticks = ((self.cmp - self.hpet.counter() - 1) & self.width_mask) + 1
        if ticks > FOREVER_TICKS:
            self.clock_timer.cancel()  # a 64-bit comparator behind the counter
        else:
            self.clock_timer.arm(self.hpet.clock.now_ns() + ticks * NS_PER_TICK)

    def disarm(self) -> None:
        self.clock_timer.cancel()
        self.set_output(False)

    def _fire(self) -> None:
        if self.config & TN_PERIODIC and self.period:
            # The comparator moves on by the period (past a counter that ran ahead of us).
            mask = self.width_mask
            behind = (self.hpet.counter() - self.cmp) & mask
            self.cmp = (self.cmp + (behind // self.period + 1) * self.period) & mask
        self.arm()
        self.set_output(True)

    def set_output(self, fire: bool) -> None:
        """Raise (``fire``) or drop the timer's interrupt (QEMU's update_irq)."""
        hpet = self.hpet
        bit = 1 << self.index
        line = self.route()
        if not fire or not self.config & TN_ENABLE or not hpet.config & CFG_ENABLE:
            hpet.status &= ~bit
            hpet.set_irq(line, 0)
        elif self.config & TN_TYPE_LEVEL:
            hpet.status |= bit
            hpet.set_irq(line, 1)
        else:
            hpet.status &= ~bit
            hpet.set_irq(line, 1)
            hpet.set_irq(line, 0)

    def write_config(self, old: int, new: int) -> None:
        self.config = (self.config & ~TN_CFG_WRITE_MASK) | (new & TN_CFG_WRITE_MASK)
        if new & TN_32BIT:
            self.cmp &= MASK32
            self.period &= MASK32
        if old & TN_ENABLE and not new & TN_ENABLE:
            self.set_output(False)
        if self.hpet.config & CFG_ENABLE:
            self.arm()

    def write_comparator(self, deposit: Callable[[int], int]) -> None:
        """A write of part of the comparator: ``deposit(register)`` merges it in."""
        width = self.width_mask
        periodic = self.config & TN_PERIODIC
        if not periodic or self.config & TN_SETVAL:
            self.cmp = deposit(self.cmp) & width
        if periodic:
            self.period = min(deposit(self.period) & width, width >> 1)
        self.config &= ~TN_SETVAL
        if self.hpet.config & CFG_ENABLE:
            self.arm()

    def save_state(self) -> dict:
        return {"config": self.config, "cmp": self.cmp, "period": self.period,
                "deadline_ns": self.clock_timer.deadline_ns}

    def load_state(self, state: dict) -> None:
        for name in ("config", "cmp", "period"):
            setattr(self, name, state[name])
        if state["deadline_ns"] is None:
            self.clock_timer.cancel()
        else:
            self.clock_timer.arm(state["deadline_ns"])


class Hpet:
    """The HPET block; ``region`` goes into the memory address space."""

    def __init__(self, clock, set_irq: Callable[[int, int], None] = _no_irq,
                 base: int = HPET_BASE, intcap: int = DEFAULT_INTCAP, name: str = "hpet"):
        self.clock = clock
        self.set_irq = set_irq
        self.intcap = intcap
        self.region = Region(base=base, size=HPET_LEN, name=name, read=self.read,
                             write=self.write, owner=self, sizes=(4, 8))
        self.config = 0
        self.status = 0
        self.counter_value = 0       # the main counter while halted
        self.offset_ns = 0           # counter = (now + offset_ns) // 10 while running
        self.pit_level = 0
        self.rtc_level = 0
        self.timers = [HpetTimer(self, i) for i in range(NUM_TIMERS)]

    def reset(self) -> None:
        for timer in self.timers:
            timer.disarm()
            timer.reset()
        self.config = 0
        self.status = 0
        self.counter_value = 0
        self.offset_ns = 0
        self.rtc_level = 0

    def counter(self) -> int:
        if self.config & CFG_ENABLE:
            return ((self.clock.now_ns() + self.offset_ns) // NS_PER_TICK) & MASK64
        return self.counter_value

    # --- the legacy devices' outputs, passed through unless replaced --------------------

    def pit_irq(self, level: int) -> None:
        self.pit_level = level
        if not self.config & CFG_LEGACY:
            self.set_irq(PIT_IRQ, level)

    def rtc_irq(self, level: int) -> None:
        self.rtc_level = level
        if not self.config & CFG_LEGACY:
            self.set_irq(RTC_IRQ, level)

    # --- the guest's side ---------------------------------------------------------------

    def _read64(self, reg: int) -> int:
        if reg >= TIMER_BASE:
            index, field = divmod(reg - TIMER_BASE, TIMER_STRIDE)
            if index >= NUM_TIMERS:
                return 0
            timer = self.timers[index]
            return {TN_CFG: timer.config, TN_CMP: timer.cmp}.get(field, 0)  # no FSB route
        if reg == REG_ID:
            return CAPABILITIES
        if reg == REG_CFG:
            return self.config
        if reg == REG_STATUS:
            return self.status
        if reg == REG_COUNTER:
            return self.counter()
        return 0

    def read(self, offset: int, size: int) -> int:
        value = 0
        for piece, piece_size in _aligned_pieces(offset, size):
            shift = 8 * (piece & 7)
            part = (self._read64(piece & ~7) >> shift) & ((1 << (8 * piece_size)) - 1)
            value |= part << (8 * (piece - offset))
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        for piece, piece_size in _aligned_pieces(offset, size):
            part = (value >> (8 * (piece - offset))) & ((1 << (8 * piece_size)) - 1)
            self._write_piece(piece, piece_size, part)

    def _write_piece(self, offset: int, size: int, value: int) -> None:
        reg = offset & ~7
        shift = 8 * (offset & 7)
        mask = ((1 << (8 * size)) - 1) << shift

        def deposit(register: int) -> int:
            return (register & ~mask) | ((value << shift) & mask)

        old = self._read64(reg)
        new = deposit(old)
        if reg >= TIMER_BASE:
            index, field = divmod(reg - TIMER_BASE, TIMER_STRIDE)
            if index >= NUM_TIMERS:
                return
            timer = self.timers[index]
            if field == TN_CFG:
                timer.write_config(old, new)
            elif field == TN_CMP:
                timer.write_comparator(deposit)
        elif reg == REG_CFG:
            self._write_config(old, new)
        elif reg == REG_STATUS:
            cleared = (value << shift) & mask & self.status
            for timer in self.timers:
                if cleared & (1 << timer.index):
                    timer.set_output(False)
        elif reg == REG_COUNTER:
            self.counter_value = new  # takes effect when the counter is next enabled

    def _write_config(self, old: int, new: int) -> None:
        self.config = (self.config & ~CFG_WRITE_MASK) | (new & CFG_WRITE_MASK)
        if new & CFG_ENABLE and not old & CFG_ENABLE:
            self.offset_ns = self.counter_value * NS_PER_TICK - self.clock.now_ns()
            for timer in self.timers:
                timer.arm()
        elif old & CFG_ENABLE and not new & CFG_ENABLE:
            self.counter_value = ((self.clock.now_ns() + self.offset_ns) // NS_PER_TICK) & MASK64
            for timer in self.timers:
                timer.disarm()
        if new & CFG_LEGACY and not old & CFG_LEGACY:
            self.set_irq(PIT_IRQ, 0)
            self.set_irq(RTC_IRQ, 0)
        elif old & CFG_LEGACY and not new & CFG_LEGACY:
            self.set_irq(PIT_IRQ, self.pit_level)
            self.set_irq(RTC_IRQ, self.rtc_level)

    # --- snapshots ------------------------------------------------------------------------

    def save_state(self) -> dict:
        return {"config": self.config, "status": self.status,
                "counter_value": self.counter_value, "offset_ns": self.offset_ns,
                "pit_level": self.pit_level, "rtc_level": self.rtc_level,
                "timers": [timer.save_state() for timer in self.timers]}

    def load_state(self, state: dict) -> None:
        for name in ("config", "status", "counter_value", "offset_ns", "pit_level", "rtc_level"):
            setattr(self, name, state[name])
        for timer, saved in zip(self.timers, state["timers"]):
            timer.load_state(saved)
