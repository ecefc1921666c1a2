"""The QEMU-like address spaces: dispatch, unassigned space, access sizes, overlaps."""

import pytest

from devicemodel.address_space import AddressSpace, Region
from devicemodel.errors import AddressSpaceError, PyhvError


class Recorder:
    """A device whose registers read as their offset + 0x10 and record writes."""

    def __init__(self):
        self.writes = []
        self.reads = []

    def read(self, offset, size):
        self.reads.append((offset, size))
        return 0x10 + offset

    def write(self, offset, size, value):
        self.writes.append((offset, size, value))


def region(base, size, name="dev", dev=None, **kw):
    dev = dev or Recorder()
    return Region(base=base, size=size, name=name, read=dev.read, write=dev.write, owner=dev, **kw)


def test_dispatch_uses_offsets_from_the_region_base():
    space = AddressSpace("io", 0x10000)
    dev = Recorder()
    space.add_region(region(0x3F8, 8, dev=dev))
    assert space.read(0x3FA, 1) == 0x12
    space.write(0x3FF, 1, 0xAB)
    assert dev.reads == [(2, 1)]
    assert dev.writes == [(7, 1, 0xAB)]
    assert space.unassigned_reads == space.unassigned_writes == 0


def test_unassigned_reads_are_all_ones_and_writes_are_dropped_and_both_counted():
    space = AddressSpace("io", 0x10000)
    dev = Recorder()
    space.add_region(region(0x100, 4, dev=dev))
    assert space.read(0x80, 1) == 0xFF
    assert space.read(0x80, 2) == 0xFFFF
    assert space.read(0x104, 4) == 0xFFFFFFFF
    space.write(0xFF, 1, 1)
    space.write(0x104, 2, 1)
    assert (space.unassigned_reads, space.unassigned_writes) == (3, 2)
    assert dev.reads == [] and dev.writes == []


def test_mmio_space_with_64_bit_access():
    space = AddressSpace("memory")
    dev = Recorder()
    space.add_region(region(0xFEE00000, 0x1000, dev=dev, sizes=(1, 2, 4, 8)))
    assert space.read(0xFEE00030, 8) == 0x40
    assert space.read(0xFFFFFFFFFFFFFFF8, 8) == (1 << 64) - 1


def test_lookup_among_many_regions():
    space = AddressSpace("io", 0x10000)
    devs = {}
    for base in list(range(0x1800, 0x2000, 0x10)) + list(range(0x1000, 0x1800, 0x10)):  # out of order
        devs[base] = Recorder()
        space.add_region(region(base, 8, name=f"d{base:x}", dev=devs[base]))
    assert [r.base for r in space.regions] == sorted(devs)
    space.write(0x1A37, 1, 5)
    assert devs[0x1A30].writes == [(7, 1, 5)]
    space.write(0x1A38, 1, 5)  # the gap after it
    assert space.unassigned_writes == 1
    assert space.find(0x1000).name == "d1000"
    assert space.find(0xFFF) is None


def test_overlapping_regions_are_rejected_with_a_clear_error():
    space = AddressSpace("io", 0x10000)
    space.add_region(region(0x3F8, 8, name="serial0"))
    for base, size in [(0x3F8, 1), (0x3F0, 9), (0x3FF, 2), (0x3F0, 0x20), (0x3FA, 2)]:
        with pytest.raises(AddressSpaceError) as info:
            space.add_region(region(base, size, name="debug"))
        message = str(info.value)
        assert "'debug'" in message and "'serial0' [0x3f8..0x3ff]" in message and "overlaps" in message
    space.add_region(region(0x3F0, 8, name="below"))
    space.add_region(region(0x400, 8, name="above"))
    assert len(space.regions) == 3


def test_region_must_fit_and_be_non_empty():
    space = AddressSpace("io", 0x10000)
    with pytest.raises(PyhvError, match="does not fit"):
        space.add_region(region(0xFFFF, 2))
    with pytest.raises(PyhvError, match="size 0"):
        space.add_region(region(0x10, 0))


def test_remove_region():
    space = AddressSpace("io", 0x10000)
    r = region(0x60, 1)
    space.add_region(r)
    space.remove_region(r)
    assert space.read(0x60, 1) == 0xFF
    space.add_region(region(0x60, 1))


def test_invalid_access_size_behaves_as_unassigned():
    space = AddressSpace("io", 0x10000)
    dev = Recorder()
    space.add_region(region(0x70, 4, dev=dev, sizes=(1,)))
    assert space.read(0x70, 2) == 0xFFFF
    space.write(0x70, 4, 0)
    assert dev.reads == [] and dev.writes == []
    assert space.invalid_accesses == 2
    assert space.unassigned_reads == 1 and space.unassigned_writes == 1


def test_access_across_a_region_end_is_split_into_bytes():
    space = AddressSpace("io", 0x10000)
    dev = Recorder()
    space.add_region(region(0x501, 2, dev=dev))       # isa-debug-exit's default ports
    space.write(0x501, 4, 0x44332211)                 # outl: two bytes in, two bytes unassigned
    assert dev.writes == [(0, 1, 0x11), (1, 1, 0x22)]
    assert space.unassigned_writes == 2
    assert space.read(0x502, 2) == 0xFF11             # one byte of the device, one unassigned
    assert space.read(0x4FF, 4) == 0x1110FFFF         # from unassigned space into the region
    assert dev.reads == [(1, 1), (0, 1), (1, 1)]


