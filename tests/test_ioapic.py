"""The I/O APIC through its MMIO registers, its pins and the EOIs, delivering to local
APICs on the APIC bus; and the PC's interrupt lines on both the 8259s and the I/O APIC."""

import threading

from devicemodel.address_space import AddressSpace
from devicemodel.apic_bus import ApicBus
from devicemodel.clock import VirtualClock
from devicemodel.devices.apic import LocalApic
from devicemodel.devices.ioapic import IoApic
from devicemodel.interrupt_line import InterruptLine

BASE = 0xFEC00000
IRR, TMR = 0x200, 0x180


class Board:
    def __init__(self, cpus=2):
        self.bus = ApicBus()
        self.clock = VirtualClock()
        self.apics = [LocalApic(i, self.bus, self.clock, bsp=i == 0) for i in range(cpus)]
        for apic in self.apics:
            self.bus.add_apic(apic)
            apic.write_register(0xF0, 0x1FF)
        self.ioapic = IoApic(self.bus)
        self.bus.add_ioapic(self.ioapic)
        self.mmio = AddressSpace("memory")
        self.mmio.add_region(self.ioapic.region)

    def reg(self, index, value=None):
        self.mmio.write(BASE, 4, index)
        if value is None:
            return self.mmio.read(BASE + 0x10, 4)
        self.mmio.write(BASE + 0x10, 4, value)

    def route(self, pin, low, dest=0):
        self.reg(0x10 + 2 * pin + 1, dest << 24)
        self.reg(0x10 + 2 * pin, low)

    def entry(self, pin):
        return self.reg(0x10 + 2 * pin) | self.reg(0x11 + 2 * pin) << 32


def test_identification_registers_and_reset_state():
    b = Board()
    assert b.reg(0x01) == 0x00170020
    assert b.reg(0x00) == 0 and b.reg(0x02) == 0
    b.reg(0x00, 0xFF000000)
    assert b.reg(0x00) == 0x0F000000 and b.reg(0x02) == 0x0F000000
    b.reg(0x01, 0)
    assert b.reg(0x01) == 0x00170020
    assert all(b.entry(pin) == 0x10000 for pin in range(24))
    assert b.reg(0x40) == 0                             # past the table
    b.mmio.write(BASE, 4, 0x1234)
    assert b.mmio.read(BASE, 4) == 0x34 and b.mmio.read(BASE, 1) == 0x34
    assert b.mmio.read(BASE + 0x10, 2) == 0             # IOWIN takes 32-bit accesses only
    b.mmio.write(BASE + 0x100, 4, 0x01)                 # the registers repeat every 256 bytes
    assert b.mmio.read(BASE + 0x110, 4) == 0x00170020


def test_redirection_entries_keep_their_read_only_bits():
    b = Board()
    b.route(3, 0xFFFFFFFF, dest=0xAB)
    assert b.entry(3) == (0xAB << 56) | (0xFFFFFFFF & ~(1 << 12 | 1 << 14))
    b.reg(0x10 + 6, 0x1A030)                            # level, masked, vector 0x30
    b.ioapic.set_irq(3, 1)
    b.reg(0x10 + 6, 0x0A030)                            # unmasking delivers: remote IRR
    assert b.entry(3) & (1 << 14)
    b.reg(0x10 + 6, 0x0A030 & ~(1 << 14))               # software cannot clear it
    assert b.entry(3) & (1 << 14)
    b.reg(0x10 + 6, 0x00030)                            # edge-triggered: no remote IRR
    assert not b.entry(3) & (1 << 14)


def test_edge_pin_delivers_on_rising_edges_and_loses_them_while_masked():
    b = Board()
    b.route(4, 0x10031, dest=1)
    b.ioapic.set_irq(4, 1)
    b.ioapic.set_irq(4, 0)
    b.route(4, 0x00031, dest=1)
    assert b.apics[1].vectors(IRR) == []
    b.ioapic.set_irq(4, 1)
    b.ioapic.set_irq(4, 1)                              # no new edge
    assert b.apics[1].vectors(IRR) == [0x31] and b.apics[1].vectors(TMR) == []
    assert b.apics[1].acknowledge() == 0x31
    b.ioapic.set_irq(4, 0)
    b.ioapic.set_irq(4, 1)
    assert b.apics[1].vectors(IRR) == [0x31] and b.apics[0].vectors(IRR) == []


def test_level_pin_remote_irr_and_eoi_broadcast():
    b = Board()
    b.route(9, 0x08041, dest=0)                         # level, vector 0x41, APIC 0
    b.ioapic.set_irq(9, 1)
    apic = b.apics[0]
    assert apic.vectors(IRR) == [0x41] and apic.vectors(TMR) == [0x41]
    assert apic.acknowledge() == 0x41
    b.ioapic.set_irq(9, 1)
    assert apic.vectors(IRR) == []                      # remote IRR holds it back
    apic.write_register(0xB0, 0)                        # EOI: still asserted, delivered again
    assert apic.vectors(IRR) == [0x41] and b.entry(9) & (1 << 14)
    assert apic.acknowledge() == 0x41
    b.ioapic.set_irq(9, 0)
    apic.write_register(0xB0, 0)
    assert apic.vectors(IRR) == [] and not b.entry(9) & (1 << 14)


def test_eoi_register():
    b = Board()
    b.route(10, 0x08042, dest=0)
    b.ioapic.set_irq(10, 1)
    b.apics[0].acknowledge()
    b.mmio.write(BASE + 0x40, 4, 0x43)                  # another vector: nothing
    assert b.entry(10) & (1 << 14)
    b.mmio.write(BASE + 0x40, 4, 0x42)
    assert b.apics[0].vectors(IRR) == [0x42]            # still asserted: delivered again


def test_logical_destination_nmi_and_extint():
    b = Board()
    b.apics[1].write_register(0xD0, 0x02000000)
    b.route(5, 0x00850, dest=0x02)                      # logical
    b.ioapic.set_irq(5, 1)
    assert b.apics[1].vectors(IRR) == [0x50]
    events = []
    b.apics[0].cpu = type("Cpu", (), {"nmi": lambda self: events.append("nmi"), "poke": lambda self: None,
                                      "extint": lambda self: events.append("extint")})()
    b.route(6, 0x00400, dest=0)
    b.route(7, 0x00700, dest=0)
    b.ioapic.set_irq(6, 1)
    b.ioapic.set_irq(7, 1)
    assert events == ["nmi", "extint"]


def test_save_and_load_state():
    b = Board()
    b.route(9, 0x08041, dest=0)
    b.ioapic.set_irq(9, 1)
    state = b.ioapic.save_state()
    c = Board()
    c.ioapic.load_state(state)
    assert c.ioapic.save_state() == state and c.entry(9) & (1 << 14)
    assert c.ioapic.state_dump()["entries"][9] == b.entry(9)


def test_isa_lines_reach_the_8259s_and_the_ioapic_with_irq0_on_pin_2():
    b = Board()
    line = InterruptLine(threading.RLock(), b.ioapic)
    b.route(2, 0x00060, dest=0)
    b.route(0, 0x00061, dest=0)
    line.set_irq(0, 1)
    assert b.apics[0].vectors(IRR) == [0x60]
    assert line.pic.master.irr & 1
    b.route(16, 0x00062, dest=0)
    line.irq_setter(16)(1)
    assert b.apics[0].vectors(IRR) == [0x60, 0x62]
