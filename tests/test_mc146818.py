"""The MC146818 RTC/CMOS, driven through ports 0x70/0x71 against a virtual clock."""

import pytest

from devicemodel.address_space import AddressSpace
from devicemodel.clock import NS_PER_SEC, VirtualClock
from devicemodel.devices.mc146818 import MC146818, periodic_cycles, rtc_start_time
from devicemodel.errors import ConfigError

START = rtc_start_time("2006-06-17T16:01:21")   # a Saturday
MS = 1_000_000


class Irq:
    def __init__(self, clock):
        self.clock = clock
        self.changes = []

    def __call__(self, level):
        self.changes.append((self.clock.now_ns(), level))

    @property
    def level(self):
        return self.changes[-1][1] if self.changes else 0

    def rises(self):
        return [t for t, level in self.changes if level]


@pytest.fixture
def clock():
    return VirtualClock()


@pytest.fixture
def irq(clock):
    return Irq(clock)


@pytest.fixture
def rtc(clock, irq):
    return MC146818(clock, irq=irq, start_time=START)


@pytest.fixture
def io(rtc):
    space = AddressSpace("io", 0x10000)
    space.add_region(rtc.region)
    return space


def cmos_read(io, index):
    io.write(0x70, 1, index)
    return io.read(0x71, 1)


def cmos_write(io, index, value):
    io.write(0x70, 1, index)
    io.write(0x71, 1, value)


def read_time(io):
    return [cmos_read(io, i) for i in (0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32)]


def test_power_on_registers(io):
    assert cmos_read(io, 0x0A) == 0x26
    assert cmos_read(io, 0x0B) == 0x02
    assert cmos_read(io, 0x0C) == 0x00
    assert cmos_read(io, 0x0D) == 0x80
    assert io.read(0x70, 1) == 0xFF


def test_bcd_time_and_date_advance_with_the_clock(clock, io):
    assert read_time(io) == [0x21, 0x01, 0x16, 7, 0x17, 0x06, 0x06, 0x20]
    clock.advance(40 * NS_PER_SEC)
    assert read_time(io)[:3] == [0x01, 0x02, 0x16]
    clock.advance((7 * 3600 + 57 * 60 + 59) * NS_PER_SEC)   # to 2006-06-18 00:00:00
    assert read_time(io) == [0x00, 0x00, 0x00, 1, 0x18, 0x06, 0x06, 0x20]


def test_binary_mode(io):
    cmos_write(io, 0x0B, 0x06)                # binary, 24 h
    assert read_time(io) == [21, 1, 16, 7, 17, 6, 6, 20]


def test_12_hour_mode(clock, io, rtc):
    cmos_write(io, 0x0B, 0x00)                # BCD, 12 h
    assert cmos_read(io, 0x04) == 0x84        # 4 PM
    clock.advance((7 * 3600 + 58 * 60 + 39) * NS_PER_SEC)  # 00:00:00
    assert cmos_read(io, 0x04) == 0x12        # 12 AM
    clock.advance(12 * 3600 * NS_PER_SEC)
    assert cmos_read(io, 0x04) == 0x92        # 12 PM


def test_setting_the_time_under_set(clock, io, rtc):
    cmos_write(io, 0x0B, 0x82)                # SET
    for index, value in ((0x00, 0x59), (0x02, 0x59), (0x04, 0x23), (0x07, 0x31),
                         (0x08, 0x12), (0x09, 0x99), (0x32, 0x19)):
        cmos_write(io, index, value)
    clock.advance(5 * NS_PER_SEC)
    assert cmos_read(io, 0x00) == 0x59        # stopped while SET
    cmos_write(io, 0x0B, 0x02)
    clock.advance(1 * NS_PER_SEC)
    assert read_time(io) == [0x00, 0x00, 0x00, 7, 0x01, 0x01, 0x00, 0x20]  # a Saturday
    assert rtc.guest_time() == rtc_start_time("2000-01-01")


