"""QEMU's firmware configuration device, fw_cfg (QEMU docs/specs/fw_cfg.rst), at its x86
I/O ports: the selector at 0x510 (16-bit writes), the data port at 0x511 (8-bit reads)
and the DMA address register at 0x514-0x51b (big-endian).

Items are byte strings under a 16-bit key; writing a key to the selector (or a DMA
"select") makes it current and rewinds its offset; each data-port read returns the next
byte, 0 past the end or when the key selects nothing. Named files live under keys from
0x20 up, in name order, and are listed by the file directory (key 0x19: a big-endian
count, then a {be32 size, be16 select, be16 reserved, char name[56]} record per file).

DMA: the guest writes the guest-physical address of an ``FWCfgDmaAccess`` record (big-
endian {u32 control, u32 length, u64 address}) to 0x514, as two 32-bit halves (the write
of the low half at 0x518 starts the transfer); the device selects (control bit 3, key in
bits 31:16), then reads (bit 1: copies item bytes to ``address``, zero-filling past the
item's end) or skips (bit 2) ``length`` bytes, and writes the control word back as 0, or
with bit 0 set when the record or the buffer is not guest RAM, or for a write (bit 4):
no item here is writable, as in QEMU for all but a few files. Reading the DMA register
returns the signature "QEMU CFG".

As in QEMU, only the accesses the x86 device accepts do anything: a 16-bit write of the
selector at 0x510, an 8-bit read of data at 0x511; other accesses to 0x510-0x511 read
all-ones and are ignored.

Guest memory is reached through the two injected callables ``read_memory(addr, size) ->
bytes`` and ``write_memory(addr, data)`` (a ``GuestMemory``'s ``read`` and ``write``),
which raise ``DmaError`` for addresses that are not RAM.
"""

from __future__ import annotations

from typing import Callable

from construct import Int16ub, Int32ub, Int32ul, Int64ub, Int64ul, Int16ul, PaddedString, Struct

from devicemodel.address_space import Region
from devicemodel.firmware_tables.e820 import E820_RAM, FOUR_GIB, MemoryRegion, PcMemoryLayout, build_e820_table
from devicemodel.guest_memory import DmaError

FW_CFG_IOBASE = 0x510
FW_CFG_DMA_IOBASE = 0x514

FW_CFG_SIGNATURE = 0x00
FW_CFG_ID = 0x01
FW_CFG_UUID = 0x02
FW_CFG_RAM_SIZE = 0x03
FW_CFG_NOGRAPHIC = 0x04
FW_CFG_NB_CPUS = 0x05
FW_CFG_KERNEL_SIZE = 0x08
FW_CFG_INITRD_SIZE = 0x0B
FW_CFG_MAX_CPUS = 0x0F
FW_CFG_KERNEL_DATA = 0x11
FW_CFG_INITRD_DATA = 0x12
FW_CFG_CMDLINE_SIZE = 0x14
FW_CFG_CMDLINE_DATA = 0x15
FW_CFG_FILE_DIR = 0x19
FW_CFG_FILE_FIRST = 0x20
FW_CFG_INVALID = 0xFFFF

FEATURE_TRADITIONAL = 1 << 0
FEATURE_DMA = 1 << 1

DMA_CTL_ERROR = 1 << 0
DMA_CTL_READ = 1 << 1
DMA_CTL_SKIP = 1 << 2
DMA_CTL_SELECT = 1 << 3
DMA_CTL_WRITE = 1 << 4
DMA_SIGNATURE = b"QEMU CFG"

FILE_NAME_SIZE = 56

FileDirEntry = Struct(
    "size" / Int32ub,
    "select" / Int16ub,
    "reserved" / Int16ub,
    "name" / PaddedString(FILE_NAME_SIZE, "ascii"),
)

DmaAccess = Struct(
    "control" / Int32ub,
    "length" / Int32ub,
    "address" / Int64ub,
)


