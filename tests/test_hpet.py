"""The HPET, through the memory address space against a virtual clock."""

import pytest

from devicemodel.address_space import AddressSpace
from devicemodel.clock import VirtualClock
from devicemodel.devices.hpet import Hpet

BASE = 0xFED00000
CFG, STATUS, COUNTER = BASE + 0x10, BASE + 0x20, BASE + 0xF0
US = 1000


def tn_cfg(n):
    return BASE + 0x100 + 0x20 * n


def tn_cmp(n):
    return BASE + 0x108 + 0x20 * n


class Lines:
    def __init__(self, clock):
        self.clock = clock
        self.events = []

    def __call__(self, line, level):
        self.events.append((self.clock.now_ns(), line, level))

    def pulses(self, line):
        return [t for t, ln, level in self.events if ln == line and level]


@pytest.fixture
def clock():
    return VirtualClock()


@pytest.fixture
def lines(clock):
    return Lines(clock)


@pytest.fixture
def hpet(clock, lines):
    return Hpet(clock, set_irq=lines)


@pytest.fixture
def mem(hpet):
    space = AddressSpace("memory", 1 << 64)
    space.add_region(hpet.region)
    return space


def test_capabilities(mem):
    assert mem.read(BASE, 4) == 0x8086A201       # 3 timers, 64-bit, legacy capable
    assert mem.read(BASE + 4, 4) == 10_000_000   # 10 ns in femtoseconds
    assert mem.read(BASE, 8) == (10_000_000 << 32) | 0x8086A201
    mem.write(BASE, 4, 0)                        # read-only
    assert mem.read(BASE, 4) == 0x8086A201
    assert mem.read(tn_cfg(0), 8) == (0x4 << 32) | 0x30   # route to input 2; periodic, 64-bit
    assert mem.read(BASE, 2) == 0xFFFF           # only 32- and 64-bit accesses are valid


def test_main_counter_runs_only_while_enabled(clock, mem):
    clock.advance(1000 * US)
    assert mem.read(COUNTER, 8) == 0
    mem.write(CFG, 4, 1)
    clock.advance(1000 * US)
    assert mem.read(COUNTER, 4) == 100_000       # 100 MHz
    mem.write(CFG, 4, 0)
    clock.advance(1000 * US)
    assert mem.read(COUNTER, 8) == 100_000
    mem.write(COUNTER + 4, 4, 0x1)               # the high half, while halted
    mem.write(CFG, 4, 1)
    clock.advance(10)
    assert mem.read(COUNTER, 8) == (1 << 32) + 100_001
    assert mem.read(COUNTER + 4, 8) & 0xFFFFFFFF == 1   # unaligned: two 32-bit pieces


def test_comparator_resets_to_all_ones(mem):
    assert mem.read(tn_cmp(1), 8) == (1 << 64) - 1
    mem.write(tn_cmp(1), 4, 0x1234)              # a 32-bit write changes the low half only
    assert mem.read(tn_cmp(1), 8) == 0xFFFFFFFF_00001234


def test_one_shot_timer_pulses_its_route(clock, mem, lines):
    mem.write(CFG, 4, 1)
    clock.advance(50 * US)                       # counter 5000
    mem.write(tn_cmp(0), 8, 6000)
    mem.write(tn_cfg(0), 4, (2 << 9) | 0x4)      # route 2, interrupts on, edge
    clock.advance(100 * US)
    assert lines.events == [(60 * US, 2, 1), (60 * US, 2, 0)]
    assert mem.read(STATUS, 4) == 0              # edge-triggered: no status


def test_a_comparator_behind_the_counter_matches_only_after_a_wrap(clock, mem, lines):
    mem.write(CFG, 4, 1)
    clock.advance(50 * US)
    mem.write(tn_cfg(1), 4, (2 << 9) | 0x4)
    mem.write(tn_cmp(1), 8, 4000)                # behind the counter (5000): 64-bit, never
    clock.advance(100 * 10**9)
    assert lines.pulses(2) == []
    mem.write(tn_cfg(1), 4, (2 << 9) | 0x4 | 0x100)   # 32-bit: when the low half wraps round
    start = clock.now_ns()
    counter = mem.read(COUNTER, 8)
    clock.advance(50 * 10**9)
    assert lines.pulses(2) == [start + (((4000 - counter) % (1 << 32)) * 10)]


