"""QEMU's pc-testdev, driven as kvm-unit-tests drive it."""

import pytest

from devicemodel.address_space import AddressSpace
from devicemodel.devices.pc_testdev import PcTestdev


@pytest.fixture
def dev():
    irqs, flushes = [], []
    dev = PcTestdev(set_irq=lambda line, level: irqs.append((line, level)),
                    flush_page=flushes.append)
    dev.irqs, dev.flushes = irqs, flushes
    return dev


@pytest.fixture
def io(dev):
    space = AddressSpace("io", 0x10000)
    for region in dev.regions:
        space.add_region(region)
    return space


@pytest.fixture
def mem(dev):
    space = AddressSpace("memory", 1 << 64)
    space.add_region(dev.mmio_region)
    return space


def test_string_io_leaves_the_last_byte_in_the_port(io):
    for byte in b"IO test":            # rep outsb to 0xe0, as kvm-unit-tests' emulator test
        io.write(0xE0, 1, byte)
    assert io.read(0xE0, 1) == ord("t")


def test_ioport_is_one_register_in_byte_lanes(io):
    io.write(0xE0, 4, 0x44332211)
    assert io.read(0xE0, 4) == 0x44332211
    assert io.read(0xE2, 2) == 0x4433
    assert io.read(0xE3, 1) == 0x44
    io.write(0xE1, 1, 0xAA)
    assert io.read(0xE0, 4) == 0x4433AA11
    io.write(0xE2, 2, 0xBBCC)
    assert io.read(0xE8, 4) == 0xBBCCAA11   # 0xe8 is the same register, byte by byte
    io.write(0xE8, 4, 0x01020304)
    assert io.read(0xE0, 4) == 0x01020304
    assert io.read(0xE9, 2) == 0x0203


def test_flush_page_takes_a_dword_address(io, dev):
    io.write(0xE4, 4, 0x12345678)
    assert dev.flushes == [0x12345000]
    io.write(0xE4, 1, 0x12)                 # only 32-bit accesses are valid
    io.write(0xE4, 2, 0x1234)
    assert dev.flushes == [0x12345000]
    assert io.read(0xE4, 4) == 0


def test_irq_line_ports(io, dev):
    io.write(0x2000 + 10, 1, 1)
    io.write(0x2000 + 10, 1, 0)
    io.write(0x2000 + 23, 1, 0x80)          # any non-zero value raises
    assert dev.irqs == [(10, 1), (10, 0), (23, 1)]
    io.write(0x2004, 2, 0x0100)             # a word is two byte writes: IRQ 4 low, 5 high
    assert dev.irqs[-2:] == [(4, 0), (5, 1)]
    assert io.read(0x2004, 1) == 0


def test_iomem_is_64k_of_little_endian_memory(mem):
    mem.write(0xFF000000, 4, 0xDEADBEEF)
    assert mem.read(0xFF000000, 1) == 0xEF
    assert mem.read(0xFF000002, 2) == 0xDEAD
    mem.write(0xFF00FFF8, 8, 0x0102030405060708)
    assert mem.read(0xFF00FFF8, 8) == 0x0102030405060708
    assert mem.read(0xFF00FFFF, 1) == 0x01
    assert mem.read(0xFF010000, 1) == 0xFF  # past the end: unassigned


def test_save_and_load(io, mem, dev):
    io.write(0xE0, 4, 0xCAFEF00D)
    mem.write(0xFF001234, 2, 0x5A5A)
    state = dev.save_state()
    copy = PcTestdev()
    copy.load_state(state)
    assert copy.save_state() == state
    space = AddressSpace("memory", 1 << 64)
    space.add_region(copy.mmio_region)
    assert space.read(0xFF001234, 2) == 0x5A5A
