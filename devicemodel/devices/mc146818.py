"""The MC146818A real-time clock and CMOS RAM of the PC, after the Motorola MC146818A
datasheet and QEMU's hw/rtc/mc146818rtc.c (ports, register defaults, NVRAM layout).

Port 0x70 selects the register (bits 6:0) and holds the NMI mask (bit 7, set = NMIs
disabled: ``nmi_masked``, and ``nmi_mask(masked)`` on writes); it reads as 0xff, as in
QEMU. Port 0x71 reads and writes the selected byte of the 128-byte CMOS RAM:

    0x00 seconds    0x01 seconds alarm   0x02 minutes   0x03 minutes alarm
    0x04 hours      0x05 hours alarm     0x06 weekday   0x07 day   0x08 month
    0x09 year       0x0a register A      0x0b B         0x0c C     0x0d D
    0x32 century (0x37, the IBM PS/2 century byte, is an alias)

Register A: UIP (bit 7, read-only), divider DV (6:4; 11x holds the divider chain in
reset), periodic rate RS (3:0; rate 2^(RS-1) cycles of 32768 Hz, codes 1 and 2 as 8
and 9). Register B: SET, PIE, AIE, UIE, SQWE, DM (1 = binary, 0 = BCD), 24/12, DSE.
Register C: IRQF, PF, AF, UF; reading it clears it and lowers IRQ 8. Register D: VRT.

Time: the guest's clock is ``start_time`` (seconds since 1970, read as the date the
guest sees; see ``rtc_start_time`` for QEMU's ``-rtc base=``) plus the clock's
progress. Each second's update cycle ends on the second boundary (setting UF, and AF
when the time matches the alarm bytes, 0xc0..0xff being "don't care"); UIP reads 1 in
the 244 us before it. The periodic flag PF is set at each tap of the divider chain,
whose phase is the seconds' phase. Flags are computed when they are looked at, and a
timer runs only to raise IRQ 8 for an enabled interrupt that is not already pending.
"""

from __future__ import annotations

import datetime
import re
import time
from typing import Callable, Optional

from devicemodel.address_space import Region
from devicemodel.clock import NS_PER_SEC, DeviceTimer
from devicemodel.errors import ConfigError

SECONDS, SECONDS_ALARM, MINUTES, MINUTES_ALARM, HOURS, HOURS_ALARM = 0, 1, 2, 3, 4, 5
DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR = 6, 7, 8, 9
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
CENTURY = 0x32
IBM_PS2_CENTURY = 0x37
TIME_REGISTERS = (SECONDS, MINUTES, HOURS, DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR, CENTURY)

REG_A_UIP = 0x80
REG_A_DV = 0x70
REG_A_RS = 0x0F
REG_B_SET = 0x80
REG_B_PIE = 0x40
REG_B_AIE = 0x20
REG_B_UIE = 0x10
REG_B_SQWE = 0x08
REG_B_DM = 0x04
REG_B_24H = 0x02
REG_C_IRQF = 0x80
REG_C_PF = 0x40
REG_C_AF = 0x20
REG_C_UF = 0x10
REG_C_FLAGS = REG_C_PF | REG_C_AF | REG_C_UF
REG_D_VRT = 0x80

DV_RESET = 0x60          # DV = 11x: divider chain held in reset
DV_RUNNING_MAX = 0x20    # DV = 000, 001, 010: a time base is running (QEMU's rule)
RTC_CLOCK_RATE = 32768
UIP_CYCLES = 8           # UIP is set for 8 cycles (244 us) before the update
HALF_SECOND_NS = NS_PER_SEC // 2
SECONDS_PER_DAY = 86400

KiB = 1 << 10
MiB = 1 << 20


def periodic_cycles(rate: int) -> int:
    """The periodic interrupt period in 32768 Hz cycles for rate select ``rate``; 0: none."""
    if rate == 0:
        return 0
    if rate <= 2:
        rate += 7
    return 1 << (rate - 1)


def _to_bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


