"""A small virtio driver for the tests: it brings a device up through virtio-mmio
registers and drives split virtqueues in a test's guest RAM, the way a guest kernel
would. Helper module (``import virtio_driver``), not a test file."""

from __future__ import annotations

import struct

from devicemodel.address_space import AddressSpace
from devicemodel.guest_memory import GuestMemory
from devicemodel.virtio import mmio as regs
from devicemodel.virtio.spec import (DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, F_VERSION_1, STATUS_ACKNOWLEDGE,
                                     STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK, bit)

MiB = 1 << 20
BASE = 0xFEB00E00


class IrqRecorder:
    def __init__(self):
        self.level = 0
        self.raised = 0

    def __call__(self, level: int) -> None:
        if level and not self.level:
            self.raised += 1
        self.level = level


def make_memory(size: int = 2 * MiB) -> GuestMemory:
    return GuestMemory(bytearray(size))


class Allocator:
    """Bump allocation of guest-physical ranges for rings and buffers."""

    def __init__(self, start: int = 0x10000):
        self.next = start

    def __call__(self, size: int, align: int = 16) -> int:
        self.next = (self.next + align - 1) // align * align
        addr, self.next = self.next, self.next + size
        return addr


class MmioDriver:
    """Registers of one virtio-mmio window in an address space."""

    def __init__(self, space: AddressSpace, base: int = BASE):
        self.space = space
        self.base = base

    def read(self, offset: int, size: int = 4) -> int:
        return self.space.read(self.base + offset, size)

    def write(self, offset: int, value: int, size: int = 4) -> None:
        self.space.write(self.base + offset, size, value)

    def device_features(self) -> int:
        self.write(regs.DEVICE_FEATURES_SEL, 0)
        low = self.read(regs.DEVICE_FEATURES)
        self.write(regs.DEVICE_FEATURES_SEL, 1)
        return low | self.read(regs.DEVICE_FEATURES) << 32

    def negotiate(self, wanted: int = bit(F_VERSION_1)) -> int:
        """Reset, acknowledge, accept ``wanted`` & offered features; the status afterwards."""
        self.write(regs.STATUS, 0)
        self.write(regs.STATUS, STATUS_ACKNOWLEDGE)
        self.write(regs.STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER)
        features = self.device_features() & wanted
        for sel in (0, 1):
            self.write(regs.DRIVER_FEATURES_SEL, sel)
            self.write(regs.DRIVER_FEATURES, (features >> (32 * sel)) & 0xFFFFFFFF)
        self.write(regs.STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK)
        return self.read(regs.STATUS)

    def setup_queue(self, index: int, queue) -> None:
        self.write(regs.QUEUE_SEL, index)
        self.write(regs.QUEUE_NUM, queue.size)
        for low, value in ((regs.QUEUE_DESC_LOW, queue.desc), (regs.QUEUE_DRIVER_LOW, queue.avail),
                           (regs.QUEUE_DEVICE_LOW, queue.used)):
            self.write(low, value & 0xFFFFFFFF)
            self.write(low + 4, value >> 32)
        self.write(regs.QUEUE_READY, 1)

    def driver_ok(self) -> None:
        self.write(regs.STATUS, self.read(regs.STATUS) | STATUS_DRIVER_OK)

    def notify(self, index: int) -> None:
        self.write(regs.QUEUE_NOTIFY, index)

    def ack_interrupts(self) -> int:
        status = self.read(regs.INTERRUPT_STATUS)
        self.write(regs.INTERRUPT_ACK, status)
        return status


