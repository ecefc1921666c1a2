"""The 8259A pair, programmed through port I/O the way Linux and firmware do."""

import pytest

from devicemodel.address_space import AddressSpace
from devicemodel.devices.i8259 import PicPair
from irq_line import Line


@pytest.fixture
def intr():
    return Line()


@pytest.fixture
def pic(intr):
    return PicPair(int_output=intr)


@pytest.fixture
def io(pic):
    space = AddressSpace("io", 0x10000)
    for region in pic.regions:
        space.add_region(region)
    return space


def outb(io, port, value):
    io.write(port, 1, value)


def inb(io, port):
    return io.read(port, 1)


def init_pics(io, master_icw4=0x01, slave_icw4=0x01):
    """Linux's init_8259A: vectors 0x20 and 0x28, slave on IR2, 8086 mode, all unmasked."""
    outb(io, 0x20, 0x11)          # ICW1: edge, cascade, ICW4 follows
    outb(io, 0x21, 0x20)          # ICW2: vector base
    outb(io, 0x21, 0x04)          # ICW3: slave on IR2
    outb(io, 0x21, master_icw4)   # ICW4
    outb(io, 0xA0, 0x11)
    outb(io, 0xA1, 0x28)
    outb(io, 0xA1, 0x02)          # ICW3: slave identity 2
    outb(io, 0xA1, slave_icw4)
    outb(io, 0x21, 0x00)
    outb(io, 0xA1, 0x00)


def eoi(io, port=0x20):
    outb(io, port, 0x20)          # OCW2: non-specific EOI


def read_isr(io, port=0x20):
    outb(io, port, 0x0B)          # OCW3: read ISR
    value = inb(io, port)
    outb(io, port, 0x0A)          # back to IRR
    return value


def test_reset_state(io, pic):
    assert inb(io, 0x20) == 0     # IRR
    assert inb(io, 0x21) == 0     # IMR
    assert inb(io, 0xA1) == 0
    assert read_isr(io) == 0
    assert not pic.has_interrupt()


def test_icw_sequence_sets_vector_bases_and_then_the_data_port_is_the_imr(io, pic):
    init_pics(io)
    assert pic.master.irq_base == 0x20 and pic.slave.irq_base == 0x28
    outb(io, 0x21, 0xFB)
    outb(io, 0xA1, 0xFF)
    assert inb(io, 0x21) == 0xFB and inb(io, 0xA1) == 0xFF


def test_icw2_keeps_only_the_vector_bits(io, pic):
    outb(io, 0x20, 0x11)
    outb(io, 0x21, 0x37)
    outb(io, 0x21, 0x04)
    outb(io, 0x21, 0x01)
    pic.set_irq(1, 1)
    assert pic.acknowledge() == 0x31


def test_icw_sequence_without_icw4_and_in_single_mode(io, pic):
    outb(io, 0x20, 0x10)          # ICW1: cascade, no ICW4
    outb(io, 0x21, 0x40)
    outb(io, 0x21, 0x04)          # ICW3; initialization ends here
    outb(io, 0x21, 0x5A)          # so this is OCW1
    assert inb(io, 0x21) == 0x5A
    outb(io, 0x20, 0x13)          # ICW1: single, ICW4 follows: no ICW3
    outb(io, 0x21, 0x48)
    outb(io, 0x21, 0x03)          # ICW4: auto-EOI
    outb(io, 0x21, 0xA5)          # OCW1
    assert inb(io, 0x21) == 0xA5
    assert pic.master.auto_eoi


def test_icw1_clears_imr_and_isr_but_keeps_elcr(io, pic):
    init_pics(io)
    outb(io, 0x4D1, 0x08)
    outb(io, 0x21, 0xFF)
    outb(io, 0x21, 0x00)
    pic.set_irq(0, 1)
    pic.acknowledge()
    assert read_isr(io) == 0x01
    outb(io, 0x20, 0x11)
    assert pic.master.imr == 0 and pic.master.isr == 0
    assert inb(io, 0x4D1) == 0x08


def test_edge_request_interrupt_acknowledge_and_eoi(io, pic, intr):
    init_pics(io)
    pic.set_irq(0, 1)
    assert pic.has_interrupt() and intr.level == 1
    assert inb(io, 0x20) == 0x01          # IRR
    assert pic.acknowledge() == 0x20
    assert intr.level == 0
    assert inb(io, 0x20) == 0x00          # the edge request is consumed
    assert read_isr(io) == 0x01
    eoi(io)
    assert read_isr(io) == 0x00
    assert not pic.has_interrupt()


def test_an_edge_is_latched_and_a_held_line_requests_only_once(io, pic):
    init_pics(io)
    pic.set_irq(4, 1)
    pic.set_irq(4, 0)                     # a pulse: still requested
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x24
    eoi(io)
    pic.set_irq(4, 1)
    assert pic.acknowledge() == 0x24
    eoi(io)
    pic.set_irq(4, 1)                     # no new rising edge
    assert not pic.has_interrupt()


