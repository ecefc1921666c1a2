"""The ACPI fixed-hardware power management registers (ACPI 6.5, 4.8), as QEMU's
hw/acpi/core.c implements them for the PIIX4: a 64-byte I/O block whose base the PM
function's PMBA register sets (0x600 on QEMU's pc):

    +0  PM1a_STS (16-bit): TMR_STS (0), BM_STS (4), GBL_STS (5), PWRBTN_STS (8),
        SLPBTN_STS (9), RTC_STS (10), WAK_STS (15); writing 1 clears a bit
    +2  PM1a_EN (16-bit): TMR_EN, GBL_EN, PWRBTN_EN, SLPBTN_EN, RTC_EN
    +4  PM1a_CNT (16-bit): SCI_EN (0), BM_RLD (1), GBL_RLS (2), SLP_TYP (12:10),
        SLP_EN (13, write-only: sets the machine to sleep state SLP_TYP)
    +8  PM_TMR (32-bit, read-only): the power management timer

Only the access sizes QEMU accepts work: 16-bit for PM1, 32-bit for the timer.

The timer counts at 3.579545 MHz from the machine's clock, in 24 bits (or 32 with
``timer_bits=32``, which the FADT must then announce with TMR_VAL_EXT). TMR_STS is set
whenever the counter's top bit changes (every 2^23 ticks, 2.34 s, for 24 bits); as in
QEMU it is also set at reset, and writing it clear starts the next period from now.

The SCI (``set_sci(level)``) is high while a status bit in PM1_STS is set together
with its enable bit, for the timer, the global lock, the power button and the RTC
(QEMU does not gate it with SCI_EN).

Sleep: SLP_EN with SLP_TYP 0 (the soft-off value that the DSDT's \\_S5 package gives)
or 2 (QEMU's S4 value) turns the machine off through ``power_off()``; SLP_TYP 1 (S3)
asks for ``suspend()``. ``press_power_button()`` is the monitor's system_powerdown: with
PWRBTN_EN set, PWRBTN_STS is set and the SCI raised.
"""

from __future__ import annotations

from typing import Callable

from devicemodel.address_space import Region
from devicemodel.clock import NS_PER_SEC, DeviceTimer

PM_TIMER_HZ = 3_579_545
BLOCK_SIZE = 64

EVT_OFFSET, CNT_OFFSET, TMR_OFFSET = 0, 4, 8

TMR_STS = 1 << 0
BM_STS = 1 << 4
GBL_STS = 1 << 5
PWRBTN_STS = 1 << 8
SLPBTN_STS = 1 << 9
RTC_STS = 1 << 10
WAK_STS = 1 << 15

TMR_EN = 1 << 0
GBL_EN = 1 << 5
PWRBTN_EN = 1 << 8
RTC_EN = 1 << 10
SCI_SOURCES = TMR_EN | GBL_EN | PWRBTN_EN | RTC_EN

SCI_EN = 1 << 0
SLP_TYP_SHIFT = 10
SLP_TYP_MASK = 0x7 << SLP_TYP_SHIFT
SLP_EN = 1 << 13

SLP_TYP_SOFT_OFF = 0
SLP_TYP_S3 = 1
SLP_TYP_S4 = 2


def _nothing(*args) -> None:
    pass