def test_writing_a_time_register_while_running_sets_the_clock(clock, io, rtc):
    cmos_write(io, 0x04, 0x03)
    assert rtc.guest_time() == rtc_start_time("2006-06-17T03:01:21")
    clock.advance(NS_PER_SEC)
    assert cmos_read(io, 0x00) == 0x22


def test_update_in_progress_in_the_last_244us_of_each_second(clock, io):
    clock.advance_to(999_755_859)
    assert cmos_read(io, 0x0A) & 0x80 == 0
    clock.advance_to(999_755_860)
    assert cmos_read(io, 0x0A) & 0x80
    clock.advance_to(NS_PER_SEC)
    assert cmos_read(io, 0x0A) & 0x80 == 0
    cmos_write(io, 0x0A, 0xA6)                # UIP is read-only
    assert cmos_read(io, 0x0A) == 0x26


def test_periodic_rate_table():
    assert [periodic_cycles(rs) for rs in range(16)] == [
        0, 128, 256, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]


def serve_interrupts(clock, io, irq, duration_ns, step_ns):
    """A guest whose IRQ 8 handler reads register C; the handled flags, in order."""
    handled = []
    end = clock.now_ns() + duration_ns
    while clock.now_ns() < end:
        clock.advance(min(step_ns, end - clock.now_ns()))
        if irq.level:
            handled.append(cmos_read(io, 0x0C))
    return handled


