"""What the virtio transports (virtio-mmio 4.2.2, virtio-pci 4.1.4.3) keep alike for the
driver: the device's feature bits read a 32-bit word at a time through a selector, the
driver's feature words written the same way (the device negotiates them when the driver
sets FEATURES_OK), the queue selector, and for each queue the size and ring addresses
the driver writes before it enables the queue -- only then does the device check them.

Each transport decodes its own registers and selector rules and keeps one
``DriverRegisters`` for its device, made anew when the device is reset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from devicemodel.virtio.device import VirtioDevice

MASK32 = 0xFFFFFFFF
FEATURE_WORDS = 2


@dataclass
class QueueLatch:
    """What the driver wrote for one queue, until it enables the queue."""

    num: int = 0
    desc: int = 0
    avail: int = 0
    used: int = 0

    def set_half(self, name: str, high: bool, value: int) -> None:
        """Write the low or high 32 bits of ring address ``name``."""
        shift = 32 if high else 0
        old = getattr(self, name)
        setattr(self, name, (old & ~(MASK32 << shift)) | ((value & MASK32) << shift))


class DriverRegisters:
    def __init__(self, device: VirtioDevice):
        self.device = device
        self.device_features_sel = 0
        self.driver_features_sel = 0
        self.driver_features = [0] * FEATURE_WORDS
        self.queue_sel = 0
        self.latches = [QueueLatch(num=queue.default_size) for queue in device.queues]

    def device_features_word(self) -> int:
        sel = self.device_features_sel
        return (self.device.host_features >> (32 * sel)) & MASK32 if sel < FEATURE_WORDS else 0

    def driver_features_word(self) -> int:
        sel = self.driver_features_sel
        return self.driver_features[sel] if sel < FEATURE_WORDS else 0

    def write_driver_features(self, value: int) -> None:
        if self.driver_features_sel < FEATURE_WORDS:
            self.driver_features[self.driver_features_sel] = value & MASK32

    @property
    def queue(self):
        """The selected queue, or None if the device has no such queue."""
        queues = self.device.queues
        return queues[self.queue_sel] if self.queue_sel < len(queues) else None

    @property
    def latch(self) -> Optional[QueueLatch]:
        return self.latches[self.queue_sel] if self.queue_sel < len(self.latches) else None

    def enable_queue(self) -> bool:
        """Hand the selected queue's latched layout to the device; False if it refused it."""
        latch = self.latch
        return self.device.enable_queue(self.queue_sel, latch.num, latch.desc, latch.avail, latch.used)

    def write_status(self, value: int) -> None:
        """The driver wrote the device status (FEATURES_OK negotiates what it wrote)."""
        self.device.set_status(value, self.driver_features[0] | self.driver_features[1] << 32)
