"""The transport-independent part of a virtio device (VIRTIO 1.x chapters 2 and 3): its
status, feature negotiation, virtqueues and configuration space, and the error state.

A transport (virtio-mmio, virtio-pci) owns the registers and the interrupt lines; it sets
``transport`` to an object with ``queue_interrupt(index)`` and ``config_interrupt()``,
calls ``set_status`` (with the feature bits the driver wrote), ``enable_queue`` and
``notify`` as the driver writes its registers, and ``read_config``/``write_config`` for
the device-specific configuration space. A device subclass supplies its ID, its feature bits, its
configuration bytes and ``handle_queue``.

Every device offers VIRTIO_F_VERSION_1 (these are modern devices only),
VIRTIO_F_INDIRECT_DESC and VIRTIO_F_EVENT_IDX. A driver that does not accept
VIRTIO_F_VERSION_1, or accepts a feature that was not offered, does not get FEATURES_OK.

When the driver breaks the virtqueue rules the device sets DEVICE_NEEDS_RESET, tells
the driver with a configuration change interrupt if DRIVER_OK is set (2.1.2), reports
the reason once on stderr (as QEMU's virtio_error) and ignores its queues until reset.
"""

from __future__ import annotations

from devicemodel.errors import error_report
from devicemodel.guest_memory import GuestMemory
from devicemodel.virtio.spec import (F_EVENT_IDX, F_INDIRECT_DESC, F_VERSION_1, STATUS_DEVICE_NEEDS_RESET,
                                     STATUS_DRIVER_OK, STATUS_FEATURES_OK, bit)
from devicemodel.virtio.virtqueue import Virtqueue, VirtqueueError

TRANSPORT_FEATURES = bit(F_VERSION_1) | bit(F_INDIRECT_DESC) | bit(F_EVENT_IDX)


class _NoTransport:
    def queue_interrupt(self, index: int) -> None:
        pass

    def config_interrupt(self) -> None:
        pass


class VirtioDevice:
    device_id = 0
    name = "virtio"

    def __init__(self, memory: GuestMemory, queue_sizes, default_queue_size: int = None):
        self.memory = memory
        self.queues = [Virtqueue(i, memory, size, default_queue_size) for i, size in enumerate(queue_sizes)]
        self.host_features = TRANSPORT_FEATURES | self.device_features()
        self.transport = _NoTransport()
        self.config_generation = 0
        self.reset()

    # --- what a device defines ------------------------------------------------------

    def device_features(self) -> int:
        """The device-specific feature bits offered."""
        return 0

    def config_bytes(self) -> bytes:
        """The device-specific configuration space, as the driver reads it now."""
        return b""

    def config_written(self, offset: int, data: bytes) -> None:
        """The driver wrote configuration bytes (ignored unless a device has writable fields)."""

    def handle_queue(self, queue: Virtqueue) -> None:
        """The driver notified ``queue``; VirtqueueError if it broke the rules."""

    def device_reset(self) -> None:
        """Forget device-specific state (the driver wrote status 0)."""

    # --- the transport's side ---------------------------------------------------------

    def reset(self) -> None:
        self.status = 0
        self.driver_features = 0
        self.broken = False
        for queue in self.queues:
            queue.reset()
        self.device_reset()

    def has_feature(self, feature: int) -> bool:
        return bool(self.driver_features & bit(feature))

    def set_status(self, value: int, driver_features: int = 0) -> None:
        """The driver wrote the status register (0 resets the device). When it sets
        FEATURES_OK, ``driver_features`` (what it wrote to the transport's feature
        registers) are negotiated; FEATURES_OK does not stick if they are unacceptable."""
        value &= 0xFF
        if value == 0:
            self.reset()
            return
        if value & STATUS_FEATURES_OK and not self.status & STATUS_FEATURES_OK:
            if driver_features & ~self.host_features or not driver_features & bit(F_VERSION_1):
                value &= ~STATUS_FEATURES_OK
            else:
                self.driver_features = driver_features
        driver_ok = value & STATUS_DRIVER_OK and not self.status & STATUS_DRIVER_OK
        self.status = (value & ~STATUS_DEVICE_NEEDS_RESET) | (self.status & STATUS_DEVICE_NEEDS_RESET)
        if driver_ok and self.broken:     # broken before the driver could hear of it
            self.transport.config_interrupt()

    def enable_queue(self, index: int, size: int, desc: int, avail: int, used: int) -> bool:
        """The driver made queue ``index`` live; False if its layout is invalid (the device
        then needs a reset)."""
        try:
            self.queues[index].enable(size, desc, avail, used, indirect=self.has_feature(F_INDIRECT_DESC),
                                      event_idx=self.has_feature(F_EVENT_IDX))
        except VirtqueueError as e:
            self.needs_reset(str(e))
            return False
        return True

    def notify(self, index: int) -> None:
        """The driver notified queue ``index`` (out-of-range indexes are ignored)."""
        if index < len(self.queues) and self.queues[index].ready:
            self.guarded(lambda: self.handle_queue(self.queues[index]))

    def guarded(self, work) -> None:
        """Do device work on guest memory, unless broken; a broken rule breaks the device."""
        if self.broken:
            return
        try:
            work()
        except VirtqueueError as e:
            self.needs_reset(str(e))

    def drain(self, queue: Virtqueue, serve, can_serve=lambda: True) -> None:
        """Serve every available chain (``serve(chain)`` returns the bytes written into it),
        then ask for the next kick -- checking again for chains that came meanwhile. While
        ``can_serve()`` is False the rest wait in the ring (the device drains again later)."""
        served = False
        while True:
            while can_serve() and (chain := queue.pop()) is not None:
                queue.push(chain, serve(chain))
                served = True
            if not can_serve():
                break
            queue.wants_kicks()
            if not queue.pending():
                break
        if served:
            self.used_buffers(queue)

    def needs_reset(self, reason: str) -> None:
        if self.broken:
            return
        self.broken = True
        error_report(f"{self.name}: {reason}; the device needs a reset")
        self.status |= STATUS_DEVICE_NEEDS_RESET
        if self.status & STATUS_DRIVER_OK:
            self.transport.config_interrupt()

    def used_buffers(self, queue: Virtqueue) -> None:
        """After pushing used entries: interrupt the driver if it wants to be told."""
        if queue.needs_interrupt():
            self.transport.queue_interrupt(queue.index)

    def read_config(self, offset: int, size: int) -> int:
        """Little-endian; bytes beyond the configuration space read as all-ones (as QEMU)."""
        config = self.config_bytes()
        if offset < 0 or offset + size > len(config):
            return (1 << (8 * size)) - 1
        return int.from_bytes(config[offset:offset + size], "little")

    def write_config(self, offset: int, size: int, value: int) -> None:
        if 0 <= offset and offset + size <= len(self.config_bytes()):
            self.config_written(offset, value.to_bytes(size, "little"))
