"""The virtio entropy device (VIRTIO 1.x section 5.4): the driver queues device-writable
buffers and the device fills them with entropy from the host (``os.urandom``, the
kernel's getrandom, as QEMU's default rng-builtin backend). No features, no
configuration. A chain gets at most ``MAX_CHAIN_BYTES`` bytes; its used length says how
many."""

from __future__ import annotations

import os

from devicemodel.guest_memory import GuestMemory
from devicemodel.virtio.device import VirtioDevice
from devicemodel.virtio.spec import ID_ENTROPY, QEMU_QUEUE_MAX_SIZE
from devicemodel.virtio.virtqueue import Chain, scatter

MAX_CHAIN_BYTES = 64 * 1024
DEFAULT_QUEUE_SIZE = 8           # QEMU's virtio-rng queue


class VirtioRng(VirtioDevice):
    device_id = ID_ENTROPY
    name = "virtio-rng"

    def __init__(self, memory: GuestMemory, entropy=os.urandom):
        self.entropy = entropy
        super().__init__(memory, [QEMU_QUEUE_MAX_SIZE], default_queue_size=DEFAULT_QUEUE_SIZE)

    def handle_queue(self, queue) -> None:
        self.drain(queue, self._fill)

    def _fill(self, chain: Chain) -> int:
        return scatter(self.memory, chain.writable, 0, self.entropy(min(chain.writable_length, MAX_CHAIN_BYTES)))