class AcpiPm:
    """The PM1 event and control registers and the PM timer; ``regions`` are placed at
    the block's base by ``set_base``."""

    def __init__(self, clock, set_sci: Callable[[int], None] = _nothing,
                 power_off: Callable[[], None] = _nothing, suspend: Callable[[], None] = _nothing,
                 timer_bits: int = 24, name: str = "acpi"):
        if timer_bits not in (24, 32):
            raise ValueError("the ACPI PM timer has 24 or 32 bits")
        self.clock = clock
        self.set_sci = set_sci
        self.power_off = power_off
        self.suspend = suspend
        self.timer_mask = (1 << timer_bits) - 1
        self.timer_half = 1 << (timer_bits - 1)   # TMR_STS when this bit of the count changes
        self.timer = DeviceTimer(clock, self._timer_overflow)
        self.regions = (
            Region(base=EVT_OFFSET, size=4, name=f"{name}-evt", read=self._read_evt, write=self._write_evt,
                   owner=self, sizes=(2,)),
            Region(base=CNT_OFFSET, size=2, name=f"{name}-cnt", read=self._read_cnt, write=self._write_cnt,
                   owner=self, sizes=(2,)),
            Region(base=TMR_OFFSET, size=4, name=f"{name}-tmr", read=self._read_tmr, write=self._write_nothing,
                   owner=self, sizes=(4,)),
        )
        self.sci_level = 0
        self.reset()

    def reset(self) -> None:
        self.sts = 0
        self.en = 0
        self.cnt = 0
        self.overflow_ticks = 0      # TMR_STS is due once the count reaches this
        self.timer.cancel()
        self._update_sci()

    def set_base(self, base: int) -> None:
        """Move the block (the caller takes the regions out of and back into the port space)."""
        for region, offset in zip(self.regions, (EVT_OFFSET, CNT_OFFSET, TMR_OFFSET)):
            region.base = base + offset

    # --- the timer ------------------------------------------------------------------

    def ticks(self) -> int:
        """PM timer ticks since the clock started (not wrapped)."""
        return self.clock.now_ns() * PM_TIMER_HZ // NS_PER_SEC

    def _next_overflow(self) -> int:
        return (self.ticks() + self.timer_half) & ~(self.timer_half - 1)

    def status(self) -> int:
        if self.ticks() >= self.overflow_ticks:
            self.sts |= TMR_STS
        return self.sts

    def _timer_overflow(self) -> None:
        self._update_sci()

    # --- SCI --------------------------------------------------------------------------

    def _update_sci(self) -> None:
        status = self.status()
        level = 1 if status & self.en & SCI_SOURCES else 0
        if level != self.sci_level:
            self.sci_level = level
            self.set_sci(level)
        if self.en & TMR_EN and not status & TMR_STS:
            deadline_ns = -(-self.overflow_ticks * NS_PER_SEC // PM_TIMER_HZ)   # rounded up
            self.timer.arm(deadline_ns)
        else:
            self.timer.cancel()

    def press_power_button(self) -> None:
        if self.en & PWRBTN_EN:
            self.sts |= PWRBTN_STS
            self._update_sci()

    # --- the guest's side -------------------------------------------------------------

    def _read_evt(self, offset: int, size: int) -> int:
        if offset == 0:
            return self.status()
        if offset == 2:
            return self.en
        return 0

    def _write_evt(self, offset: int, size: int, value: int) -> None:
        if offset == 0:
            if self.status() & value & TMR_STS:
                self.overflow_ticks = self._next_overflow()
            self.sts &= ~value
        elif offset == 2:
            self.en = value
        self._update_sci()

    def _read_cnt(self, offset: int, size: int) -> int:
        return self.cnt

    def _write_cnt(self, offset: int, size: int, value: int) -> None:
        self.cnt = value & ~SLP_EN
        if value & SLP_EN:
            slp_typ = (value & SLP_TYP_MASK) >> SLP_TYP_SHIFT
            if slp_typ in (SLP_TYP_SOFT_OFF, SLP_TYP_S4):
                self.power_off()
            elif slp_typ == SLP_TYP_S3:
                self.suspend()

    def set_sci_enable(self, enable: bool) -> None:
        """The APM port's ACPI enable/disable commands (ACPI 6.5, 4.8.2.5)."""
        self.cnt = self.cnt | SCI_EN if enable else self.cnt & ~SCI_EN

    def _read_tmr(self, offset: int, size: int) -> int:
        return self.ticks() & self.timer_mask

    def _write_nothing(self, offset: int, size: int, value: int) -> None:
        pass

    # --- snapshots ----------------------------------------------------------------------

    def save_state(self) -> dict:
        return {"sts": self.sts, "en": self.en, "cnt": self.cnt, "overflow_ticks": self.overflow_ticks}

    def load_state(self, state: dict) -> None:
        self.sts, self.en, self.cnt = state["sts"], state["en"], state["cnt"]
        self.overflow_ticks = state["overflow_ticks"]
        self._update_sci()
