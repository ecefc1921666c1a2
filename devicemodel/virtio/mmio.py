"""The virtio-mmio transport, version 2 (VIRTIO 1.x section 4.2.2), as QEMU's virtio-mmio
with force-legacy=off: a 512-byte register window and one level-triggered interrupt.

    0x000 MagicValue "virt"      0x004 Version 2           0x008 DeviceID   0x00c VendorID "QEMU"
    0x010 DeviceFeatures         0x014 DeviceFeaturesSel   0x020 DriverFeatures  0x024 DriverFeaturesSel
    0x030 QueueSel   0x034 QueueNumMax   0x038 QueueNum    0x044 QueueReady  0x050 QueueNotify
    0x060 InterruptStatus        0x064 InterruptACK        0x070 Status
    0x080/0x084 QueueDesc        0x090/0x094 QueueDriver   0x0a0/0x0a4 QueueDevice
    0x0b0/0x0b4 SHMLen (no shared memory: all-ones)        0x0fc ConfigGeneration
    0x100...    the device's configuration space (8-, 16- and 32-bit accesses)

Registers below 0x100 take 32-bit accesses only; others read 0 and are ignored (QEMU).
The queue registers latch the driver's values; QueueReady=1 hands them to the device,
which checks them. The feature words the driver wrote are negotiated when it sets
FEATURES_OK. The interrupt line is high while InterruptStatus is non-zero. A window
without a device (``device=None``) reads as QEMU's empty transports: the magic value,
version and vendor, zeros elsewhere (device ID 0: no device).
"""

from __future__ import annotations

from typing import Callable, Optional

from devicemodel.address_space import Region
from devicemodel.virtio.device import VirtioDevice
from devicemodel.virtio.spec import INTERRUPT_CONFIG, INTERRUPT_VRING
from devicemodel.virtio.transport import DriverRegisters

WINDOW_SIZE = 0x200
MAGIC = 0x74726976            # "virt"
VERSION = 2
VENDOR_QEMU = 0x554D4551      # "QEMU"

MAGIC_VALUE, VERSION_REG, DEVICE_ID, VENDOR_ID = 0x000, 0x004, 0x008, 0x00C
DEVICE_FEATURES, DEVICE_FEATURES_SEL = 0x010, 0x014
DRIVER_FEATURES, DRIVER_FEATURES_SEL = 0x020, 0x024
QUEUE_SEL, QUEUE_NUM_MAX, QUEUE_NUM, QUEUE_READY, QUEUE_NOTIFY = 0x030, 0x034, 0x038, 0x044, 0x050
INTERRUPT_STATUS, INTERRUPT_ACK, STATUS = 0x060, 0x064, 0x070
QUEUE_DESC_LOW, QUEUE_DESC_HIGH = 0x080, 0x084
QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH = 0x090, 0x094
QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH = 0x0A0, 0x0A4
SHM_LEN_LOW, SHM_LEN_HIGH = 0x0B0, 0x0B4
CONFIG_GENERATION = 0x0FC
CONFIG = 0x100

_ADDRESS_REGISTERS = {QUEUE_DESC_LOW: ("desc", False), QUEUE_DESC_HIGH: ("desc", True),
                      QUEUE_DRIVER_LOW: ("avail", False), QUEUE_DRIVER_HIGH: ("avail", True),
                      QUEUE_DEVICE_LOW: ("used", False), QUEUE_DEVICE_HIGH: ("used", True)}


class VirtioMmio:
    def __init__(self, base: int, irq: Callable[[int], None], device: Optional[VirtioDevice] = None,
                 name: str = "virtio-mmio"):
        self.base = base
        self.irq = irq
        self.region = Region(base=base, size=WINDOW_SIZE, name=name, read=self._read, write=self._write,
                             owner=self, sizes=(1, 2, 4, 8), impl_size=4)
        self.regions = ()      # port I/O: none (``region`` goes into the memory space)
        self.attach(device)

    def attach(self, device: Optional[VirtioDevice]) -> None:
        """Plug ``device`` into this transport."""
        self.device = device
        if device is not None:
            device.transport = self
        self._soft_reset()

    def _soft_reset(self) -> None:
        self.isr = 0
        self.regs = DriverRegisters(self.device) if self.device is not None else None
        self.irq(0)

    # --- interrupts (the device's transport interface) ----------------------------

    def queue_interrupt(self, index: int) -> None:
        self._raise(INTERRUPT_VRING)

    def config_interrupt(self) -> None:
        self._raise(INTERRUPT_CONFIG)

    def _raise(self, bits: int) -> None:
        self.isr |= bits
        self.irq(1)

    # --- registers ----------------------------------------------------------------

    def _read(self, offset: int, size: int) -> int:
        device = self.device
        if device is None:
            return {MAGIC_VALUE: MAGIC, VERSION_REG: VERSION, VENDOR_ID: VENDOR_QEMU}.get(offset, 0) if size == 4 else 0
        if offset >= CONFIG:
            return device.read_config(offset - CONFIG, size)
        if size != 4:
            return 0
        queue = self.regs.queue
        if offset == MAGIC_VALUE:
            return MAGIC
        if offset == VERSION_REG:
            return VERSION
        if offset == DEVICE_ID:
            return device.device_id
        if offset == VENDOR_ID:
            return VENDOR_QEMU
        if offset == DEVICE_FEATURES:
            return self.regs.device_features_word()
        if offset == QUEUE_NUM_MAX:
            return queue.max_size if queue is not None else 0
        if offset == QUEUE_READY:
            return int(queue is not None and queue.ready)
        if offset == INTERRUPT_STATUS:
            return self.isr
        if offset == STATUS:
            return device.status
        if offset in (SHM_LEN_LOW, SHM_LEN_HIGH):
            return 0xFFFFFFFF     # no shared memory region (length -1)
        if offset == CONFIG_GENERATION:
            return device.config_generation
        return 0

    def _write(self, offset: int, size: int, value: int) -> None:
        device = self.device
        if device is None:
            return
        if offset >= CONFIG:
            device.write_config(offset - CONFIG, size, value)
            return
        if size != 4:
            return
        regs = self.regs
        latch = regs.latch
        if offset == DEVICE_FEATURES_SEL:
            regs.device_features_sel = int(bool(value))     # any non-zero selector: word 1
        elif offset == DRIVER_FEATURES:
            regs.write_driver_features(value)
        elif offset == DRIVER_FEATURES_SEL:
            regs.driver_features_sel = int(bool(value))
        elif offset == QUEUE_SEL:
            regs.queue_sel = value
        elif offset == QUEUE_NUM and latch is not None:
            latch.num = value
        elif offset in _ADDRESS_REGISTERS and latch is not None:
            latch.set_half(*_ADDRESS_REGISTERS[offset], value)
        elif offset == QUEUE_READY and latch is not None:
            if value:
                regs.enable_queue()
            else:
                regs.queue.ready = False
        elif offset == QUEUE_NOTIFY:
            device.notify(value)
        elif offset == INTERRUPT_ACK:
            self.isr &= ~value
            self.irq(int(self.isr != 0))
        elif offset == STATUS:
            regs.write_status(value)
            if device.status == 0:
                self._soft_reset()
