"""The 8254 PIT and port 0x61, driven through port I/O against a virtual clock.

Times are CLK edge numbers: ``goto(k)`` moves the clock to the instant of edge k, so
"written at edge k" means the write happens after edge k and before edge k + 1.
"""

import pytest

from devicemodel.address_space import AddressSpace
from devicemodel.clock import VirtualClock
from devicemodel.devices.i8254 import I8254, PortB, edge_time, edges_at


class Irq:
    """IRQ 0's level changes, with the CLK edge at which each happened."""

    def __init__(self, clock):
        self.clock = clock
        self.changes = []

    def __call__(self, level):
        self.changes.append((edges_at(self.clock.now_ns()), level))

    @property
    def level(self):
        return self.changes[-1][1] if self.changes else 0


@pytest.fixture
def clock():
    return VirtualClock()


@pytest.fixture
def irq(clock):
    return Irq(clock)


@pytest.fixture
def pit(clock, irq):
    return I8254(clock, irq=irq)


@pytest.fixture
def io(pit):
    space = AddressSpace("io", 0x10000)
    space.add_region(pit.region)
    space.add_region(PortB(pit).region)
    return space


def goto(clock, edge):
    clock.advance_to(edge_time(edge))


def outb(io, port, value):
    io.write(port, 1, value)


def inb(io, port):
    return io.read(port, 1)


def program(io, counter, mode, count, access=3, bcd=False):
    outb(io, 0x43, (counter << 6) | (access << 4) | (mode << 1) | int(bcd))
    if access in (1, 3):
        outb(io, 0x40 + counter, count & 0xFF)
    if access in (2, 3):
        outb(io, 0x40 + counter, count >> 8)


def read_count(io, counter):
    outb(io, 0x43, counter << 6)         # counter latch command
    return inb(io, 0x40 + counter) | (inb(io, 0x40 + counter) << 8)


def transitions(irq, since=0):
    return [change for change in irq.changes if change[0] >= since]


def test_edge_arithmetic():
    for k in (0, 1, 2, 1193181, 1193182, 10**9):
        assert edges_at(edge_time(k)) == k
        assert edges_at(edge_time(k) - 1) == k - 1
    assert edge_time(1193182) == 10**9


def test_reset_state_is_a_18_2_hz_square_wave_on_irq0(clock, irq, io):
    assert irq.changes == [(0, 1)]      # loaded at power-on, OUT high
    goto(clock, 3 * 65536)
    assert transitions(irq, 1) == [(32768, 0), (65536, 1), (98304, 0), (131072, 1),
                                   (163840, 0), (196608, 1)]
    assert inb(io, 0x43) == 0            # the control register is write-only


def test_mode0_out_rises_n_plus_1_clocks_after_the_count_is_written(clock, irq, io):
    goto(clock, 100)
    outb(io, 0x43, 0x30)                 # counter 0, lobyte/hibyte, mode 0
    assert irq.level == 0                # the control word puts OUT low at once
    outb(io, 0x40, 10)
    outb(io, 0x40, 0)
    goto(clock, 101)
    assert read_count(io, 0) == 10       # loaded on the next CLK
    goto(clock, 105)
    assert read_count(io, 0) == 6
    goto(clock, 110)
    assert irq.level == 0 and read_count(io, 0) == 1
    goto(clock, 111)
    assert transitions(irq, 101) == [(111, 1)]
    goto(clock, 113)
    assert read_count(io, 0) == 0xFFFE   # CE wraps and keeps counting; OUT stays high
    goto(clock, 200000)
    assert transitions(irq, 101) == [(111, 1)]


def test_mode2_rate_generator_pulses_low_for_one_clock_each_period(clock, irq, io):
    goto(clock, 1000)
    program(io, 0, 2, 5)                 # loaded at edge 1001
    goto(clock, 1020)
    assert transitions(irq, 1001) == [(1005, 0), (1006, 1), (1010, 0), (1011, 1),
                                      (1015, 0), (1016, 1), (1020, 0)]
    goto(clock, 1022)
    assert read_count(io, 0) == 4        # reloaded with 5 at edge 1021


def test_mode3_square_wave_even_and_odd_counts(clock, irq, io):
    goto(clock, 10)
    program(io, 0, 3, 6)                 # loaded at edge 11
    goto(clock, 23)
    assert transitions(irq, 11) == [(14, 0), (17, 1), (20, 0), (23, 1)]
    goto(clock, 100)
    program(io, 0, 3, 5)                 # odd: 3 CLKs high, 2 low
    goto(clock, 111)
    assert transitions(irq, 101) == [(104, 0), (106, 1), (109, 0), (111, 1)]


def test_mode3_counts_down_by_two(clock, io):
    goto(clock, 10)
    program(io, 0, 3, 8)                 # loaded at edge 11
    counts = []
    for edge in range(11, 20):
        goto(clock, edge)
        counts.append(read_count(io, 0))
    assert counts == [8, 6, 4, 2, 8, 6, 4, 2, 8]


