"""QEMU's pc-testdev (hw/misc/pc-testdev.c), the device kvm-unit-tests talk to.

Its regions, with QEMU's access rules (a wider access than a region takes is split into
its pieces, as QEMU's memory core splits it):

* 0xe0..0xe3 (any size) and 0xe8..0xeb (byte by byte): one 32-bit register, read and
  written by byte lanes; ``rep outsb`` to 0xe0 leaves the last byte there.
* 0xe4..0xe7: page flush. A 32-bit write of an address calls ``flush_page(address &
  ~0xfff)`` (QEMU drops its host mapping of that guest page); reads return 0.
* 0x2000..0x2017: IRQ lines. A byte written to 0x2000 + n sets ISA IRQ n (the GSI) to
  level ``value != 0`` through ``set_irq(n, level)``; reads return 0.
* MMIO 0xff000000..0xff00ffff: 64 KiB of memory, little-endian.
"""

from __future__ import annotations

from typing import Callable

from devicemodel.address_space import Region

IOPORT = 0xE0
FLUSH_PORT = 0xE4
IOPORT_BYTE = 0xE8
IRQ_PORTS = 0x2000
IRQ_LINES = 24
IOMEM_BASE = 0xFF000000
IOMEM_LEN = 0x10000
PAGE_MASK = ~0xFFF


def _no_irq(line: int, level: int) -> None:
    pass


def _no_flush(address: int) -> None:
    pass


class PcTestdev:
    """The device; ``regions`` go into the port space, ``mmio_region`` into memory."""

    def __init__(self, set_irq: Callable[[int, int], None] = _no_irq,
                 flush_page: Callable[[int], None] = _no_flush, name: str = "pc-testdev"):
        self.set_irq = set_irq
        self.flush_page = flush_page
        self.ioport_data = 0
        self.iomem = bytearray(IOMEM_LEN)
        self.regions = (
            Region(base=IOPORT, size=4, name=f"{name}-ioport", read=self._read_ioport,
                   write=self._write_ioport, owner=self, sizes=(1, 2, 4)),
            Region(base=FLUSH_PORT, size=4, name=f"{name}-flush-page", read=self._read_zero,
                   write=self._write_flush, owner=self, sizes=(4,)),
            Region(base=IOPORT_BYTE, size=4, name=f"{name}-ioport-byte", read=self._read_ioport,
                   write=self._write_ioport, owner=self, sizes=(1, 2, 4), impl_size=1),
            Region(base=IRQ_PORTS, size=IRQ_LINES, name=f"{name}-irq-line", read=self._read_zero,
                   write=self._write_irq, owner=self, sizes=(1, 2, 4), impl_size=1),
        )
        self.mmio_region = Region(base=IOMEM_BASE, size=IOMEM_LEN, name=f"{name}-iomem",
                                  read=self._read_iomem, write=self._write_iomem, owner=self,
                                  sizes=(1, 2, 4, 8))

    def _read_ioport(self, offset: int, size: int) -> int:
        shift = 8 * (offset & 3)
        return (self.ioport_data >> shift) & ((1 << (8 * size)) - 1)

    def _write_ioport(self, offset: int, size: int, value: int) -> None:
        shift = 8 * (offset & 3)
        mask = ((1 << (8 * size)) - 1) << shift
        self.ioport_data = (self.ioport_data & ~mask) | ((value << shift) & mask)

    def _read_zero(self, offset: int, size: int) -> int:
        return 0

    def _write_flush(self, offset: int, size: int, value: int) -> None:
        self.flush_page(value & PAGE_MASK)

    def _write_irq(self, offset: int, size: int, value: int) -> None:
        self.set_irq(offset, 1 if value else 0)

    def _read_iomem(self, offset: int, size: int) -> int:
        return int.from_bytes(self.iomem[offset:offset + size], "little")

    def _write_iomem(self, offset: int, size: int, value: int) -> None:
        self.iomem[offset:offset + size] = value.to_bytes(size, "little")

    def save_state(self) -> dict:
        return {"ioport_data": self.ioport_data, "iomem": bytes(self.iomem)}

    def load_state(self, state: dict) -> None:
        self.ioport_data = state["ioport_data"]
        self.iomem = bytearray(state["iomem"])
