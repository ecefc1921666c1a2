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
