"""Split virtqueues (VIRTIO 1.x section 2.7), the device's side.

The driver places descriptor chains in the descriptor table and their heads in the
available ring; the device takes them (``pop``), uses the buffers, and returns each head
with the number of bytes it wrote to the used ring (``push``).

    descriptor  {le64 addr; le32 len; le16 flags; le16 next}      16-byte aligned table
    avail       {le16 flags; le16 idx; le16 ring[size]; le16 used_event}       2-aligned
    used        {le16 flags; le16 idx; {le32 id; le32 len} ring[size]; le16 avail_event}  4-aligned

Everything in those structures comes from the guest and is checked before use; a
violation of the rules raises ``VirtqueueError``, after which the device needs a reset
(2.1.2). The rules: the queue size is a power of two no larger than the maximum; the
rings are aligned and in RAM; the available index moves ahead by at most the queue size;
heads and ``next`` indexes are inside their table; a chain is no longer than its table
(which also ends loops); every buffer is non-empty and lies in RAM; device-writable
buffers come after the readable ones; an indirect table (only with
VIRTIO_F_INDIRECT_DESC) is a non-empty multiple of 16 bytes, is not chained on with NEXT
and holds no indirect descriptor itself.

Notifications: with VIRTIO_F_EVENT_IDX the device interrupts when the used index passes
the driver's ``used_event`` (2.7.7.2) and publishes ``avail_event`` (the next available
index it will read) so that the driver kicks when there is work; without it the driver's
VIRTQ_AVAIL_F_NO_INTERRUPT flag suppresses interrupts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from devicemodel.guest_memory import DmaError, GuestMemory
from devicemodel.virtio.spec import AVAIL_F_NO_INTERRUPT, DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, MAX_QUEUE_SIZE

DESC_SIZE = 16
_DESC = struct.Struct("<QIHH")


class VirtqueueError(Exception):
    """The driver broke a virtqueue rule; the device must be reset."""


@dataclass
class Chain:
    """A descriptor chain taken from the available ring: its head, and its buffers as
    (guest-physical address, length), device-readable then device-writable."""

    head: int
    readable: list[tuple[int, int]] = field(default_factory=list)
    writable: list[tuple[int, int]] = field(default_factory=list)

    @property
    def readable_length(self) -> int:
        return sum(length for _, length in self.readable)

    @property
    def writable_length(self) -> int:
        return sum(length for _, length in self.writable)


def segments(buffers: list[tuple[int, int]], start: int, length: int) -> list[tuple[int, int]]:
    """The pieces of ``buffers`` holding bytes ``[start, start + length)`` of their concatenation."""
    pieces, position = [], 0
    end = start + length
    for addr, size in buffers:
        lo, hi = max(start, position), min(end, position + size)
        if lo < hi:
            pieces.append((addr + lo - position, hi - lo))
        position += size
        if position >= end:
            break
    return pieces


def gather(memory: GuestMemory, buffers: list[tuple[int, int]], start: int, length: int) -> bytes:
    return b"".join(memory.read(addr, size) for addr, size in segments(buffers, start, length))


def scatter(memory: GuestMemory, buffers: list[tuple[int, int]], start: int, data) -> int:
    """Write ``data`` into the buffers from byte ``start`` on (as much as fits); bytes written."""
    done = 0
    view = memoryview(data)
    for addr, size in segments(buffers, start, len(view)):
        memory.write(addr, view[done:done + size])
        done += size
    return done


class Virtqueue:
    def __init__(self, index: int, memory: GuestMemory, max_size: int, default_size: int = None):
        self.index = index
        self.memory = memory
        self.max_size = max_size
        self.default_size = default_size or max_size   # the size a transport suggests (virtio-pci)
        self.reset()

    def reset(self) -> None:
        self.ready = False
        self.size = 0
        self.desc = self.avail = self.used = 0
        self.last_avail = 0         # the next available ring entry to take
        self.used_idx = 0           # the used index the device has published
        self.indirect = self.event_idx = False
        self.signalled_used = 0
        self.signalled_valid = False

    def enable(self, size: int, desc: int, avail: int, used: int, indirect: bool, event_idx: bool) -> None:
        """The driver made the queue live (QueueReady / queue_enable); VirtqueueError if its
        size or ring addresses break the rules."""
        self.reset()
        if not 0 < size <= min(self.max_size, MAX_QUEUE_SIZE) or size & (size - 1):
            raise VirtqueueError(f"queue {self.index}: size {size} is not a power of two "
                                 f"between 1 and {self.max_size}")
        if desc % 16 or avail % 2 or used % 4:
            raise VirtqueueError(f"queue {self.index}: rings not aligned "
                                 f"(descriptors {desc:#x}, available {avail:#x}, used {used:#x})")
        try:
            self.memory.offset(desc, DESC_SIZE * size)
            self.memory.offset(avail, 6 + 2 * size)
            self.memory.offset(used, 6 + 8 * size)
        except DmaError as e:
            raise VirtqueueError(f"queue {self.index}: {e}") from None
        self.size, self.desc, self.avail, self.used = size, desc, avail, used
        self.indirect, self.event_idx = indirect, event_idx
        self.ready = True

    def _u16(self, gpa: int) -> int:
        try:
            return self.memory.read_int(gpa, 2)
        except DmaError as e:
            raise VirtqueueError(f"queue {self.index}: {e}") from None

    def _put(self, gpa: int, size: int, value: int) -> None:
        try:
            self.memory.write_int(gpa, size, value)
        except DmaError as e:
            raise VirtqueueError(f"queue {self.index}: {e}") from None

    # --- taking chains ------------------------------------------------------------

    def pending(self) -> int:
        """How many chains the driver has made available and the device not yet taken."""
        count = (self._u16(self.avail + 2) - self.last_avail) & 0xFFFF
        if count > self.size:
            raise VirtqueueError(f"queue {self.index}: available index moved {count} entries "
                                 f"ahead of the device, more than the queue size {self.size}")
        return count

    def pop(self):
        """The next available chain, or None."""
        if not self.ready or not self.pending():
            return None
        head = self._u16(self.avail + 4 + 2 * (self.last_avail % self.size))
        self.last_avail = (self.last_avail + 1) & 0xFFFF
        return self._walk(head)

    def _descriptor(self, table: int, index: int) -> tuple[int, int, int, int]:
        try:
            return _DESC.unpack(self.memory.read(table + DESC_SIZE * index, DESC_SIZE))
        except DmaError as e:
            raise VirtqueueError(f"queue {self.index}: {e}") from None

    def _walk(self, head: int) -> Chain:
        if head >= self.size:
            raise VirtqueueError(f"queue {self.index}: head {head} is outside the queue of {self.size}")
        chain = Chain(head)
        table, limit, index, count, nested = self.desc, self.size, head, 0, False
        while True:
            addr, length, flags, next_index = self._descriptor(table, index)
            if flags & DESC_F_INDIRECT:
                if not self.indirect:
                    raise VirtqueueError(f"queue {self.index}: indirect descriptor without VIRTIO_F_INDIRECT_DESC")
                if nested:
                    raise VirtqueueError(f"queue {self.index}: indirect descriptor inside an indirect table")
                if flags & DESC_F_NEXT:
                    raise VirtqueueError(f"queue {self.index}: indirect descriptor with NEXT set")
                if not length or length % DESC_SIZE or length // DESC_SIZE > MAX_QUEUE_SIZE:
                    raise VirtqueueError(f"queue {self.index}: indirect table of {length} bytes")
                try:
                    self.memory.offset(addr, length)
                except DmaError as e:
                    raise VirtqueueError(f"queue {self.index}: indirect table: {e}") from None
                table, limit, index, count, nested = addr, length // DESC_SIZE, 0, 0, True
                continue
            count += 1
            if count > limit:
                raise VirtqueueError(f"queue {self.index}: descriptor chain from head {head} loops "
                                     f"or is longer than its table ({limit})")
            if not length:
                raise VirtqueueError(f"queue {self.index}: zero-sized buffer")
            try:
                self.memory.offset(addr, length)
            except DmaError as e:
                raise VirtqueueError(f"queue {self.index}: buffer {e}") from None
            if flags & DESC_F_WRITE:
                chain.writable.append((addr, length))
            elif chain.writable:
                raise VirtqueueError(f"queue {self.index}: device-readable buffer after a writable one")
            else:
                chain.readable.append((addr, length))
            if not flags & DESC_F_NEXT:
                return chain
            if next_index >= limit:
                raise VirtqueueError(f"queue {self.index}: next index {next_index} outside the table of {limit}")
            index = next_index

    # --- returning chains ---------------------------------------------------------

    def unpop(self, count: int = 1) -> None:
        """Give the last ``count`` chains taken back to the available ring, unused."""
        self.last_avail = (self.last_avail - count) & 0xFFFF

    def push(self, chain: Chain, written: int) -> None:
        """Return a chain to the driver with the number of bytes written into it."""
        self.push_all([(chain, written)])

    def push_all(self, entries: list[tuple[Chain, int]]) -> None:
        """Return chains with the bytes written into each; the used index moves once, after
        all the entries, so the driver sees them together (a mergeable receive's buffers)."""
        for chain, written in entries:
            slot = self.used + 4 + 8 * (self.used_idx % self.size)
            self._put(slot, 4, chain.head)
            self._put(slot + 4, 4, min(written, 0xFFFFFFFF))
            self.used_idx = (self.used_idx + 1) & 0xFFFF
        self._put(self.used + 2, 2, self.used_idx)     # after the entries: the driver reads them next

    def wants_kicks(self) -> None:
        """Tell the driver (with EVENT_IDX) to notify as soon as it adds the next chain."""
        if self.event_idx and self.ready:
            self._put(self.used + 4 + 8 * self.size, 2, self.last_avail)

    def needs_interrupt(self) -> bool:
        """After pushing: whether the driver asked to be interrupted for these used entries."""
        if self.event_idx:
            used_event = self._u16(self.avail + 4 + 2 * self.size)
            old, new = self.signalled_used, self.used_idx
            valid, self.signalled_valid, self.signalled_used = self.signalled_valid, True, new
            return not valid or ((new - used_event - 1) & 0xFFFF) < ((new - old) & 0xFFFF)
        return not self._u16(self.avail) & AVAIL_F_NO_INTERRUPT
