"""QEMU's fw_cfg device through the port I/O address space, as SeaBIOS and Linux's
qemu_fw_cfg driver use it: the selector/data ports and the DMA interface."""

import struct

import pytest

from devicemodel.address_space import AddressSpace
from devicemodel.firmware_tables.e820 import E820Entry
from devicemodel.firmware_tables.fw_cfg import (DMA_CTL_ERROR, DMA_CTL_READ, DMA_CTL_SELECT, DMA_CTL_SKIP,
                                                DMA_CTL_WRITE, DmaAccess, DmaError, FileDirEntry, pc_fw_cfg)

MiB = 1 << 20
RAM_SIZE = 1 * MiB      # the guest RAM the DMA reaches (the machine's RAM is bigger)


class Ram:
    def __init__(self, size=RAM_SIZE):
        self.mem = bytearray(size)

    def read(self, addr, size):
        if addr + size > len(self.mem):
            raise DmaError(addr)
        return bytes(self.mem[addr:addr + size])

    def write(self, addr, data):
        if addr + len(data) > len(self.mem):
            raise DmaError(addr)
        self.mem[addr:addr + len(data)] = data


@pytest.fixture
def machine():
    ram = Ram()
    fw_cfg = pc_fw_cfg(ram.read, ram.write, ram_size=256 * MiB, cpus=2, kernel=b"KERNEL" * 100,
                       initrd=b"INITRD", cmdline="console=ttyS0")
    pio = AddressSpace("io", 0x10000)
    for region in fw_cfg.regions:
        pio.add_region(region)
    return pio, ram, fw_cfg


def read_item(pio, key, length):
    pio.write(0x510, 2, key)
    return bytes(pio.read(0x511, 1) for _ in range(length))


def test_signature_id_ram_size_cpus(machine):
    pio, _, _ = machine
    assert read_item(pio, 0x00, 4) == b"QEMU"
    assert struct.unpack("<I", read_item(pio, 0x01, 4))[0] == 3         # traditional + DMA
    assert struct.unpack("<Q", read_item(pio, 0x03, 8))[0] == 256 * MiB
    assert struct.unpack("<H", read_item(pio, 0x05, 2))[0] == 2
    assert struct.unpack("<H", read_item(pio, 0x0F, 2))[0] == 2


def test_reading_past_the_end_or_an_unknown_key_gives_zeros(machine):
    pio, _, _ = machine
    assert read_item(pio, 0x00, 6) == b"QEMU\0\0"
    assert read_item(pio, 0x7777, 4) == bytes(4)


def test_selecting_rewinds(machine):
    pio, _, _ = machine
    read_item(pio, 0x00, 2)
    assert read_item(pio, 0x00, 4) == b"QEMU"


def test_only_x86_access_widths_do_anything(machine):
    pio, _, _ = machine
    pio.write(0x510, 2, 0x00)
    pio.write(0x510, 1, 0x05)                       # a byte write to the selector is ignored
    assert pio.read(0x510, 2) == 0xFFFF              # the selector does not read back
    assert pio.read(0x511, 1) == ord("Q")


def test_kernel_initrd_cmdline_items(machine):
    pio, _, _ = machine
    assert struct.unpack("<I", read_item(pio, 0x08, 4))[0] == 600
    assert read_item(pio, 0x11, 6) == b"KERNEL"
    assert struct.unpack("<I", read_item(pio, 0x0B, 4))[0] == 6
    assert read_item(pio, 0x12, 6) == b"INITRD"
    size = struct.unpack("<I", read_item(pio, 0x14, 4))[0]
    assert read_item(pio, 0x15, size) == b"console=ttyS0\0"


def files(pio):
    count = struct.unpack(">I", read_item(pio, 0x19, 4))[0]
    data = read_item(pio, 0x19, 4 + 64 * count)[4:]
    return {e.name: e for e in (FileDirEntry.parse(data[i:i + 64]) for i in range(0, len(data), 64))}


def test_file_directory_has_etc_e820(machine):
    pio, _, _ = machine
    entry = files(pio)["etc/e820"]
    data = read_item(pio, entry.select, entry.size)
    records = [E820Entry.parse(data[i:i + 20]) for i in range(0, len(data), 20)]
    assert [(r.addr, r.size, r.type) for r in records] == [(0, 256 * MiB, 1)]   # QEMU's, for the firmware