class FwCfg:
    """The fw_cfg device; ``regions`` go into the port I/O address space."""

    def __init__(self, read_memory: Callable[[int, int], bytes], write_memory: Callable[[int, bytes], None],
                 iobase: int = FW_CFG_IOBASE, dma_iobase: int = FW_CFG_DMA_IOBASE):
        self.read_memory = read_memory
        self.write_memory = write_memory
        self.items: dict[int, bytes] = {}
        self.files: dict[str, bytes] = {}
        self.regions = (
            Region(base=iobase, size=2, name="fwcfg", read=self._read_io, write=self._write_io,
                   owner=self, sizes=(1, 2)),
            Region(base=dma_iobase, size=8, name="fwcfg.dma", read=self._read_dma, write=self._write_dma,
                   owner=self, sizes=(1, 2, 4)),
        )
        self.add_bytes(FW_CFG_SIGNATURE, b"QEMU")
        self.add_bytes(FW_CFG_ID, Int32ul.build(FEATURE_TRADITIONAL | FEATURE_DMA))
        self.add_bytes(FW_CFG_UUID, bytes(16))
        self._update_directory()
        self.reset()

    def reset(self) -> None:
        self.current = FW_CFG_INVALID
        self.offset = 0
        self.dma_addr = 0

    # --- the machine's side: what the firmware knows --------------------------

    def add_bytes(self, key: int, data: bytes) -> None:
        if FW_CFG_FILE_FIRST <= key < 0x8000 or key == FW_CFG_FILE_DIR:
            raise ValueError(f"fw_cfg key {key:#x} belongs to the file directory")
        self.items[key] = bytes(data)

    def add_file(self, name: str, data: bytes) -> None:
        if len(name.encode("ascii")) >= FILE_NAME_SIZE:
            raise ValueError(f"fw_cfg file name too long: {name!r}")
        self.files[name] = bytes(data)
        self._update_directory()

    def file_key(self, name: str) -> int:
        return FW_CFG_FILE_FIRST + sorted(self.files).index(name)

    def _update_directory(self) -> None:
        names = sorted(self.files)
        self.items = {k: v for k, v in self.items.items() if not FW_CFG_FILE_FIRST <= k < 0x8000}
        directory = Int32ub.build(len(names))
        for index, name in enumerate(names):
            self.items[FW_CFG_FILE_FIRST + index] = self.files[name]
            directory += FileDirEntry.build(dict(size=len(self.files[name]), select=FW_CFG_FILE_FIRST + index,
                                                 reserved=0, name=name))
        self.items[FW_CFG_FILE_DIR] = directory

    # --- the guest's side -----------------------------------------------------

    def select(self, key: int) -> None:
        self.current = key if key in self.items else FW_CFG_INVALID
        self.offset = 0

    def _read_io(self, offset: int, size: int) -> int:
        if offset == 1 and size == 1:
            return self._next_byte()
        return (1 << (8 * size)) - 1

    def _write_io(self, offset: int, size: int, value: int) -> None:
        if offset == 0 and size == 2:
            self.select(value)

    def _next_byte(self) -> int:
        data = self.items.get(self.current, b"")
        if self.offset >= len(data):
            return 0
        self.offset += 1
        return data[self.offset - 1]

    def _read_dma(self, offset: int, size: int) -> int:
        return int.from_bytes(DMA_SIGNATURE[offset:offset + size], "little")

    def _write_dma(self, offset: int, size: int, value: int) -> None:
        # The register is big-endian: the byte at the lowest port is the most significant.
        be = int.from_bytes(value.to_bytes(size, "little"), "big")
        if size == 4 and offset == 0:
            self.dma_addr = be << 32
        elif size == 4 and offset == 4:
            self.dma_addr |= be
            self._dma_transfer()

    def _dma_transfer(self) -> None:
        addr, self.dma_addr = self.dma_addr, 0
        try:
            access = DmaAccess.parse(self.read_memory(addr, DmaAccess.sizeof()))
        except DmaError:
            self._complete(addr, DMA_CTL_ERROR)
            return
        if access.control & DMA_CTL_SELECT:
            self.select(access.control >> 16)
        if access.control & DMA_CTL_READ:
            operation = DMA_CTL_READ
        elif access.control & DMA_CTL_WRITE:
            operation = DMA_CTL_WRITE
        elif access.control & DMA_CTL_SKIP:
            operation = DMA_CTL_SKIP
        else:
            operation = 0
        status = 0
        if operation == DMA_CTL_WRITE:
            status = DMA_CTL_ERROR if access.length else 0
        elif operation:
            status = self._dma_read(access.address, access.length, operation == DMA_CTL_READ)
        self._complete(addr, status)

    def _dma_read(self, address: int, length: int, copy: bool) -> int:
        data = self.items.get(self.current, b"")
        available = data[self.offset:self.offset + length]
        self.offset += len(available)
        if copy and length:
            try:
                self.write_memory(address, available + bytes(length - len(available)))
            except DmaError:
                return DMA_CTL_ERROR
        return 0

    def _complete(self, addr: int, status: int) -> None:
        try:
            self.write_memory(addr, Int32ub.build(status))
        except DmaError:
            pass  # the record itself is not RAM: nobody can see the status


def pc_fw_cfg(read_memory, write_memory, ram_size: int, cpus: int, kernel: bytes = None,
              initrd: bytes = None, cmdline: str = None) -> FwCfg:
    """fw_cfg with what QEMU's pc machine puts there: RAM size, CPU counts, etc/e820 and,
    for -kernel/-initrd/-append, the kernel, initrd and command line.

    etc/e820 is QEMU's map for the firmware, not the one the firmware gives the operating
    system: the RAM below the PCI hole and the RAM above 4 GiB, each as one range (the
    firmware reserves its own areas out of them)."""
    fw_cfg = FwCfg(read_memory, write_memory)
    layout = PcMemoryLayout(ram_size)
    ram_ranges = [MemoryRegion(0, layout.low_top, E820_RAM)]
    if layout.high_size:
        ram_ranges.append(MemoryRegion(FOUR_GIB, layout.high_size, E820_RAM))
    fw_cfg.add_bytes(FW_CFG_RAM_SIZE, Int64ul.build(ram_size))
    fw_cfg.add_bytes(FW_CFG_NOGRAPHIC, Int16ul.build(0))
    fw_cfg.add_bytes(FW_CFG_NB_CPUS, Int16ul.build(cpus))
    fw_cfg.add_bytes(FW_CFG_MAX_CPUS, Int16ul.build(cpus))
    fw_cfg.add_file("etc/e820", build_e820_table(ram_ranges))
    if kernel is not None:
        fw_cfg.add_bytes(FW_CFG_KERNEL_SIZE, Int32ul.build(len(kernel)))
        fw_cfg.add_bytes(FW_CFG_KERNEL_DATA, kernel)
    if initrd is not None:
        fw_cfg.add_bytes(FW_CFG_INITRD_SIZE, Int32ul.build(len(initrd)))
        fw_cfg.add_bytes(FW_CFG_INITRD_DATA, initrd)
    if cmdline is not None:
        data = cmdline.encode("utf-8", "surrogateescape") + b"\0"
        fw_cfg.add_bytes(FW_CFG_CMDLINE_SIZE, Int32ul.build(len(data)))
        fw_cfg.add_bytes(FW_CFG_CMDLINE_DATA, data)
    return fw_cfg