def test_fixed_priority_and_nesting(io, pic):
    init_pics(io)
    pic.set_irq(3, 1)
    pic.set_irq(1, 1)
    assert pic.acknowledge() == 0x21      # IR1 beats IR3
    assert not pic.has_interrupt()        # IR3 waits while IR1 is in service
    pic.set_irq(0, 1)
    assert pic.has_interrupt()            # IR0 nests over IR1
    assert pic.acknowledge() == 0x20
    assert read_isr(io) == 0x03
    eoi(io)                               # ends the highest in service: IR0
    assert read_isr(io) == 0x02
    assert not pic.has_interrupt()
    eoi(io)
    assert pic.acknowledge() == 0x23


def test_cascaded_slave_requests_take_the_priority_of_ir2(io, pic):
    init_pics(io)
    pic.set_irq(3, 1)
    pic.set_irq(8, 1)
    assert pic.pending_irq() == 8
    assert pic.acknowledge() == 0x28      # IR2 (the slave) beats IR3
    assert read_isr(io, 0x20) == 0x04 and read_isr(io, 0xA0) == 0x01
    pic.set_irq(12, 1)
    assert not pic.has_interrupt()        # slave IR4 is below slave IR0, in service
    pic.set_irq(1, 1)
    assert pic.acknowledge() == 0x21      # master IR1 beats the cascade
    eoi(io)                               # master: IR1 done
    eoi(io, 0xA0)                         # slave: IRQ 8 done ...
    eoi(io)                               # ... then the master's cascade level
    assert pic.acknowledge() == 0x2C      # IRQ 12 before IRQ 3: IR2 beats IR3
    eoi(io, 0xA0)
    eoi(io)
    assert pic.acknowledge() == 0x23


def test_masked_requests_wait_in_irr(io, pic):
    init_pics(io)
    outb(io, 0x21, 0x01)
    pic.set_irq(0, 1)
    assert not pic.has_interrupt()
    assert inb(io, 0x20) == 0x01
    outb(io, 0x21, 0x00)
    assert pic.acknowledge() == 0x20
    eoi(io)
    outb(io, 0xA1, 0x10)                  # mask IRQ 12 on the slave
    pic.set_irq(12, 1)
    assert not pic.has_interrupt()
    outb(io, 0xA1, 0x00)
    assert pic.has_interrupt()


def test_specific_eoi(io, pic):
    init_pics(io)
    pic.set_irq(5, 1)
    pic.acknowledge()
    pic.set_irq(3, 1)
    pic.acknowledge()                     # IR3 nests over IR5
    outb(io, 0x20, 0x60 | 5)              # end IR5, not the highest in service
    assert read_isr(io) == 0x08


def test_rotate_on_nonspecific_eoi_makes_the_served_level_the_lowest(io, pic):
    init_pics(io)
    pic.set_irq(0, 1)
    assert pic.acknowledge() == 0x20
    outb(io, 0x20, 0xA0)                  # rotate on non-specific EOI
    pic.set_irq(0, 0)
    pic.set_irq(0, 1)
    pic.set_irq(5, 1)
    assert pic.acknowledge() == 0x25      # IR0 is now the lowest priority
    outb(io, 0x20, 0xA0)                  # IR5 lowest: IR6 highest, IR0 after IR7
    assert pic.acknowledge() == 0x20


def test_set_priority_and_rotate_on_specific_eoi(io, pic):
    init_pics(io)
    outb(io, 0x20, 0xC0 | 4)              # IR4 lowest, so IR5 highest
    pic.set_irq(1, 1)
    pic.set_irq(6, 1)
    pic.set_irq(4, 1)
    assert pic.acknowledge() == 0x26
    outb(io, 0x20, 0xE0 | 6)              # end IR6 and make it the lowest: IR7 highest
    assert pic.acknowledge() == 0x21
    outb(io, 0x20, 0x60 | 1)
    assert pic.acknowledge() == 0x24


def test_auto_eoi_leaves_isr_clear_and_can_rotate(io, pic):
    init_pics(io, master_icw4=0x03)
    pic.set_irq(1, 1)
    assert pic.acknowledge() == 0x21
    assert read_isr(io) == 0x00
    pic.set_irq(3, 1)
    assert pic.acknowledge() == 0x23      # nothing in service blocks it
    outb(io, 0x20, 0x80)                  # rotate in auto-EOI mode
    pic.set_irq(1, 0)
    pic.set_irq(3, 0)
    pic.set_irq(3, 1)
    assert pic.acknowledge() == 0x23      # IR3 served: it becomes the lowest
    pic.set_irq(3, 0)
    pic.set_irq(3, 1)
    pic.set_irq(4, 1)
    assert pic.acknowledge() == 0x24      # IR4 comes right after IR3: highest now
    outb(io, 0x20, 0x00)                  # rotation in auto-EOI mode off again
    assert pic.master.rotate_on_auto_eoi is False


def test_special_mask_mode_lets_lower_levels_through(io, pic):
    init_pics(io)
    pic.set_irq(3, 1)
    assert pic.acknowledge() == 0x23
    outb(io, 0x21, 0x08)                  # mask IR3 while it is in service
    pic.set_irq(5, 1)
    assert not pic.has_interrupt()        # normally IR3 in service blocks IR5
    outb(io, 0x20, 0x68)                  # OCW3: set special mask mode
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x25
    outb(io, 0x20, 0x48)                  # reset special mask mode
    assert pic.master.special_mask is False