class DriverQueue:
    """The driver's side of a split virtqueue in ``memory``."""

    def __init__(self, memory: GuestMemory, alloc: Allocator, size: int = 16):
        self.memory = memory
        self.size = size
        self.desc = alloc(16 * size, 16)
        self.avail = alloc(6 + 2 * size, 2)
        self.used = alloc(6 + 8 * size, 4)
        self.alloc = alloc
        self.free = list(range(size))
        self.avail_idx = 0
        self.last_used = 0
        self.chains = {}

    def _write_desc(self, table: int, index: int, addr: int, length: int, flags: int, next_index: int) -> None:
        self.memory.write(table + 16 * index, struct.pack("<QIHH", addr, length, flags, next_index))

    def add(self, buffers, indirect: bool = False) -> int:
        """Make a chain of (addr, length, writable) buffers available; its head."""
        if indirect:
            table = self.alloc(16 * len(buffers), 16)
            for i, (addr, length, writable) in enumerate(buffers):
                more = i + 1 < len(buffers)
                self._write_desc(table, i, addr, length, (DESC_F_WRITE if writable else 0) |
                                 (DESC_F_NEXT if more else 0), i + 1 if more else 0)
            head = self.free.pop(0)
            self._write_desc(self.desc, head, table, 16 * len(buffers), DESC_F_INDIRECT, 0)
            self.chains[head] = [head]
        else:
            indexes = [self.free.pop(0) for _ in buffers]
            for i, (addr, length, writable) in enumerate(buffers):
                more = i + 1 < len(buffers)
                self._write_desc(self.desc, indexes[i], addr, length, (DESC_F_WRITE if writable else 0) |
                                 (DESC_F_NEXT if more else 0), indexes[i + 1] if more else 0)
            head = indexes[0]
            self.chains[head] = indexes
        self.publish(head)
        return head

    def publish(self, head: int) -> None:
        self.memory.write_int(self.avail + 4 + 2 * (self.avail_idx % self.size), 2, head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.memory.write_int(self.avail + 2, 2, self.avail_idx)

    def set_used_event(self, value: int) -> None:
        self.memory.write_int(self.avail + 4 + 2 * self.size, 2, value)

    def avail_event(self) -> int:
        return self.memory.read_int(self.used + 4 + 8 * self.size, 2)

    def used_idx(self) -> int:
        return self.memory.read_int(self.used + 2, 2)

    def take_used(self) -> list[tuple[int, int]]:
        """The (head, length) entries the device returned since the last call."""
        entries = []
        while self.last_used != self.used_idx():
            slot = self.used + 4 + 8 * (self.last_used % self.size)
            head, length = struct.unpack("<II", self.memory.read(slot, 8))
            entries.append((head, length))
            self.free.extend(self.chains.pop(head, []))
            self.last_used = (self.last_used + 1) & 0xFFFF
        return entries


class PciBoard:
    """The pc machine's PCI chipset on fresh address spaces, with every ISA IRQ level and
    every MSI message recorded, and ``init_pci`` done as the firmware does it."""

    def __init__(self):
        from devicemodel.clock import VirtualClock
        from devicemodel.pci.pc_chipset import PcChipset
        from irq_line import IrqLines
        self.pio = AddressSpace("io", 0x10000)
        self.mmio = AddressSpace("memory")
        self.irqs = IrqLines(16)
        self.messages = []
        self.chipset = PcChipset(pio=self.pio, mmio=self.mmio, clock=VirtualClock(), set_isa_irq=self.irqs.set_irq,
                                 request_reset=lambda *a: None, power_off=lambda: None, suspend=lambda: None,
                                 deliver_msi=lambda address, data: self.messages.append((address, data)))
        self.bus = self.chipset.bus

    def plug(self, device, slot: int):
        self.bus.add(device, slot)
        self.chipset.init_firmware(0x08000000)
        return device


class PciDriver:
    """A guest driver's view of one virtio-pci function: configuration cycles through
    0xcf8/0xcfc, the structures its capabilities point at in BAR 4, the MSI-X table."""

    def __init__(self, board: PciBoard, slot: int):
        self.board = board
        self.slot = slot
        self.caps = {}          # cfg_type -> (capability offset, bar, offset, length)
        at = self.config(0x34, 1)
        while at:
            if self.config(at, 1) == 0x09:
                self.caps[self.config(at + 3, 1)] = (at, self.config(at + 4, 1), self.config(at + 8),
                                                     self.config(at + 12))
            elif self.config(at, 1) == 0x11:
                self.msix_cap = at
            at = self.config(at + 1, 1)
        self.set_command(self.config(0x04, 2) | 0x4)        # bus master

    # configuration space
    def config(self, reg: int, size: int = 4) -> int:
        self.board.pio.write(0xCF8, 4, 0x80000000 | self.slot << 11 | (reg & 0xFC))
        return self.board.pio.read(0xCFC + (reg & 3), size)

    def set_config(self, reg: int, value: int, size: int = 4) -> None:
        self.board.pio.write(0xCF8, 4, 0x80000000 | self.slot << 11 | (reg & 0xFC))
        self.board.pio.write(0xCFC + (reg & 3), size, value)

    def set_command(self, value: int) -> None:
        self.set_config(0x04, value, 2)

    def bar(self, index: int) -> int:
        low = self.config(0x10 + 4 * index)
        address = low & ~0xF
        if low & 0x4:
            address |= self.config(0x14 + 4 * index) << 32
        return address

    def structure(self, cfg_type: int) -> int:
        _, bar, offset, _ = self.caps[cfg_type]
        return self.bar(bar) + offset

    # the common configuration structure
    def read(self, offset: int, size: int = 4) -> int:
        return self.board.mmio.read(self.structure(1) + offset, size)

    def write(self, offset: int, value: int, size: int = 4) -> None:
        self.board.mmio.write(self.structure(1) + offset, size, value)

    def device_features(self) -> int:
        self.write(0x00, 0)
        low = self.read(0x04)
        self.write(0x00, 1)
        return low | self.read(0x04) << 32

    def negotiate(self, wanted: int = bit(F_VERSION_1)) -> int:
        """Reset, acknowledge, accept ``wanted`` & offered features; the status afterwards."""
        self.write(0x14, 0, 1)
        self.write(0x14, STATUS_ACKNOWLEDGE, 1)
        self.write(0x14, STATUS_ACKNOWLEDGE | STATUS_DRIVER, 1)
        features = self.device_features() & wanted
        for sel in (0, 1):
            self.write(0x08, sel)
            self.write(0x0C, (features >> (32 * sel)) & 0xFFFFFFFF)
        self.write(0x14, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK, 1)
        return self.read(0x14, 1)

    def setup_queue(self, index: int, queue, vector=None) -> None:
        self.write(0x16, index, 2)
        self.write(0x18, queue.size, 2)
        if vector is not None:
            self.write(0x1A, vector, 2)
        for low, value in ((0x20, queue.desc), (0x28, queue.avail), (0x30, queue.used)):
            self.write(low, value & 0xFFFFFFFF)
            self.write(low + 4, value >> 32)
        self.write(0x1C, 1, 2)

    def driver_ok(self) -> None:
        self.write(0x14, self.read(0x14, 1) | STATUS_DRIVER_OK, 1)

    def notify(self, index: int) -> None:
        multiplier = self.config(self.caps[2][0] + 16)
        self.write(0x16, index, 2)
        self.write_structure(2, self.read(0x1E, 2) * multiplier, index, 2)

    def write_structure(self, cfg_type: int, offset: int, value: int, size: int) -> None:
        self.board.mmio.write(self.structure(cfg_type) + offset, size, value)

    def read_structure(self, cfg_type: int, offset: int, size: int) -> int:
        return self.board.mmio.read(self.structure(cfg_type) + offset, size)

    def isr(self) -> int:
        return self.read_structure(3, 0, 1)

    # MSI-X
    def msix_entry(self, vector: int, address: int, data: int, masked: bool = False) -> None:
        table = self.bar(self.config(self.msix_cap + 4) & 7) + (self.config(self.msix_cap + 4) & ~7)
        self.board.mmio.write(table + 16 * vector, 4, address)
        self.board.mmio.write(table + 16 * vector + 4, 4, 0)
        self.board.mmio.write(table + 16 * vector + 8, 4, data)
        self.board.mmio.write(table + 16 * vector + 12, 4, int(masked))

    def enable_msix(self, enable: bool = True) -> None:
        self.set_config(self.msix_cap + 2, 0x8000 if enable else 0, 2)
