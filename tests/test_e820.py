"""The PC memory map shared by the loaders and the firmware tables."""

from devicemodel.firmware_tables.e820 import (E820Entry, PcMemoryLayout, build_e820_table,
                                              pc_memory_map)

MiB, GiB = 1 << 20, 1 << 30


def test_small_machine_layout_as_qemu():
    assert pc_memory_map(128 * MiB) == [
        (0, 0x9FC00, 1), (0x9FC00, 0x400, 2), (0xF0000, 0x10000, 2),
        (0x100000, 127 * MiB - 0x20000, 1), (128 * MiB - 0x20000, 0x20000, 2),
        (0xFFFC0000, 0x40000, 2)]


def test_ram_below_the_split_threshold_stays_below_4g():
    layout = PcMemoryLayout(3 * GiB + 256 * MiB)
    assert layout.low_top == 3 * GiB + 256 * MiB and layout.high_size == 0
    assert all(r.base < 1 << 32 for r in layout.memory_map())


def test_large_ram_is_split_at_3g_with_the_rest_above_4g():
    layout = PcMemoryLayout(4 * GiB)
    assert (layout.low_top, layout.high_size) == (3 * GiB, GiB)
    regions = layout.memory_map()
    assert (3 * GiB - 0x20000, 0x20000, 2) in regions
    assert regions[-1] == (4 * GiB, GiB, 1)
    ram = sum(r.length for r in regions if r.type == 1)
    assert ram == 4 * GiB - 0x400 - 0x60000 - 0x20000   # EBDA, 0xa0000-0xfffff and the ACPI area


def test_regions_are_sorted_and_disjoint():
    for size in (2 * MiB, 128 * MiB, 3 * GiB, 5 * GiB):
        regions = pc_memory_map(size)
        for a, b in zip(regions, regions[1:]):
            assert a.end <= b.base


def test_usable_checks_ram_regions():
    layout = PcMemoryLayout(64 * MiB)
    assert layout.is_usable(0x100000, 0x1000)
    assert not layout.is_usable(0xF0000, 0x10)                    # BIOS area
    assert not layout.is_usable(64 * MiB - 0x1000, 0x10)          # ACPI area
    assert not layout.is_usable(0x9F000, 0x2000)                  # runs into the EBDA


def test_e820_table_records_are_20_bytes():
    table = build_e820_table(pc_memory_map(64 * MiB))
    assert len(table) == 20 * 6
    first = E820Entry.parse(table[:20])
    assert (first.addr, first.size, first.type) == (0, 0x9FC00, 1)
