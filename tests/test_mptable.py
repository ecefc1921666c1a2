"""MP tables and the BIOS data area, found the way xv6's mp.c finds them."""

import pytest

from devicemodel.firmware_tables.bda import BiosDataArea
from devicemodel.firmware_tables.mptable import (ConfigHeader, FloatingPointer, InterruptEntry, IoApicEntry,
                                                 ProcessorEntry, BusEntry, ENTRY_SIZES, build_mp_config_table)
from devicemodel.firmware_tables.pc import install_pc_firmware_tables

MiB = 1 << 20


def byte_sum(data):
    return sum(data) & 0xFF


def mpsearch1(mem, addr, length):
    for p in range(addr, addr + length, 16):
        if mem[p:p + 4] == b"_MP_" and byte_sum(mem[p:p + 16]) == 0:
            return p
    return None


def mpsearch(mem):
    """xv6: the EBDA's first KiB, else the last KiB of base memory, else 0xf0000-0xfffff."""
    bda = mem[0x400:0x500]
    segment = bda[0x0F] << 8 | bda[0x0E]
    if segment:
        found = mpsearch1(mem, segment << 4, 1024)
    else:
        found = mpsearch1(mem, (bda[0x14] << 8 | bda[0x13]) * 1024 - 1024, 1024)
    return found if found is not None else mpsearch1(mem, 0xF0000, 0x10000)


def parse_config(mem, addr):
    header = ConfigHeader.parse(bytes(mem[addr:addr + ConfigHeader.sizeof()]))
    table = bytes(mem[addr:addr + header.base_table_length])
    assert byte_sum(table) == 0
    entries, pos = [], ConfigHeader.sizeof()
    parsers = {0: ProcessorEntry, 1: BusEntry, 2: IoApicEntry, 3: InterruptEntry, 4: InterruptEntry}
    while pos < len(table):
        kind = table[pos]
        entries.append(parsers[kind].parse(table[pos:pos + ENTRY_SIZES[kind]]))
        pos += ENTRY_SIZES[kind]
    assert pos == len(table) and len(entries) == header.entry_count
    return header, entries


@pytest.fixture
def mem():
    mem = bytearray(32 * MiB)
    install_pc_firmware_tables(mem, cpus=2, com_ports=(0x3F8, 0x2F8))
    return mem


def test_bios_data_area(mem):
    bda = BiosDataArea.parse(bytes(mem[0x400:0x420]))
    assert list(bda.com_ports) == [0x3F8, 0x2F8, 0, 0]
    assert bda.ebda_segment == 0x9FC0 and bda.base_memory_kib == 639
    assert (bda.equipment >> 9) & 7 == 2
    assert mem[0x9FC00] == 1                                  # EBDA size in KiB


def test_floating_pointer_found_as_xv6_does(mem):
    addr = mpsearch(mem)
    assert addr is not None and 0xF0000 <= addr < 0x100000
    pointer = FloatingPointer.parse(bytes(mem[addr:addr + 16]))
    assert pointer.spec_rev == 4 and pointer.feature1 == 0 and pointer.feature2 == 0
    header, _ = parse_config(mem, pointer.config_table)
    assert header.spec_rev == 4 and header.local_apic == 0xFEE00000


def test_processors_bus_ioapic(mem):
    pointer = FloatingPointer.parse(bytes(mem[mpsearch(mem):][:16]))
    _, entries = parse_config(mem, pointer.config_table)
    cpus = [e for e in entries if e.type == 0]
    assert [(c.local_apic_id, c.cpu_flags) for c in cpus] == [(0, 3), (1, 1)]   # BSP: enabled | BP
    (bus,) = [e for e in entries if e.type == 1]
    assert bus.bus_type == b"ISA   "
    (ioapic,) = [e for e in entries if e.type == 2]
    assert (ioapic.ioapic_id, ioapic.flags, ioapic.address) == (0, 1, 0xFEC00000)


def test_isa_interrupt_assignments_as_seabios(mem):
    pointer = FloatingPointer.parse(bytes(mem[mpsearch(mem):][:16]))
    _, entries = parse_config(mem, pointer.config_table)
    io = {e.source_bus_irq: e for e in entries if e.type == 3}
    assert set(io) == set(range(16)) - {2, 5, 9, 10, 11}
    assert io[0].destination_input == 2                      # the PIT on input 2
    assert all(io[irq].destination_input == irq for irq in io if irq)
    assert all(e.source_bus_id == 0 and e.destination_id == 0 and e.interrupt_type == 0 for e in io.values())
    local = [(e.interrupt_type, e.destination_id, e.destination_input) for e in entries if e.type == 4]
    assert local == [(3, 0, 0), (1, 0xFF, 1)]                 # ExtINT on BSP LINT0, NMI on LINT1


def test_processor_count_limits():
    assert len([e for e in parse_config(build_mp_config_table(255), 0)[1] if e.type == 0]) == 255
    with pytest.raises(ValueError):
        build_mp_config_table(0)