@pytest.mark.parametrize("rate, hz", [(6, 1024), (13, 8), (3, 8192)])
def test_periodic_interrupt_rate(clock, io, irq, rate, hz):
    cmos_write(io, 0x0A, 0x20 | rate)
    cmos_write(io, 0x0B, 0x42)                # PIE
    handled = serve_interrupts(clock, io, irq, NS_PER_SEC // 4, NS_PER_SEC // hz // 3)
    assert len(handled) == hz // 4
    assert set(handled) == {0xC0}             # IRQF | PF
    assert irq.rises()[0] == -(-NS_PER_SEC // hz)  # on the divider's first tap


def test_register_c_clears_on_read_and_lowers_irq(clock, io, irq):
    cmos_write(io, 0x0B, 0x42)
    clock.advance(MS)
    assert irq.level == 1
    assert cmos_read(io, 0x0C) == 0xC0
    assert irq.level == 0
    assert cmos_read(io, 0x0C) == 0x00


def test_flags_are_set_without_their_interrupt_enables(clock, io, irq):
    clock.advance(2 * NS_PER_SEC)
    assert cmos_read(io, 0x0C) == 0x50        # PF and UF, but no IRQF
    assert irq.changes == []


def test_enabling_an_interrupt_whose_flag_is_set_raises_irq_at_once(clock, io, irq):
    clock.advance(NS_PER_SEC + 1)             # UF is now set
    cmos_write(io, 0x0B, 0x12)                # UIE
    assert irq.level == 1
    assert cmos_read(io, 0x0C) & 0x90 == 0x90


def test_update_ended_interrupt_every_second(clock, io, irq):
    clock.advance(NS_PER_SEC // 2)
    cmos_write(io, 0x0B, 0x12)
    handled = serve_interrupts(clock, io, irq, 3 * NS_PER_SEC, 100 * MS)
    assert len(handled) == 3 and all(value & 0x90 == 0x90 for value in handled)
    assert irq.rises() == [1 * NS_PER_SEC, 2 * NS_PER_SEC, 3 * NS_PER_SEC]


def test_alarm_interrupt_at_the_alarm_time(clock, io, irq):
    cmos_write(io, 0x01, 0x30)
    cmos_write(io, 0x03, 0x01)
    cmos_write(io, 0x05, 0x16)                # 16:01:30, 9 s from now
    cmos_write(io, 0x0B, 0x22)                # AIE
    clock.advance(20 * NS_PER_SEC)
    assert irq.rises() == [9 * NS_PER_SEC]
    assert cmos_read(io, 0x0C) & 0xA0 == 0xA0


def test_alarm_in_12_hour_mode_matches_the_pm_bit(clock, io, irq):
    cmos_write(io, 0x0B, 0x20)                # AIE, BCD, 12 h
    cmos_write(io, 0x01, 0x00)
    cmos_write(io, 0x03, 0x02)
    cmos_write(io, 0x05, 0x04)                # 4:02:00 AM: not this afternoon
    clock.advance(3600 * NS_PER_SEC)
    assert irq.changes == []
    cmos_write(io, 0x05, 0x84)                # 4:02:00 PM has passed: tomorrow
    cmos_write(io, 0x03, 0x03)
    cmos_write(io, 0x05, 0x85)                # 5:03:00 PM, 99 s after 5:01:21 PM
    clock.advance(3600 * NS_PER_SEC)
    assert irq.rises() == [(3600 + 99) * NS_PER_SEC]


def test_dont_care_alarm_bytes(clock, io, irq):
    cmos_write(io, 0x01, 0x00)
    cmos_write(io, 0x03, 0xC0)
    cmos_write(io, 0x05, 0xFF)                # every minute at :00
    cmos_write(io, 0x0B, 0x22)
    handled = serve_interrupts(clock, io, irq, 150 * NS_PER_SEC, 500 * MS)
    assert len(handled) == 2 and all(value & 0xA0 == 0xA0 for value in handled)
    assert irq.rises() == [39 * NS_PER_SEC, 99 * NS_PER_SEC]  # 16:02:00, 16:03:00
    cmos_write(io, 0x01, 0xC0)                # every second
    clock.advance(2 * NS_PER_SEC + 1)
    assert cmos_read(io, 0x0C) & 0x20


def test_alarm_passed_while_nobody_looked_sets_af(clock, io, irq):
    cmos_write(io, 0x01, 0x25)
    cmos_write(io, 0x03, 0x01)
    cmos_write(io, 0x05, 0x16)
    clock.advance(10 * NS_PER_SEC)
    assert cmos_read(io, 0x0C) == 0x70        # PF, AF, UF; no interrupt enabled
    assert irq.changes == []


def test_alarm_that_never_matches(clock, io, irq):
    cmos_write(io, 0x01, 0x61)                # second 61 does not exist
    cmos_write(io, 0x0B, 0x22)
    clock.advance(120 * NS_PER_SEC)
    assert irq.changes == []


def test_set_stops_updates_and_clears_uie(clock, io, irq):
    cmos_write(io, 0x0B, 0x12)
    cmos_write(io, 0x0B, 0x92)                # SET with UIE: UIE is cleared
    assert cmos_read(io, 0x0B) == 0x82
    cmos_read(io, 0x0C)
    clock.advance(3 * NS_PER_SEC)
    assert cmos_read(io, 0x0C) & 0x10 == 0    # no update cycles
    assert cmos_read(io, 0x0A) & 0x80 == 0


def test_divider_reset_holds_time_and_release_starts_half_a_second_later(clock, io, irq):
    clock.advance(NS_PER_SEC // 4)
    cmos_write(io, 0x0A, 0x76)                # divider chain in reset
    cmos_read(io, 0x0C)
    clock.advance(10 * NS_PER_SEC)
    assert cmos_read(io, 0x00) == 0x21
    assert cmos_read(io, 0x0C) == 0x00        # no periodic taps, no updates
    cmos_write(io, 0x0B, 0x12)                # UIE
    cmos_write(io, 0x0A, 0x26)                # release
    released = clock.now_ns()
    clock.advance(NS_PER_SEC)
    assert irq.rises() == [released + NS_PER_SEC // 2]
    assert cmos_read(io, 0x00) == 0x22


def test_nmi_mask_bit_of_the_index_port(io, clock):
    changes = []
    rtc = MC146818(clock, start_time=START, nmi_mask=changes.append)
    space = AddressSpace("io", 0x10000)
    space.add_region(rtc.region)
    space.write(0x70, 1, 0x80 | 0x0D)
    assert rtc.nmi_masked and changes == [True]
    assert space.read(0x71, 1) == 0x80        # the index is bits 6:0
    space.write(0x70, 1, 0x0D)
    assert not rtc.nmi_masked and changes == [True, False]


def test_nvram_bytes_and_the_century_alias(io):
    cmos_write(io, 0x40, 0x5A)
    assert cmos_read(io, 0x40) == 0x5A
    assert cmos_read(io, 0x37) == 0x20        # the IBM PS/2 century byte reads 0x32
    cmos_write(io, 0x0C, 0xFF)                # C and D are read-only
    cmos_write(io, 0x0D, 0x00)
    assert cmos_read(io, 0x0D) == 0x80


@pytest.mark.parametrize("below, above, expected", [
    (128 << 20, 0, {0x15: 0x80, 0x16: 0x02, 0x17: 0xFF, 0x18: 0xFF, 0x30: 0xFF, 0x31: 0xFF,
                    0x34: 0x00, 0x35: 0x07, 0x5B: 0, 0x5C: 0, 0x5D: 0}),
    (8 << 20, 0, {0x15: 0x80, 0x16: 0x02, 0x17: 0x00, 0x18: 0x1C, 0x30: 0x00, 0x31: 0x1C,
                  0x34: 0x00, 0x35: 0x00}),
    (0xC0000000, 1 << 30, {0x34: 0x00, 0x35: 0xBF, 0x5B: 0x00, 0x5C: 0x40, 0x5D: 0x00}),
])
def test_memory_size_bytes(rtc, io, below, above, expected):
    rtc.set_ram_size(below, above)
    assert {index: cmos_read(io, index) for index in expected} == expected


def test_rtc_start_time_bases(monkeypatch):
    assert rtc_start_time("utc", now=1_000_000_000.7) == 1_000_000_000
    assert rtc_start_time("2006-06-17") == 1150502400
    assert rtc_start_time("2006-06-17T16:01:21") == 1150560081
    monkeypatch.setenv("TZ", "UTC-2")
    import time
    time.tzset()
    try:
        assert rtc_start_time("localtime", now=1_000_000_000) == 1_000_000_000 + 7200
    finally:
        monkeypatch.undo()
        time.tzset()
    for bad in ("yesterday", "2006-13-01", "2006-06-17T25:00:00", "2006-6-17"):
        with pytest.raises(ConfigError):
            rtc_start_time(bad)


def test_reset_disables_interrupts_and_clears_flags(clock, io, irq, rtc):
    cmos_write(io, 0x0B, 0x72)
    clock.advance(2 * NS_PER_SEC)
    assert irq.level == 1
    rtc.reset()
    assert irq.level == 0
    assert cmos_read(io, 0x0B) == 0x12        # UIE survives, as in QEMU
    assert cmos_read(io, 0x0C) == 0x00


def test_save_and_load_state(clock, io, irq, rtc):
    cmos_write(io, 0x0B, 0x42)
    cmos_write(io, 0x0A, 0x2F)                # 2 Hz
    cmos_write(io, 0x41, 0x99)
    clock.advance(700 * MS)
    state = rtc.save_state()

    clock2 = VirtualClock(start_ns=clock.now_ns())
    irq2 = Irq(clock2)
    copy = MC146818(clock2, irq=irq2, start_time=0)
    copy.load_state(state)
    assert copy.save_state() == state
    assert copy.guest_time() == rtc.guest_time()
    for device in (rtc, copy):
        device.write(0, 1, 0x0C)
        assert device.read(1, 1) == 0xC0
    assert irq2.changes == [(clock2.now_ns(), 0)]   # the copy knew its line was high
    clock.advance(NS_PER_SEC)
    clock2.advance(NS_PER_SEC)
    assert irq2.rises()[-1] == irq.rises()[-1] == NS_PER_SEC