def test_periodic_timer_programmed_as_linux_does(clock, mem, lines):
    mem.write(CFG, 4, 1)
    clock.advance(10 * US)                       # counter 1000
    delta = 100_000                              # 1 ms
    # route 2, enable, periodic, SETVAL, 32-bit (arch/x86/kernel/hpet.c)
    mem.write(tn_cfg(0), 4, (2 << 9) | 0x4 | 0x8 | 0x40 | 0x100)
    mem.write(tn_cmp(0), 4, 1000 + delta)        # first expiry
    mem.write(tn_cmp(0), 4, delta)               # then the period
    clock.advance(4500 * US)
    assert lines.pulses(2) == [1010 * US, 2010 * US, 3010 * US, 4010 * US]
    assert mem.read(tn_cmp(0), 8) == 1000 + 5 * delta   # the next expiry


def test_level_triggered_timer_holds_status_until_cleared(clock, mem, lines):
    mem.write(CFG, 4, 1)
    mem.write(tn_cfg(2), 4, (2 << 9) | 0x4 | 0x2)
    mem.write(tn_cmp(2), 8, 100)
    clock.advance(2 * US)
    assert lines.events == [(1 * US, 2, 1)]
    assert mem.read(STATUS, 4) == 0x4
    mem.write(STATUS, 4, 0x3)                    # other bits: no effect
    assert mem.read(STATUS, 4) == 0x4
    mem.write(STATUS, 4, 0x4)
    assert mem.read(STATUS, 4) == 0 and lines.events[-1] == (2 * US, 2, 0)


def test_legacy_replacement_routes_and_masks_pit_and_rtc(clock, mem, hpet, lines):
    hpet.pit_irq(1)
    hpet.rtc_irq(1)
    assert [(line, level) for _, line, level in lines.events] == [(0, 1), (8, 1)]
    mem.write(CFG, 4, 0x3)                       # enable, legacy replacement
    assert [(line, level) for _, line, level in lines.events[2:]] == [(0, 0), (8, 0)]
    hpet.pit_irq(0)
    hpet.rtc_irq(1)                              # replaced: not passed through
    assert len(lines.events) == 4
    mem.write(tn_cfg(0), 4, 0x4)
    mem.write(tn_cmp(0), 8, 100)
    mem.write(tn_cfg(1), 4, 0x4)
    mem.write(tn_cmp(1), 8, 200)
    clock.advance(3 * US)
    assert lines.events[4:] == [(1 * US, 0, 1), (1 * US, 0, 0), (2 * US, 8, 1), (2 * US, 8, 0)]
    mem.write(CFG, 4, 0x1)                       # legacy off: the PIT and RTC lines are back
    assert lines.events[-2:] == [(3 * US, 0, 0), (3 * US, 8, 1)]


def test_32_bit_mode_compares_the_low_half(clock, mem, lines):
    mem.write(COUNTER, 8, 0xFFFFFF00)
    mem.write(tn_cfg(0), 4, (2 << 9) | 0x4 | 0x100)
    mem.write(tn_cmp(0), 8, 0x1_0000_0100)       # 32-bit mode keeps the low half
    assert mem.read(tn_cmp(0), 8) == 0x100
    mem.write(CFG, 4, 1)
    clock.advance(10 * US)
    assert lines.pulses(2) == [0x200 * 10]       # counter 0x1_0000_0100


def test_disabling_the_counter_stops_the_timers(clock, mem, lines):
    mem.write(CFG, 4, 1)
    mem.write(tn_cfg(0), 4, (2 << 9) | 0x4)
    mem.write(tn_cmp(0), 8, 1000)
    mem.write(CFG, 4, 0)
    clock.advance(100 * US)
    assert lines.pulses(2) == []
    mem.write(CFG, 4, 1)                         # re-armed from where the counter stopped
    clock.advance(100 * US)
    assert lines.pulses(2) == [110 * US]


def test_save_and_load(clock, mem, hpet):
    mem.write(CFG, 4, 1)
    mem.write(tn_cfg(0), 4, (2 << 9) | 0x4 | 0x8 | 0x40 | 0x100)
    mem.write(tn_cmp(0), 4, 1000)
    mem.write(tn_cmp(0), 4, 1000)
    clock.advance(25 * US)
    state = hpet.save_state()
    clock2 = VirtualClock(start_ns=clock.now_ns())
    lines2 = Lines(clock2)
    copy = Hpet(clock2, set_irq=lines2)
    copy.load_state(state)
    assert copy.save_state() == state
    clock2.advance(30 * US)
    assert lines2.pulses(2) == [30 * US, 40 * US, 50 * US]
    assert copy.counter() == 5500