def test_poll_mode_acknowledges_through_a_port_read(io, pic, intr):
    init_pics(io)
    outb(io, 0x20, 0x0C)                  # OCW3: poll
    assert inb(io, 0x20) == 0x00          # nothing requested
    pic.set_irq(6, 1)
    pic.set_irq(7, 1)
    outb(io, 0x20, 0x0C)
    assert inb(io, 0x21) == 0x86          # either port answers a poll
    assert read_isr(io) == 0x40
    assert inb(io, 0x21) == 0x00          # the poll is over: this is IMR again


def test_ocw3_selects_irr_or_isr_for_reads(io, pic):
    init_pics(io)
    outb(io, 0x21, 0x02)
    pic.set_irq(1, 1)
    pic.set_irq(0, 1)
    pic.acknowledge()
    outb(io, 0x20, 0x0A)
    assert inb(io, 0x20) == 0x02          # IRR: the masked IR1
    outb(io, 0x20, 0x0B)
    assert inb(io, 0x20) == 0x01          # ISR: IR0
    assert inb(io, 0x20) == 0x01          # the selection stays
    outb(io, 0x20, 0x08)                  # OCW3 without RR: no change
    assert inb(io, 0x20) == 0x01


def test_elcr_masks_keep_system_lines_edge_triggered(io):
    outb(io, 0x4D0, 0xFF)
    outb(io, 0x4D1, 0xFF)
    assert inb(io, 0x4D0) == 0xF8
    assert inb(io, 0x4D1) == 0xDE
    io.write(0x4D0, 2, 0x0E20)            # one 16-bit access reaches both registers
    assert io.read(0x4D0, 2) == 0x0E20


def test_level_triggered_line_requests_while_high(io, pic):
    init_pics(io)
    outb(io, 0x4D1, 0x04)                 # IRQ 10 level-triggered
    pic.set_irq(10, 1)
    assert pic.acknowledge() == 0x2A
    assert pic.slave.irr == 0x04          # the line is still high
    eoi(io, 0xA0)
    eoi(io)
    assert pic.has_interrupt()            # so it requests again after EOI
    assert pic.acknowledge() == 0x2A
    eoi(io, 0xA0)
    eoi(io)
    pic.set_irq(10, 0)
    assert pic.slave.irr == 0
    assert pic.slave.output == 0


def test_icw1_ltim_makes_every_line_level_triggered(io, pic):
    outb(io, 0x20, 0x19)
    outb(io, 0x21, 0x20)
    outb(io, 0x21, 0x04)
    outb(io, 0x21, 0x01)
    pic.set_irq(0, 1)
    pic.set_irq(0, 0)
    assert not pic.has_interrupt()


def test_spurious_irq7_when_the_request_is_masked_before_inta(io, pic, intr):
    init_pics(io)
    pic.set_irq(4, 1)
    assert intr.level == 1
    outb(io, 0x21, 0x10)                  # masked after INTR rose, before INTA
    assert intr.level == 0
    assert pic.acknowledge() == 0x27
    assert read_isr(io) == 0x00           # a spurious interrupt is not in service


def test_spurious_irq15_when_a_slave_level_request_vanishes(io, pic):
    init_pics(io)
    outb(io, 0x4D1, 0x08)                 # IRQ 11 level-triggered
    pic.set_irq(11, 1)
    assert pic.has_interrupt()
    pic.set_irq(11, 0)                    # gone before INTA; the master latched its IR2 edge
    assert pic.acknowledge() == 0x2F
    assert read_isr(io, 0xA0) == 0x00
    assert read_isr(io, 0x20) == 0x04     # the master did serve its cascade input


def test_special_fully_nested_mode_lets_a_higher_slave_request_nest(io, pic):
    init_pics(io, master_icw4=0x11)
    pic.set_irq(10, 1)
    assert pic.acknowledge() == 0x2A      # master IR2 in service
    pic.set_irq(8, 1)                     # higher than IRQ 10 on the slave
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x28


def test_without_special_fully_nested_mode_the_cascade_blocks_the_slave(io, pic):
    init_pics(io)
    pic.set_irq(10, 1)
    pic.acknowledge()
    pic.set_irq(8, 1)
    assert not pic.has_interrupt()
    eoi(io)                               # the master's EOI lets the slave through
    assert pic.acknowledge() == 0x28


def test_set_irq_checks_the_line(pic):
    with pytest.raises(ValueError):
        pic.set_irq(16, 1)


def test_save_and_load_state(io, pic):
    init_pics(io)
    outb(io, 0x4D1, 0x08)
    outb(io, 0x21, 0x10)
    pic.set_irq(3, 1)
    pic.set_irq(11, 1)
    pic.acknowledge()
    state = pic.save_state()

    copy_intr = Line()
    copy = PicPair(int_output=copy_intr)
    copy.load_state(state)
    assert copy.save_state() == state
    assert copy.has_interrupt() == pic.has_interrupt()
    assert copy.acknowledge() == pic.acknowledge()