def test_access_spanning_two_regions():
    space = AddressSpace("io", 0x10000)
    a, b = Recorder(), Recorder()
    space.add_region(region(0x10, 2, name="a", dev=a))
    space.add_region(region(0x12, 2, name="b", dev=b))
    space.write(0x11, 2, 0xBBAA)
    assert a.writes == [(1, 1, 0xAA)] and b.writes == [(0, 1, 0xBB)]
    assert space.unassigned_writes == 0


def test_wide_access_is_split_into_implemented_size_little_endian():
    space = AddressSpace("io", 0x10000)
    dev = Recorder()
    space.add_region(region(0x3F8, 8, dev=dev, sizes=(1, 2, 4), impl_size=1))
    space.write(0x3F8, 2, 0x4241)
    assert dev.writes == [(0, 1, 0x41), (1, 1, 0x42)]
    assert space.read(0x3FC, 4) == 0x17161514


def test_values_are_truncated_to_the_access_size():
    space = AddressSpace("io", 0x10000)
    dev = Recorder()
    space.add_region(region(0x80, 4, dev=dev))
    space.write(0x80, 1, 0x1234)
    assert dev.writes == [(0, 1, 0x34)]


def test_missing_callback_acts_as_unassigned():
    space = AddressSpace("io", 0x10000)
    space.add_region(Region(base=0x10, size=1, name="wo", write=lambda o, s, v: None))
    assert space.read(0x10, 1) == 0xFF
    assert space.unassigned_reads == 1


# --- overlapping regions with priorities (QEMU's add_subregion_overlap) -------------------

def test_overlap_must_be_asked_for_by_one_of_the_two():
    space = AddressSpace("io", 0x10000)
    space.add_region(region(0xE8, 4, name="pc-testdev-ioport-byte"))
    with pytest.raises(AddressSpaceError):
        space.add_region(region(0xE9, 1, name="isa-debugcon"))
    space.add_region(region(0xE9, 1, name="isa-debugcon"), overlap=True)
    with pytest.raises(AddressSpaceError, match="'pc-testdev-ioport-byte'"):
        space.add_region(region(0xEA, 1, name="later"))       # meets the one that did not ask
    alone = AddressSpace("io", 0x10000)
    alone.add_region(region(0xE9, 1, name="isa-debugcon"), overlap=True)
    alone.add_region(region(0xE8, 4, name="pc-testdev-ioport-byte"))   # the other one asked
    assert alone.find(0xE9).name == "pc-testdev-ioport-byte"            # and was added last


def test_equal_priority_the_region_added_last_wins():
    space = AddressSpace("io", 0x10000)
    testdev, debugcon = Recorder(), Recorder()
    space.add_region(region(0xE8, 4, name="pc-testdev-ioport-byte", dev=testdev))
    space.add_region(region(0xE9, 1, name="isa-debugcon", dev=debugcon), overlap=True)
    assert space.find(0xE9).name == "isa-debugcon"
    assert space.find(0xE8).name == space.find(0xEA).name == "pc-testdev-ioport-byte"
    space.write(0xE9, 1, 0x41)
    space.write(0xEB, 1, 0x42)
    assert debugcon.writes == [(0, 1, 0x41)]
    assert testdev.writes == [(3, 1, 0x42)]


def test_higher_priority_wins_whatever_the_order():
    space = AddressSpace("io", 0x10000)
    host, rcr = Recorder(), Recorder()
    space.add_region(region(0xCF9, 1, name="reset-control", dev=rcr, priority=1), overlap=True)
    space.add_region(region(0xCF8, 4, name="pci-conf-idx", dev=host))
    assert space.find(0xCF9).name == "reset-control"
    space.write(0xCF9, 1, 6)
    assert rcr.writes == [(0, 1, 6)] and host.writes == []
    space.write(0xCF8, 4, 0x80000000)                        # the region at the first byte takes it all
    assert host.writes == [(0, 4, 0x80000000)]
    space.write(0xCF9, 2, 0x0102)                            # from the RCR on: split at its end
    assert rcr.writes[-1] == (0, 1, 0x02) and host.writes[-1] == (2, 1, 0x01)


def test_removing_a_covering_region_uncovers_the_one_below():
    space = AddressSpace("memory")
    below, bar = Recorder(), Recorder()
    space.add_region(region(0x1000, 0x1000, name="below", dev=below))
    top = region(0x1800, 0x1000, name="bar", dev=bar, priority=1)
    space.add_region(top, overlap=True)
    space.read(0x1900, 4)
    space.read(0x17FF, 1)
    assert bar.reads == [(0x100, 4)] and below.reads == [(0x7FF, 1)]
    space.remove_region(top)
    space.read(0x1900, 4)
    assert below.reads[-1] == (0x900, 4)
    assert [r.name for r in space.regions] == ["below"]


def test_a_region_is_added_once():
    space = AddressSpace("io", 0x10000)
    r = region(0x80, 1)
    space.add_region(r, overlap=True)
    with pytest.raises(AddressSpaceError, match="already"):
        space.add_region(r, overlap=True)
