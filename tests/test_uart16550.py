"""The 16550A, driven through the port-I/O address space the way a guest driver does."""

import pytest

from devicemodel.address_space import AddressSpace
from devicemodel.devices.uart16550 import Uart16550
from irq_line import Line as Irq

BASE = 0x3F8
THR = RBR = DLL = BASE
IER = DLM = BASE + 1
IIR = FCR = BASE + 2
LCR, MCR, LSR, MSR, SCR = BASE + 3, BASE + 4, BASE + 5, BASE + 6, BASE + 7


class Capture:
    def __init__(self):
        self.data = bytearray()

    def write(self, data):
        self.data += data


@pytest.fixture
def uart():
    return Uart16550(Capture(), iobase=BASE, irq=Irq())


@pytest.fixture
def io(uart):
    space = AddressSpace("io", 0x10000)
    space.add_region(uart.region)
    return space


def inb(io, port):
    return io.read(port, 1)


def outb(io, port, value):
    io.write(port, 1, value)


def test_reset_state(io):
    assert inb(io, IER) == 0
    assert inb(io, IIR) == 0x01          # no interrupt pending, FIFOs off
    assert inb(io, LCR) == 0
    assert inb(io, MCR) == 0
    assert inb(io, LSR) == 0x60          # THRE | TEMT
    assert inb(io, MSR) == 0xB0          # DCD | DSR | CTS
    assert inb(io, SCR) == 0


def test_transmit_goes_to_the_chardev_and_thr_stays_empty(uart, io):
    for byte in b"Hello\n":
        assert inb(io, LSR) & 0x20
        outb(io, THR, byte)
    assert bytes(uart.chardev.data) == b"Hello\n"
    assert inb(io, LSR) == 0x60


def test_a_16_bit_out_writes_two_registers(uart, io):
    io.write(THR, 2, 0x5A41)  # 'A' to THR, 0x5a to IER
    assert bytes(uart.chardev.data) == b"A"
    assert inb(io, IER) == 0x0A  # IER keeps its low 4 bits


def test_divisor_latch_behind_dlab(uart, io):
    outb(io, LCR, 0x80)
    outb(io, DLL, 0x01)
    outb(io, DLM, 0x00)
    assert (inb(io, DLL), inb(io, DLM)) == (1, 0)
    outb(io, LCR, 0x03)                  # 8N1, DLAB off
    assert uart.divisor == 1
    outb(io, THR, ord("x"))               # THR again, not DLL
    outb(io, IER, 0x00)
    assert bytes(uart.chardev.data) == b"x"
    assert uart.divisor == 1
    assert inb(io, LCR) == 0x03


def test_scratch_register(io):
    outb(io, SCR, 0x5A)
    assert inb(io, SCR) == 0x5A


def test_receive_sets_dr_and_rbr_reads_in_order(uart, io):
    outb(io, FCR, 0x07)                   # FIFOs on, both cleared
    uart.receive(b"ab")
    assert inb(io, LSR) & 0x01
    assert inb(io, RBR) == ord("a")
    assert inb(io, LSR) & 0x01
    assert inb(io, RBR) == ord("b")
    assert inb(io, LSR) == 0x60
    assert inb(io, RBR) == ord("b")       # an empty RBR keeps its last byte


def test_fifo_overrun_keeps_the_fifo_and_sets_oe_until_lsr_is_read(uart, io):
    outb(io, FCR, 0x01)
    assert uart.can_receive() == 16
    uart.receive(bytes(range(20)))
    assert uart.can_receive() == 0
    assert inb(io, LSR) == 0x63           # DR | OE | THRE | TEMT
    assert inb(io, LSR) == 0x61           # OE cleared by the read
    assert [inb(io, RBR) for _ in range(16)] == list(range(16))
    assert not inb(io, LSR) & 0x01


def test_without_fifo_the_newest_byte_overwrites_rbr(uart, io):
    assert uart.can_receive() == 1
    uart.receive(b"xyz")
    assert inb(io, LSR) & 0x03 == 0x03
    assert inb(io, RBR) == ord("z")


def test_fcr_enables_fifo_shown_in_iir_and_clears_receive_fifo(uart, io):
    outb(io, FCR, 0x01)
    assert inb(io, IIR) & 0xC0 == 0xC0
    uart.receive(b"abc")
    outb(io, FCR, 0x03)                   # clear RX FIFO
    assert not inb(io, LSR) & 0x01
    uart.receive(b"d")
    outb(io, FCR, 0x00)                   # FIFOs off: cleared too
    assert not inb(io, LSR) & 0x01
    assert inb(io, IIR) == 0x01


