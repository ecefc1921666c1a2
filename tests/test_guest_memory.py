"""Guest RAM as DMA sees it: below the PCI hole at 0, the rest at 4 GiB."""

import mmap

import pytest

from devicemodel.firmware_tables.e820 import PcMemoryLayout
from devicemodel.guest_memory import GuestMemory, GuestMemoryError

GiB = 1 << 30


@pytest.fixture
def memory():
    size = 4 * GiB           # 3 GiB below the hole, 1 GiB at 4 GiB
    ram = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0x4000))
    written = []
    return ram, GuestMemory(ram, PcMemoryLayout(size), written=lambda gpa, n: written.append((gpa, n))), written


def test_low_and_high_ram(memory):
    ram, mem, written = memory
    mem.write(0x1000, b"low")
    mem.write(4 * GiB + 0x10, b"high")
    assert ram[0x1000:0x1003] == b"low"
    assert ram[3 * GiB + 0x10:3 * GiB + 0x14] == b"high"
    assert mem.read(4 * GiB + 0x10, 4) == b"high"
    assert written == [(0x1000, 3), (4 * GiB + 0x10, 4)]


@pytest.mark.parametrize("gpa, size", [(3 * GiB - 2, 4), (3 * GiB, 1), (0xFEC00000, 4), (5 * GiB - 1, 2), (-1, 1)])
def test_outside_ram(memory, gpa, size):
    _, mem, written = memory
    with pytest.raises(GuestMemoryError):
        mem.read(gpa, size)
    with pytest.raises(GuestMemoryError):
        mem.write(gpa, bytes(size))
    assert written == []