def test_mode4_strobe(clock, irq, io):
    goto(clock, 50)
    program(io, 0, 4, 3)                 # written at 50, loaded at 51
    assert irq.level == 1
    goto(clock, 1000)
    assert transitions(irq, 51) == [(54, 0), (55, 1)]


def test_mode4_rewrite_restarts_the_count(clock, irq, io):
    goto(clock, 50)
    program(io, 0, 4, 10)
    goto(clock, 55)
    outb(io, 0x40, 10)
    outb(io, 0x40, 0)                    # loaded again at edge 56
    goto(clock, 1000)
    assert transitions(irq, 51) == [(66, 0), (67, 1)]


def test_counter_latch_holds_the_value_until_read(clock, io):
    goto(clock, 10)
    program(io, 1, 2, 1000)              # loaded at 11
    goto(clock, 20)
    outb(io, 0x43, 0x40)                 # latch counter 1: CE = 991
    goto(clock, 30)
    outb(io, 0x43, 0x40)                 # ignored: the first latch is unread
    assert inb(io, 0x41) == 991 & 0xFF
    goto(clock, 40)
    assert inb(io, 0x41) == 991 >> 8
    assert read_count(io, 1) == 1000 - 29


def test_unlatched_reads_follow_the_access_mode(clock, io):
    goto(clock, 10)
    program(io, 1, 0, 0x1234)            # loaded at 11
    goto(clock, 11)
    assert inb(io, 0x41) == 0x34 and inb(io, 0x41) == 0x12
    program(io, 1, 0, 0x05, access=1)    # lobyte only
    goto(clock, 13)
    assert inb(io, 0x41) == 0x04 and inb(io, 0x41) == 0x04
    program(io, 1, 0, 0x0200, access=2)  # hibyte only: count 0x200
    goto(clock, 15)
    assert inb(io, 0x41) == 0x01         # 0x1ff
    outb(io, 0x43, 0x40)
    assert inb(io, 0x41) == 0x01


def test_read_back_status_then_count(clock, io):
    goto(clock, 10)
    outb(io, 0x43, 0xB4)                 # counter 2, lobyte/hibyte, mode 2
    outb(io, 0x43, 0xE8)                 # read-back status (not count) of counter 2
    assert inb(io, 0x42) == 0x80 | 0x40 | 0x34   # OUT high, null count, access 3, mode 2
    outb(io, 0x42, 0x00)
    outb(io, 0x42, 0x10)                 # 0x1000, GATE 2 is low: loaded, not counting
    goto(clock, 12)
    outb(io, 0x43, 0xE8)
    assert inb(io, 0x42) == 0x80 | 0x34  # count transferred: null count clear
    outb(io, 0x61, 0x01)                 # GATE 2 high: reload on the next CLK
    goto(clock, 20)
    outb(io, 0x43, 0xC8)                 # read-back count and status: status first
    assert inb(io, 0x42) == 0x80 | 0x34
    assert inb(io, 0x42) | (inb(io, 0x42) << 8) == 0x1000 - 7
    outb(io, 0x43, 0xD8)                 # count only
    goto(clock, 30)
    assert inb(io, 0x42) | (inb(io, 0x42) << 8) == 0x1000 - 7


def test_read_back_status_shows_out_and_bcd(clock, io):
    goto(clock, 10)
    program(io, 1, 0, 0x0003, bcd=True)
    goto(clock, 12)
    outb(io, 0x43, 0xE4)                 # status of counter 1: OUT low, mode 0, BCD
    assert inb(io, 0x41) == 0x30 | 0x01
    goto(clock, 14)
    outb(io, 0x43, 0xE4)
    assert inb(io, 0x41) == 0x80 | 0x30 | 0x01


def test_bcd_counting(clock, io):
    goto(clock, 10)
    program(io, 1, 0, 0x0100, bcd=True)  # 100 decimal, loaded at 11
    goto(clock, 12)
    assert read_count(io, 1) == 0x0099
    goto(clock, 11 + 100)
    assert read_count(io, 1) == 0x0000
    goto(clock, 11 + 101)
    assert read_count(io, 1) == 0x9999   # wraps in decimal
    program(io, 1, 2, 0x0000, bcd=True)  # 0 means 10000 in BCD
    goto(clock, 11 + 101 + 1 + 1)
    assert read_count(io, 1) == 0x9999


def test_mode2_new_count_takes_effect_at_the_end_of_the_period(clock, irq, io):
    goto(clock, 0)
    program(io, 0, 2, 10)                # loaded at 1; pulses at 10, 20, ...
    goto(clock, 3)
    outb(io, 0x40, 4)
    outb(io, 0x40, 0)
    goto(clock, 40)
    assert transitions(irq, 2) == [(10, 0), (11, 1), (14, 0), (15, 1), (18, 0), (19, 1),
                                   (22, 0), (23, 1), (26, 0), (27, 1), (30, 0), (31, 1),
                                   (34, 0), (35, 1), (38, 0), (39, 1)]


