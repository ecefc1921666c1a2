"""The DMA view of guest memory: the PC layout (low RAM at 0, the rest at 4 GiB), ranges
checked against RAM (the hole, past the end, negative, wrapping past 2^64), and writes
reported to the hypervisor, which forgets decoded code and logs dirty pages."""

import mmap

import pytest
from hypothesis import given, strategies as st

from devicemodel.firmware_tables.e820 import FOUR_GIB, SPLIT_LOW_TOP, SPLIT_THRESHOLD, PcMemoryLayout
from devicemodel.guest_memory import DmaError, GuestMemory

MiB = 1 << 20


def test_low_ram_reads_and_writes():
    ram = bytearray(4 * MiB)
    writes = []
    mem = GuestMemory(ram, on_write=lambda gpa, size: writes.append((gpa, size)))
    mem.write(0x1234, b"hello")
    assert ram[0x1234:0x1239] == b"hello" and mem.read(0x1234, 5) == b"hello"
    mem.write_int(0x2000, 4, 0xDEADBEEF)
    assert mem.read_int(0x2000, 2) == 0xBEEF
    assert writes == [(0x1234, 5), (0x2000, 4)]
    mem.write(4 * MiB - 1, b"x")
    mem.write(0x10, b"")                 # nothing written, nothing reported
    assert writes[-1] == (4 * MiB - 1, 1)


@pytest.mark.parametrize("gpa, size", [
    (4 * MiB, 1),                        # just past the end
    (4 * MiB - 1, 2),                    # straddles the end
    (-1, 1),
    ((1 << 64) - 1, 2),                  # wraps past 2^64
    ((1 << 64) - 16, 1 << 62),
    (0, -1),
    (FOUR_GIB, 1),                       # no RAM above 4 GiB with 4 MiB of RAM
    (0xFEB00000, 4),                     # MMIO
])
def test_ranges_that_are_not_ram(gpa, size):
    ram = bytearray(4 * MiB)
    mem = GuestMemory(ram, on_write=lambda *a: pytest.fail("reported a failed write"))
    with pytest.raises(DmaError):
        mem.read(gpa, size)
    with pytest.raises(DmaError):
        mem.read_int(gpa, size)
    if 0 < size <= 16:
        with pytest.raises(DmaError):
            mem.write(gpa, b"\xff" * size)
    assert ram == bytearray(4 * MiB)


@pytest.fixture(scope="module")
def split_ram():
    """A RAM buffer big enough to be split at 3 GiB (its pages are never touched)."""
    size = SPLIT_THRESHOLD + 64 * MiB
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0x4000)
    ram = mmap.mmap(-1, size, flags=flags)
    yield ram
    ram.close()


def test_ram_above_4g_follows_the_pc_split(split_ram):
    layout = PcMemoryLayout(len(split_ram))
    mem = GuestMemory(split_ram, layout)
    assert layout.low_top == SPLIT_LOW_TOP
    high = len(split_ram) - SPLIT_LOW_TOP
    mem.write(FOUR_GIB + 0x100, b"above")
    assert split_ram[SPLIT_LOW_TOP + 0x100:SPLIT_LOW_TOP + 0x105] == b"above"
    mem.write(SPLIT_LOW_TOP - 5, b"below")
    assert split_ram[SPLIT_LOW_TOP - 5:SPLIT_LOW_TOP] == b"below"
    for gpa, size in ((SPLIT_LOW_TOP - 1, 2), (SPLIT_LOW_TOP, 1), (FOUR_GIB - 1, 2),
                      (FOUR_GIB + high - 1, 2), (FOUR_GIB + high, 1)):
        with pytest.raises(DmaError):
            mem.read(gpa, size)


@given(gpa=st.integers(min_value=-(1 << 20), max_value=(1 << 64) + (1 << 20)),
       size=st.integers(min_value=0, max_value=1 << 24))
def test_offset_is_inside_the_buffer_or_refused(gpa, size):
    mem = GuestMemory(bytearray(2 * MiB))
    try:
        offset = mem.offset(gpa, size)
    except DmaError:
        assert gpa < 0 or gpa + size > 2 * MiB
    else:
        assert 0 <= offset and offset + size <= 2 * MiB and offset == gpa


def test_writes_invalidate_code_and_log_dirty_pages():
    from kvm import Kvm
    from kvm.constants import KVM_MEM_LOG_DIRTY_PAGES
    from kvm.dirty_log import dirty_pages

    ram = mmap.mmap(-1, 2 * MiB)
    vm = Kvm().create_vm()
    vm.set_user_memory_region(slot=0, guest_phys_addr=0, memory_size=2 * MiB, userspace_addr=ram,
                              flags=KVM_MEM_LOG_DIRTY_PAGES)
    invalidated = []
    real = vm.hostmem.invalidate_code
    vm.hostmem.invalidate_code = lambda hpa, size: (invalidated.append(size), real(hpa, size))
    mem = GuestMemory(ram, on_write=vm.guest_memory_written)
    vm.get_dirty_log(0)
    mem.write(0x3FFE, b"abcd")             # pages 3 and 4
    mem.write(0x10000, b"z")
    assert dirty_pages(vm.get_dirty_log(0)) == [3, 4, 0x10]
    assert invalidated == [4, 1]
    assert dirty_pages(vm.get_dirty_log(0)) == []
