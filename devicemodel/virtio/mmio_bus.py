"""Where virtio-mmio transports sit, after QEMU's microvm machine: eight 512-byte windows
from 0xfeb00000, transport i on interrupt line 5 + i (microvm's layout without ACPI,
whose interrupts are the legacy ISA lines). As in QEMU, a device goes on the last free
transport (the first device at 0xfeb00e00, IRQ 12), the windows all exist as soon as
one device does (the empty ones read as transports without a device), and each used
transport is announced on the Linux kernel command line as QEMU does it:
`` virtio_mmio.device=512@0xfeb00e00:12``."""

from __future__ import annotations

from typing import Callable

from devicemodel.address_space import AddressSpace
from devicemodel.errors import ConfigError
from devicemodel.virtio.device import VirtioDevice
from devicemodel.virtio.mmio import WINDOW_SIZE, VirtioMmio

MICROVM_VIRTIO_MMIO_BASE = 0xFEB00000
MICROVM_VIRTIO_TRANSPORTS = 8
MICROVM_VIRTIO_IRQ_BASE = 5


class VirtioMmioBus:
    def __init__(self, mmio: AddressSpace, irq_setter: Callable[[int], Callable[[int], None]],
                 base: int = MICROVM_VIRTIO_MMIO_BASE, count: int = MICROVM_VIRTIO_TRANSPORTS,
                 irq_base: int = MICROVM_VIRTIO_IRQ_BASE):
        self.irq_base = irq_base
        self.transports = [VirtioMmio(base + i * WINDOW_SIZE, irq_setter(irq_base + i), name=f"virtio-mmio.{i}")
                           for i in range(count)]
        self.plugged: list[int] = []        # transport indexes, in the order devices came
        for transport in self.transports:
            mmio.add_region(transport.region)

    def plug(self, device: VirtioDevice, driver: str) -> VirtioMmio:
        free = [i for i, t in enumerate(self.transports) if t.device is None]
        if not free:
            raise ConfigError(f"No 'virtio-bus' bus found for device '{driver}' "
                              f"(all {len(self.transports)} virtio-mmio transports are in use)")
        index = free[-1]
        self.transports[index].attach(device)
        self.plugged.append(index)
        return self.transports[index]

    def kernel_cmdline(self) -> str:
        """What QEMU's microvm appends to a Linux kernel's command line."""
        return "".join(f" virtio_mmio.device={WINDOW_SIZE}@{self.transports[i].base:#x}:{self.irq_base + i}"
                       for i in self.plugged)