def test_mode3_new_count_takes_effect_at_the_end_of_the_half_period(clock, irq, io):
    goto(clock, 0)
    program(io, 0, 3, 10)                # loaded at 1: high until 6, low until 11
    goto(clock, 2)
    outb(io, 0x40, 4)
    outb(io, 0x40, 0)                    # at 6 the new count continues with its low half
    goto(clock, 16)
    assert transitions(irq, 2) == [(6, 0), (8, 1), (10, 0), (12, 1), (14, 0), (16, 1)]


def test_gate_low_pauses_mode0(clock, io):
    goto(clock, 10)
    program(io, 2, 0, 100)               # GATE 2 is low: loaded at 11, not counting
    goto(clock, 20)
    assert read_count(io, 2) == 100
    outb(io, 0x61, 0x01)                 # GATE high at 20: counts from edge 21
    goto(clock, 30)
    assert read_count(io, 2) == 90
    outb(io, 0x61, 0x00)
    goto(clock, 50)
    assert read_count(io, 2) == 90
    outb(io, 0x61, 0x01)                 # 90 more CLKs: terminal count at 140
    goto(clock, 139)
    assert inb(io, 0x61) & 0x20 == 0
    goto(clock, 140)
    assert inb(io, 0x61) & 0x20 == 0x20  # OUT 2 high


def test_gate_low_forces_mode2_out_high_and_rising_gate_reloads(clock, io, pit):
    outb(io, 0x61, 0x01)
    goto(clock, 10)
    program(io, 2, 2, 5)                 # loaded at 11, low at 15
    goto(clock, 15)
    assert pit.get_out(2) == 0
    outb(io, 0x61, 0x00)
    assert pit.get_out(2) == 1           # at once
    goto(clock, 30)
    assert read_count(io, 2) == 1        # stopped
    outb(io, 0x61, 0x01)                 # trigger: reload at 31
    goto(clock, 31)
    assert read_count(io, 2) == 5
    goto(clock, 35)
    assert pit.get_out(2) == 0


def test_mode1_one_shot_is_retriggered_by_the_gate(clock, io, pit):
    goto(clock, 10)
    program(io, 2, 1, 4)
    goto(clock, 20)
    assert pit.get_out(2) == 1           # no trigger yet
    outb(io, 0x61, 0x01)                 # trigger at 20: OUT low from 21 for 4 CLKs
    goto(clock, 21)
    assert pit.get_out(2) == 0
    goto(clock, 25)
    assert pit.get_out(2) == 1
    goto(clock, 30)
    outb(io, 0x61, 0x00)
    outb(io, 0x61, 0x01)                 # trigger at 30
    goto(clock, 32)
    outb(io, 0x61, 0x00)
    outb(io, 0x61, 0x01)                 # retrigger at 32 while low: low until 37
    goto(clock, 36)
    assert pit.get_out(2) == 0
    goto(clock, 37)
    assert pit.get_out(2) == 1


def test_mode5_strobe_after_a_gate_trigger(clock, io, pit):
    goto(clock, 10)
    program(io, 2, 5, 3)
    goto(clock, 20)
    assert pit.get_out(2) == 1
    outb(io, 0x61, 0x01)                 # trigger at 20: loaded at 21, strobe at 24
    outs = []
    for edge in range(21, 27):
        goto(clock, edge)
        outs.append(pit.get_out(2))
    assert outs == [1, 1, 1, 0, 1, 1]


def test_port61_bits(clock, io, pit):
    first = inb(io, 0x61)
    second = inb(io, 0x61)
    assert (first ^ second) == 0x10      # refresh toggles on each read
    outb(io, 0x61, 0x03)
    value = inb(io, 0x61)
    assert value & 0x03 == 0x03 and pit.get_gate(2) == 1
    assert bool(value & 0x20) == bool(pit.get_out(2))


def test_linux_pit_calibrate_tsc_sequence(clock, io):
    """arch/x86/kernel/tsc.c pit_calibrate_tsc(): gate high, speaker off, mode 0 on
    counter 2, then poll port 0x61 bit 5 until the terminal count."""
    latch = 1193182 // (1000 // 50)      # 50 ms
    goto(clock, 7)
    outb(io, 0x61, (inb(io, 0x61) & ~0x02) | 0x01)
    outb(io, 0x43, 0xB0)
    outb(io, 0x42, latch & 0xFF)
    outb(io, 0x42, latch >> 8)
    polls = 0
    while not inb(io, 0x61) & 0x20:
        clock.advance(10_000)            # 10 us between polls
        polls += 1
    assert edges_at(clock.now_ns()) - 7 >= latch + 1
    assert polls == pytest.approx(5000, abs=2)


def test_save_and_load_continue_the_same_waveform(clock, irq, io, pit):
    goto(clock, 100)
    program(io, 0, 2, 7)
    goto(clock, 120)
    outb(io, 0x43, 0x00)                 # a pending latch is part of the state
    state = pit.save_state()

    clock2 = VirtualClock(start_ns=clock.now_ns())
    irq2 = Irq(clock2)
    pit2 = I8254(clock2, irq=irq2)
    pit2.load_state(state)
    assert pit2.save_state() == state
    goto(clock, 200)
    goto(clock2, 200)
    assert transitions(irq2, 121) == transitions(irq, 121)
    assert pit2.read(0, 1) == pit.read(0, 1)