def test_etc_e820_has_ram_above_4g_as_qemu_splits_it():
    ram = Ram()
    fw_cfg = pc_fw_cfg(ram.read, ram.write, ram_size=4 << 30, cpus=1)
    data = fw_cfg.files["etc/e820"]
    records = [E820Entry.parse(data[i:i + 20]) for i in range(0, len(data), 20)]
    assert [(r.addr, r.size, r.type) for r in records] == [(0, 3 << 30, 1), (4 << 30, 1 << 30, 1)]


def test_files_sorted_by_name_with_keys_from_0x20(machine):
    pio, _, fw_cfg = machine
    fw_cfg.add_file("opt/zzz", b"last")
    fw_cfg.add_file("bootorder", b"first")
    entries = files(pio)
    assert [(name, e.select) for name, e in sorted(entries.items(), key=lambda kv: kv[1].select)] == [
        ("bootorder", 0x20), ("etc/e820", 0x21), ("opt/zzz", 0x22)]
    assert read_item(pio, fw_cfg.file_key("opt/zzz"), 4) == b"last"


def dma(pio, ram, control, length, address, at=0x1000):
    ram.mem[at:at + 16] = DmaAccess.build(dict(control=control, length=length, address=address))
    # Linux: iowrite32be(high, 0x514); iowrite32be(low, 0x518) -- big-endian register
    pio.write(0x514, 4, int.from_bytes((at >> 32).to_bytes(4, "big"), "little"))
    pio.write(0x518, 4, int.from_bytes((at & 0xFFFFFFFF).to_bytes(4, "big"), "little"))
    return DmaAccess.parse(bytes(ram.mem[at:at + 16])).control


def test_dma_signature():
    ram = Ram()
    fw_cfg = pc_fw_cfg(ram.read, ram.write, ram_size=64 * MiB, cpus=1)
    pio = AddressSpace("io", 0x10000)
    for region in fw_cfg.regions:
        pio.add_region(region)
    assert bytes(pio.read(0x514 + i, 1) for i in range(8)) == b"QEMU CFG"
    assert pio.read(0x514, 4).to_bytes(4, "little") == b"QEMU"


def test_dma_select_and_read(machine):
    pio, ram, _ = machine
    assert dma(pio, ram, DMA_CTL_SELECT | DMA_CTL_READ | 0x11 << 16, 12, 0x2000) == 0
    assert ram.mem[0x2000:0x200C] == b"KERNELKERNEL"
    # continues from the offset reached; past the end the buffer is zero-filled
    ram.mem[0x3000:0x3400] = b"\xAA" * 0x400
    assert dma(pio, ram, DMA_CTL_READ, 600, 0x3000) == 0
    assert ram.mem[0x3000:0x3000 + 588] == (b"KERNEL" * 100)[12:]
    assert ram.mem[0x3000 + 588:0x3000 + 600] == bytes(12)
    assert ram.mem[0x3000 + 600] == 0xAA


def test_dma_skip(machine):
    pio, ram, _ = machine
    assert dma(pio, ram, DMA_CTL_SELECT | DMA_CTL_SKIP | 0x00 << 16, 2, 0) == 0
    assert dma(pio, ram, DMA_CTL_READ, 2, 0x2000) == 0
    assert ram.mem[0x2000:0x2002] == b"MU"


def test_dma_errors(machine):
    pio, ram, _ = machine
    assert dma(pio, ram, DMA_CTL_SELECT | DMA_CTL_WRITE | 0x00 << 16, 4, 0x2000) == DMA_CTL_ERROR
    assert dma(pio, ram, DMA_CTL_SELECT | DMA_CTL_READ | 0x11 << 16, 16, RAM_SIZE - 8) == DMA_CTL_ERROR
    # A record outside RAM: nothing to report into, and nothing breaks.
    pio.write(0x514, 4, 0)
    pio.write(0x518, 4, int.from_bytes((RAM_SIZE + 0x1000).to_bytes(4, "big"), "little"))
    assert dma(pio, ram, DMA_CTL_SELECT | DMA_CTL_READ, 4, 0x2000) == 0