def _from_bcd(value: int) -> int:
    return (value >> 4) * 10 + (value & 0x0F)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 for any integers (months beyond 1..12 carry into the year)."""
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def rtc_start_time(base: str = "utc", now: Optional[float] = None) -> int:
    """The guest's RTC time now, in seconds since 1970, for QEMU's ``-rtc base=``.

    ``utc`` (the host's time in UTC), ``localtime`` (the host's local wall time), or a
    date ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SS`` to start from.
    """
    now = time.time() if now is None else now
    if base == "utc":
        return int(now)
    if base == "localtime":
        local = datetime.datetime.fromtimestamp(now).astimezone()
        return int(now + local.utcoffset().total_seconds())
    match = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2}))?", base)
    try:
        if match is None:
            raise ValueError
        fields = [int(group or 0) for group in match.groups()]
        start = datetime.datetime(*fields, tzinfo=datetime.timezone.utc)
    except ValueError:
        raise ConfigError(f"invalid datetime format '{base}': use utc, localtime or "
                          f"YYYY-MM-DD[THH:MM:SS] (e.g. 2006-06-17T16:01:21)") from None
    return int(start.timestamp())


def _no_irq(level: int) -> None:
    pass


def _no_nmi_mask(masked: bool) -> None:
    pass


class MC146818:
    """The RTC at ``iobase`` (two ports) on ``clock``, raising ``irq(level)`` (ISA IRQ 8)."""

    def __init__(self, clock, irq: Callable[[int], None] = _no_irq,
                 start_time: Optional[int] = None, iobase: int = 0x70,
                 nmi_mask: Callable[[bool], None] = _no_nmi_mask, name: str = "rtc"):
        self.clock = clock
        self.irq = irq
        self.nmi_mask = nmi_mask
        self.iobase = iobase
        self.name = name
        self.region = Region(base=iobase, size=2, name=name, read=self.read, write=self.write,
                             owner=self, sizes=(1, 2, 4), impl_size=1)
        self.regions = (self.region,)
        self.cmos = bytearray(128)
        self.index = 0
        self.nmi_masked = False
        self._timer = DeviceTimer(clock, self._on_timer)
        self._irq_level = 0
        self.cmos[REG_A] = 0x26      # 32768 Hz time base, 1024 Hz periodic rate
        self.cmos[REG_B] = REG_B_24H
        self.cmos[REG_D] = REG_D_VRT
        start = rtc_start_time() if start_time is None else start_time
        now = clock.now_ns()
        self._offset_ns = start * NS_PER_SEC - now   # guest time = clock time + offset
        self._checked_ns = now       # register C reflects the time up to here
        self._refresh_time_registers(start)
        self._update()

    def reset(self) -> None:
        """System reset (QEMU's rtc_reset): interrupts and the square wave off, pending
        flags cleared; the time and the NVRAM bytes are kept, as on a real PC."""
        now = self.clock.now_ns()
        self._catch_up(now)
        self.cmos[REG_B] &= ~(REG_B_PIE | REG_B_AIE | REG_B_SQWE)
        self.cmos[REG_C] &= ~(REG_C_UF | REG_C_IRQF | REG_C_PF | REG_C_AF)
        self._checked_ns = now
        self._update()

    # --- guest time ---------------------------------------------------------------------

    def _guest_ns(self, now: int) -> int:
        return now + self._offset_ns

    def _divider_running(self) -> bool:
        return (self.cmos[REG_A] & REG_A_DV) <= DV_RUNNING_MAX

    def running(self) -> bool:
        """Whether the time registers are updated: SET clear and a time base running."""
        return not self.cmos[REG_B] & REG_B_SET and self._divider_running()

    def _format(self, value: int) -> int:
        return value if self.cmos[REG_B] & REG_B_DM else _to_bcd(value)

    def _parse(self, value: int) -> int:
        return value if self.cmos[REG_B] & REG_B_DM else _from_bcd(value)

    def _format_hour(self, hour: int) -> int:
        if self.cmos[REG_B] & REG_B_24H:
            return self._format(hour)
        return self._format(hour % 12 or 12) | (0x80 if hour >= 12 else 0)

    def _parse_hour(self, value: int) -> int:
        if self.cmos[REG_B] & REG_B_24H:
            return self._parse(value)
        return self._parse(value & 0x7F) % 12 + (12 if value & 0x80 else 0)

    def _refresh_time_registers(self, seconds: int) -> None:
        days, second_of_day = divmod(seconds, SECONDS_PER_DAY)
        year, month, day = _civil_from_days(days)
        self.cmos[SECONDS] = self._format(second_of_day % 60)
        self.cmos[MINUTES] = self._format(second_of_day // 60 % 60)
        self.cmos[HOURS] = self._format_hour(second_of_day // 3600)
        self.cmos[DAY_OF_WEEK] = self._format((days + 4) % 7 + 1)  # 1 = Sunday
        self.cmos[DAY_OF_MONTH] = self._format(day)
        self.cmos[MONTH] = self._format(month)
        self.cmos[YEAR] = self._format(year % 100)
        self.cmos[CENTURY] = self._format(year // 100 % 100)

    def _registers_to_seconds(self) -> int:
        c = self.cmos
        year = self._parse(c[CENTURY]) * 100 + self._parse(c[YEAR])
        days = _days_from_civil(year, self._parse(c[MONTH]), self._parse(c[DAY_OF_MONTH]))
        return (days * SECONDS_PER_DAY + self._parse_hour(c[HOURS]) * 3600
                + self._parse(c[MINUTES]) * 60 + self._parse(c[SECONDS]))

    def _set_time_from_registers(self, now: int, phase_ns: Optional[int] = None) -> None:
        """The guest set the clock: keep the sub-second phase unless one is given."""
        if phase_ns is None:
            phase_ns = self._guest_ns(now) % NS_PER_SEC
        self._offset_ns = self._registers_to_seconds() * NS_PER_SEC + phase_ns - now

    def guest_time(self) -> int:
        """The guest's RTC time in seconds since 1970 (for the monitor and tests)."""
        if self.running():
            return self._guest_ns(self.clock.now_ns()) // NS_PER_SEC
        return self._registers_to_seconds()

    # --- events: periodic taps, update cycles, alarms ------------------------------------

    def _periodic_cycles(self) -> int:
        """The periodic period in 32768 Hz cycles, or 0 while it does not run."""
        if not self._divider_running():
            return 0
        return periodic_cycles(self.cmos[REG_A] & REG_A_RS)

    def _periodic_index(self, guest_ns: int, cycles: int) -> int:
        return guest_ns * RTC_CLOCK_RATE // (cycles * NS_PER_SEC)

    def _periodic_time(self, index: int, cycles: int) -> int:
        return -(-index * cycles * NS_PER_SEC // RTC_CLOCK_RATE)

    def _alarm_values(self, register: int, count: int, fmt) -> Optional[list[int]]:
        """The values of a time field the alarm byte matches; None for "don't care"."""
        alarm = self.cmos[register]
        if alarm & 0xC0 == 0xC0:
            return None
        return [value for value in range(count) if fmt(value) == alarm]

    def _next_alarm_second(self, after: int) -> Optional[int]:
        """The first update (second) after ``after`` at which the alarm matches, or None."""
        seconds = self._alarm_values(SECONDS_ALARM, 60, self._format)
        minutes = self._alarm_values(MINUTES_ALARM, 60, self._format)
        hours = self._alarm_values(HOURS_ALARM, 24, self._format_hour)
        fields = [range(24) if hours is None else hours,
                  range(60) if minutes is None else minutes,
                  range(60) if seconds is None else seconds]
        if not all(fields):
            return None              # a value the clock never shows
        day, tod = divmod(after + 1, SECONDS_PER_DAY)
        current = (tod // 3600, tod // 60 % 60, tod % 60)
        match = self._first_at_or_after(fields, current)
        if match is None:
            day += 1
            match = (fields[0][0], fields[1][0], fields[2][0])
        return day * SECONDS_PER_DAY + match[0] * 3600 + match[1] * 60 + match[2]

    @staticmethod
    def _first_at_or_after(fields, current) -> Optional[tuple[int, int, int]]:
        """The least (h, m, s) in the product of ``fields`` not before ``current``."""
        for h in fields[0]:
            if h < current[0]:
                continue
            for m in fields[1]:
                if h == current[0] and m < current[1]:
                    continue
                for s in fields[2]:
                    if h == current[0] and m == current[1] and s < current[2]:
                        continue
                    return h, m, s
        return None

    def _catch_up(self, now: int) -> None:
        """Set the register C flags for everything that happened up to ``now``."""
        if now <= self._checked_ns:
            return
        before, after = self._guest_ns(self._checked_ns), self._guest_ns(now)
        self._checked_ns = now
        flags = 0
        cycles = self._periodic_cycles()
        if cycles and self._periodic_index(after, cycles) > self._periodic_index(before, cycles):
            flags |= REG_C_PF
        if self.running():
            first, last = before // NS_PER_SEC, after // NS_PER_SEC
            if last > first:
                flags |= REG_C_UF
                alarm = self._next_alarm_second(first)
                if alarm is not None and alarm <= last:
                    flags |= REG_C_AF
        self.cmos[REG_C] |= flags

    def _next_event_ns(self, now: int) -> Optional[int]:
        """When the next enabled interrupt that is not yet flagged will be flagged."""
        pending = self.cmos[REG_C]
        enabled = self.cmos[REG_B] & ~pending
        guest_now = self._guest_ns(now)
        candidates = []
        cycles = self._periodic_cycles()
        if enabled & REG_B_PIE and cycles:
            index = self._periodic_index(guest_now, cycles) + 1
            candidates.append(self._periodic_time(index, cycles))
        if self.running():
            second = guest_now // NS_PER_SEC
            if enabled & REG_B_UIE:
                candidates.append((second + 1) * NS_PER_SEC)
            if enabled & REG_B_AIE:
                alarm = self._next_alarm_second(second)
                if alarm is not None:
                    candidates.append(alarm * NS_PER_SEC)
        if not candidates:
            return None
        return min(candidates) - self._offset_ns

    def _update(self) -> None:
        """Bring register C up to date, drive IRQ 8, and arm the timer for the next edge."""
        now = self.clock.now_ns()
        self._catch_up(now)
        irqf = self.cmos[REG_C] & self.cmos[REG_B] & REG_C_FLAGS
        if irqf:
            self.cmos[REG_C] |= REG_C_IRQF
        level = 1 if irqf else 0
        if level != self._irq_level:
            self._irq_level = level
            self.irq(level)
        deadline = None if level else self._next_event_ns(now)
        if deadline is None:
            self._timer.cancel()
        elif self._timer.deadline_ns != deadline:
            self._timer.arm(deadline)

    def _on_timer(self) -> None:
        self._update()

    def update_in_progress(self) -> bool:
        if not self.running():
            return False
        phase = self._guest_ns(self.clock.now_ns()) % NS_PER_SEC
        return phase * RTC_CLOCK_RATE >= (RTC_CLOCK_RATE - UIP_CYCLES) * NS_PER_SEC

    # --- the guest's side ------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if offset == 0:
            return 0xFF
        index = self.index
        if index == IBM_PS2_CENTURY:
            index = self.index = CENTURY
        if index in TIME_REGISTERS:
            if self.running():
                self._refresh_time_registers(self._guest_ns(self.clock.now_ns()) // NS_PER_SEC)
            return self.cmos[index]
        if index == REG_A:
            return self.cmos[REG_A] | (REG_A_UIP if self.update_in_progress() else 0)
        if index == REG_C:
            self._catch_up(self.clock.now_ns())
            value = self.cmos[REG_C]
            self.cmos[REG_C] = 0
            self._update()
            return value
        return self.cmos[index]

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0:
            self.index = value & 0x7F
            masked = bool(value & 0x80)
            if masked != self.nmi_masked:
                self.nmi_masked = masked
                self.nmi_mask(masked)
            return
        index = self.index
        if index == IBM_PS2_CENTURY:
            index = self.index = CENTURY
        now = self.clock.now_ns()
        self._catch_up(now)
        if index in TIME_REGISTERS:
            if self.running():
                self._refresh_time_registers(self._guest_ns(now) // NS_PER_SEC)
            self.cmos[index] = value
            if self.running():
                self._set_time_from_registers(now)
        elif index == REG_A:
            self._write_a(now, value)
        elif index == REG_B:
            self._write_b(now, value)
        elif index in (REG_C, REG_D):
            return                   # read-only
        else:
            self.cmos[index] = value
        self._update()

    def _write_a(self, now: int, value: int) -> None:
        if self.running():
            self._refresh_time_registers(self._guest_ns(now) // NS_PER_SEC)
        held = self.cmos[REG_A] & DV_RESET == DV_RESET
        self.cmos[REG_A] = value & ~REG_A_UIP
        if held and self.running():
            # Released from divider reset: the first update comes half a second later.
            self._set_time_from_registers(now, phase_ns=HALF_SECOND_NS)

    def _write_b(self, now: int, value: int) -> None:
        if value & REG_B_SET:
            if self.running():
                self._refresh_time_registers(self._guest_ns(now) // NS_PER_SEC)
            value &= ~REG_B_UIE      # SET clears UIE
            self.cmos[REG_B] = value
            return
        was_set = self.cmos[REG_B] & REG_B_SET
        self.cmos[REG_B] = value
        if not self.running():
            return
        if was_set:
            self._set_time_from_registers(now)  # the guest has set the clock
        else:
            self._refresh_time_registers(self._guest_ns(now) // NS_PER_SEC)  # in the new format

    def reset(self) -> None:
        """System reset, as QEMU's: interrupt enables and flags off, shutdown byte cleared."""
        if self.cmos[0x0F] != 0xFE:  # 0xfe: resuming from S3
            self.cmos[0x0F] = 0
        self._catch_up(self.clock.now_ns())
        self.cmos[REG_B] &= ~(REG_B_PIE | REG_B_AIE | REG_B_SQWE)
        self.cmos[REG_C] &= ~(REG_C_UF | REG_C_IRQF | REG_C_PF | REG_C_AF)
        self._update()

    # --- NVRAM contents for firmware --------------------------------------------------

    def set_ram_size(self, below_4g: int, above_4g: int = 0) -> None:
        """The memory-size bytes, as QEMU's pc machine sets them (pc_cmos_init)."""
        base = min(below_4g // KiB, 640)
        self.cmos[0x15], self.cmos[0x16] = base & 0xFF, base >> 8
        extended = min(max(below_4g - MiB, 0) // KiB, 0xFFFF)  # KiB above 1 MiB
        self.cmos[0x17], self.cmos[0x18] = extended & 0xFF, extended >> 8
        self.cmos[0x30], self.cmos[0x31] = extended & 0xFF, extended >> 8
        above_16m = min(max(below_4g - 16 * MiB, 0) // (64 * KiB), 0xFFFF)
        self.cmos[0x34], self.cmos[0x35] = above_16m & 0xFF, above_16m >> 8
        high = above_4g // (64 * KiB)  # 64 KiB units above 4 GiB
        for i, index in enumerate((0x5B, 0x5C, 0x5D)):
            self.cmos[index] = (high >> (8 * i)) & 0xFF

    # --- snapshots ---------------------------------------------------------------------

    def save_state(self) -> dict:
        self._catch_up(self.clock.now_ns())
        return {"cmos": list(self.cmos), "index": self.index, "nmi_masked": self.nmi_masked,
                "offset_ns": self._offset_ns, "checked_ns": self._checked_ns,
                "irq_level": self._irq_level}

    def load_state(self, state: dict) -> None:
        self.cmos = bytearray(state["cmos"])
        self.index = state["index"]
        self.nmi_masked = state["nmi_masked"]
        self._offset_ns = state["offset_ns"]
        self._checked_ns = state["checked_ns"]
        self._irq_level = state["irq_level"]
        self._update()
