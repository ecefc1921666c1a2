"""The virtio memory balloon (VIRTIO 1.2 section 5.5), with QEMU's virtio-balloon choices.

The host asks the guest to give back memory: the configuration's ``num_pages`` is how
many 4 KiB pages the host wants the balloon to hold, ``actual`` how many the guest says
it holds (the guest writes it). Queues (128 entries each, as QEMU's):

    0 inflate   the guest hands pages over: buffers of le32 page frame numbers; each page
                that is guest RAM is discarded at once (``GuestMemory.discard``: the host
                gets the memory back, the page reads as zeros if the guest touches it)
    1 deflate   the guest takes pages back (nothing to do: a discarded page comes back
                as a fresh zeroed one)
    2 stats     with VIRTIO_BALLOON_F_STATS_VQ (offered, as QEMU does): the guest fills a
                buffer with {le16 tag; le64 val} statistics; the device keeps the buffer
                and hands it back when it wants fresh ones (``request_stats``, and every
                ``stats_interval`` seconds when that is set: QEMU's
                guest-stats-polling-interval)

``set_target(bytes)`` is QEMU's balloon command: the guest should end with ``bytes`` of
RAM (at most all of it), so ``num_pages`` = (RAM - target) / 4 KiB, announced with a
configuration change interrupt. A change of ``actual`` is reported through
``on_actual_change(bytes of RAM the guest has)``: QMP's BALLOON_CHANGE event.
VIRTIO_BALLOON_F_DEFLATE_ON_OOM is offered with ``deflate_on_oom``; page poisoning and
free page hinting/reporting are not. The configuration is {le32 num_pages; le32 actual}.
"""

from __future__ import annotations

import struct
from typing import Callable, Optional

from devicemodel.clock import NS_PER_SEC, DeviceTimer
from devicemodel.guest_memory import DmaError, GuestMemory
from devicemodel.virtio.device import VirtioDevice
from devicemodel.virtio.spec import ID_BALLOON, STATUS_DRIVER_OK, bit
from devicemodel.virtio.virtqueue import Chain, gather

F_MUST_TELL_HOST = 0
F_STATS_VQ = 1
F_DEFLATE_ON_OOM = 2

QUEUE_SIZE = 128
INFLATE, DEFLATE, STATS = 0, 1, 2
PFN_SHIFT = 12
PAGE_SIZE = 1 << PFN_SHIFT
CONFIG = struct.Struct("<II")
ACTUAL_OFFSET = 4
STAT = struct.Struct("<HQ")

# Statistic tags (5.5.6.3), with the names QEMU's guest-stats property uses
STAT_NAMES = ("stat-swap-in", "stat-swap-out", "stat-major-faults", "stat-minor-faults", "stat-free-memory",
              "stat-total-memory", "stat-available-memory", "stat-disk-caches", "stat-htlb-pgalloc",
              "stat-htlb-pgfail")


class VirtioBalloon(VirtioDevice):
    device_id = ID_BALLOON
    name = "virtio-balloon"

    def __init__(self, memory: GuestMemory, ram_size: int, deflate_on_oom: bool = False,
                 on_actual_change: Optional[Callable[[int], None]] = None, clock=None, stats_interval: int = 0):
        self.ram_size = ram_size
        self.deflate_on_oom = deflate_on_oom
        self.on_actual_change = on_actual_change
        self.stats_interval = stats_interval
        self.stats_timer = DeviceTimer(clock, self.request_stats) if clock is not None else None
        self.num_pages = 0
        self.discarded = 0              # pages given back to the host so far
        super().__init__(memory, [QUEUE_SIZE] * 3)

    # --- the host's side ----------------------------------------------------------

    def set_target(self, target: int) -> None:
        """Ask the guest to keep ``target`` bytes of RAM (QEMU's virtio_balloon_to_target)."""
        target = min(target, self.ram_size)
        if target <= 0:
            return
        self.num_pages = (self.ram_size - target) >> PFN_SHIFT
        self.config_generation += 1
        if self.status & STATUS_DRIVER_OK:
            self.transport.config_interrupt()

    @property
    def actual_bytes(self) -> int:
        """The RAM the guest keeps: all of it less what the balloon holds (QMP's "actual")."""
        return self.ram_size - (self.actual << PFN_SHIFT)

    def request_stats(self) -> bool:
        """Hand the guest's statistics buffer back, asking it for fresh values; False if
        the guest has not given one."""
        queue = self.queues[STATS]
        if self.stats_chain is None or not queue.ready:
            return False
        chain, self.stats_chain = self.stats_chain, None

        def give_back():
            queue.push(chain, 0)
            self.used_buffers(queue)
        self.guarded(give_back)
        return True

    # --- the device ---------------------------------------------------------------

    def device_features(self) -> int:
        return bit(F_STATS_VQ) | (bit(F_DEFLATE_ON_OOM) if self.deflate_on_oom else 0)

    def device_reset(self) -> None:
        self.actual = 0
        self.stats_chain: Optional[Chain] = None
        self.stats: dict[str, int] = {}
        self.stats_updates = 0
        if self.stats_timer is not None:
            self.stats_timer.cancel()

    def config_bytes(self) -> bytes:
        return CONFIG.pack(self.num_pages, self.actual)

    def config_written(self, offset: int, data: bytes) -> None:
        config = bytearray(self.config_bytes())
        config[offset:offset + len(data)] = data
        actual = CONFIG.unpack(config)[1]
        if offset + len(data) > ACTUAL_OFFSET and actual != self.actual:
            self.actual = actual
            if self.on_actual_change is not None:
                self.on_actual_change(self.actual_bytes)

    def handle_queue(self, queue) -> None:
        if queue.index == STATS:
            self._take_stats(queue)
        else:
            self.drain(queue, self._inflate if queue.index == INFLATE else self._deflate)

    def _pfns(self, chain: Chain) -> list[int]:
        data = gather(self.memory, chain.readable, 0, chain.readable_length & ~3)
        return [pfn for (pfn,) in struct.iter_unpack("<I", data)]

    def _inflate(self, chain: Chain) -> int:
        for pfn in self._pfns(chain):
            try:
                self.memory.discard(pfn << PFN_SHIFT, PAGE_SIZE)
                self.discarded += 1
            except DmaError:
                pass            # not RAM (QEMU ignores such pages too)
        return 0

    def _deflate(self, chain: Chain) -> int:
        self._pfns(chain)
        return 0

    def _take_stats(self, queue) -> None:
        """The guest's statistics buffer: read it and keep it until more are wanted."""
        if self.stats_chain is not None:        # a second buffer: the first goes back unused
            queue.push(self.stats_chain, 0)
            self.stats_chain = None
        chain = queue.pop()
        if chain is None:
            return
        data = gather(self.memory, chain.readable, 0, chain.readable_length - chain.readable_length % STAT.size)
        for tag, value in STAT.iter_unpack(data):
            if tag < len(STAT_NAMES):
                self.stats[STAT_NAMES[tag]] = value
        self.stats_updates += 1
        self.stats_chain = chain
        if self.stats_interval and self.stats_timer is not None:
            self.stats_timer.arm(self.stats_timer.clock.now_ns() + self.stats_interval * NS_PER_SEC)