def test_thre_interrupt_follows_ier_iir_and_thr_writes(uart, io):
    irq = uart.irq
    outb(io, IER, 0x02)                   # enable THRE: THR is empty, so it is pending
    assert irq.level == 1
    assert inb(io, IIR) == 0x02
    assert irq.level == 0                 # reading IIR acknowledged it
    assert inb(io, IIR) == 0x01
    outb(io, THR, ord("a"))               # the byte leaves at once: THRE again, with a new edge
    assert irq.level == 1
    assert inb(io, IIR) == 0x02
    outb(io, IER, 0x00)
    assert irq.level == 0
    assert inb(io, IIR) == 0x01


def test_thr_write_gives_a_fresh_rising_edge(uart, io):
    outb(io, IER, 0x02)
    before = len(uart.irq.levels)
    outb(io, THR, ord("a"))               # no IIR read in between: lower, then raise
    assert uart.irq.levels[before:] == [0, 1]


def test_received_data_interrupt_and_priority_over_thre(uart, io):
    irq = uart.irq
    outb(io, IER, 0x03)                   # THRE pending at once
    uart.receive(b"k")
    assert irq.level == 1
    assert inb(io, IIR) == 0x04           # RDA outranks THRE
    assert inb(io, RBR) == ord("k")
    assert inb(io, IIR) == 0x02           # THRE still pending after RDA is served
    assert inb(io, IIR) == 0x01
    assert irq.level == 0


def test_fifo_trigger_level_and_character_timeout(uart, io):
    outb(io, FCR, 0x41)                   # FIFO on, trigger level 4
    outb(io, IER, 0x01)
    uart.receive(b"ab")
    assert inb(io, IIR) == 0xCC           # below the trigger level: character timeout
    uart.receive(b"cd")
    assert inb(io, IIR) == 0xC4           # at the trigger level: received data available
    while inb(io, LSR) & 0x01:
        inb(io, RBR)
    assert inb(io, IIR) == 0xC1
    assert uart.irq.level == 0


def test_line_status_interrupt_on_overrun(uart, io):
    outb(io, IER, 0x05)
    uart.receive(b"12")
    assert inb(io, IIR) == 0x06
    inb(io, LSR)
    assert inb(io, IIR) == 0x04


def test_loopback_as_linux_probes_it(uart, io):
    outb(io, MCR, 0x10 | 0x0A)            # LOOP | RTS | OUT2
    assert inb(io, MSR) & 0xF0 == 0x90    # CTS | DCD
    outb(io, MCR, 0x1F)
    assert inb(io, MSR) & 0xF0 == 0xF0
    outb(io, THR, ord("L"))                # looped back, not transmitted
    assert bytes(uart.chardev.data) == b""
    assert inb(io, LSR) & 0x01
    assert inb(io, RBR) == ord("L")
    uart.receive(b"ignored")               # the serial input is disconnected in loopback
    assert uart.can_receive() == 0
    assert not inb(io, LSR) & 0x01
    outb(io, MCR, 0x03)
    assert inb(io, MSR) & 0xF0 == 0xB0
    outb(io, THR, ord("T"))
    assert bytes(uart.chardev.data) == b"T"


def test_msr_delta_bits_clear_on_read_and_raise_modem_status_interrupt(uart, io):
    outb(io, IER, 0x08)
    outb(io, MCR, 0x10 | 0x04)            # loopback, OUT1 -> RI; CTS, DSR, DCD drop
    assert uart.irq.level == 1
    assert inb(io, IIR) == 0x00
    assert inb(io, MSR) == 0x40 | 0x01 | 0x02 | 0x08
    assert inb(io, MSR) == 0x40
    assert uart.irq.level == 0
    outb(io, MCR, 0x10)                   # RI falls: trailing-edge delta
    assert inb(io, MSR) & 0x0F == 0x04


def test_mcr_keeps_five_bits_and_lsr_msr_writes_are_ignored(io):
    outb(io, MCR, 0xFF & ~0x10)
    assert inb(io, MCR) == 0x0F
    outb(io, LSR, 0x00)
    outb(io, MSR, 0x00)
    assert inb(io, LSR) == 0x60
    assert inb(io, MSR) & 0xF0 == 0xB0


def test_other_base_port():
    uart = Uart16550(Capture(), iobase=0x2F8, name="serial1")
    space = AddressSpace("io", 0x10000)
    space.add_region(uart.region)
    space.write(0x2F8, 1, ord("2"))
    assert bytes(uart.chardev.data) == b"2"
    assert space.read(0x3FD, 1) == 0xFF


def test_thr_writes_may_be_coalesced_while_the_thre_interrupt_is_off(uart, io):
    switched = []
    uart.set_tx_coalescing(switched.append)
    assert switched == [True]                  # IER 0: a polling driver
    outb(io, IER, 0x01)                        # received-data interrupt only: no change
    outb(io, IER, 0x03)
    outb(io, IER, 0x02)
    outb(io, IER, 0x00)
    uart.reset()
    assert switched == [True, False, True]
