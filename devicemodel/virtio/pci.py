"""The virtio-pci transport, modern interface only (VIRTIO 1.2 section 4.1), laid out as
QEMU's virtio-pci with disable-legacy=on: a PCI function with vendor 0x1af4, device
0x1040 + the virtio device ID, revision 1, subsystem 0x1af4:0x1100, interrupt pin A.

BARs (QEMU's layout):
    BAR 1   32-bit memory, 4 KiB (more for many vectors): the MSI-X table at 0 and the
            PBA in the upper half, when the function has MSI-X (``vectors`` > 0)
    BAR 4   64-bit prefetchable memory, 16 KiB: the virtio structures
            0x0000 common configuration   0x1000 ISR status
            0x2000 device configuration   0x3000 notifications, 4 bytes per queue

Capabilities, chained newest first as QEMU builds them: vendor-specific (0x09) virtio
capabilities {cap_vndr, cap_next, cap_len, cfg_type, bar, id, padding[2], le32 offset,
le32 length} for COMMON_CFG (0x40), ISR_CFG (0x50), DEVICE_CFG (0x60), NOTIFY_CFG
(0x70, + le32 notify_off_multiplier = 4) and PCI_CFG (0x84, + u8 pci_cfg_data[4]), then
MSI-X (0x98). Through PCI_CFG the driver reaches BAR 4 with configuration cycles alone:
it writes bar, offset and length (1, 2 or 4) and then reads or writes pci_cfg_data.

Common configuration, decoded at the exact offset of each field (QEMU's
virtio_pci_common_read/write; accesses of 1, 2 or 4 bytes; others read 0):
    0x00 device_feature_select  0x04 device_feature   0x08 driver_feature_select
    0x0c driver_feature         0x10 config_msix_vector  0x12 num_queues
    0x14 device_status          0x15 config_generation   0x16 queue_select
    0x18 queue_size             0x1a queue_msix_vector   0x1c queue_enable
    0x1e queue_notify_off       0x20/0x24 queue_desc     0x28/0x2c queue_driver
    0x30/0x34 queue_device      0x3a queue_reset

Feature word selectors above 1 read 0 and lose writes. The queue fields latch what the
driver writes for the selected queue; queue_enable = 1 hands them to the device, which
checks them (a bad layout, or writing 0 to queue_enable, which the driver must not do,
leaves the device needing a reset, as in QEMU). queue_notify_off is the queue's index:
the driver notifies queue n by writing anything at 0x3000 + 4n. With
VIRTIO_F_RING_RESET (offered, as QEMU does) writing 1 to queue_reset puts the selected
queue back to its defaults, disabled; it reads 0, the reset being done at once.

Interrupts: with MSI-X enabled, a used buffer of queue n signals queue n's
queue_msix_vector and a configuration change config_msix_vector; a vector the driver
sets beyond the function's reads back as VIRTIO_MSI_NO_VECTOR (0xffff), which signals
nothing. Without MSI-X the ISR's bits (0: queue, 1: configuration change) drive INTx
(pin A, through the PIIX3's PIRQ routing); reading the ISR returns and clears them, and
lowers the pin. Writing status 0 resets the device: every queue, the vectors back to
NO_VECTOR, the ISR; a system reset also disables MSI-X. Clearing the command register's
bus-master bit takes DRIVER_OK away, as in QEMU.
"""

from __future__ import annotations

import struct

from devicemodel.address_space import AddressSpace, Region
from devicemodel.errors import ConfigError
from devicemodel.pci import regs
from devicemodel.pci.device import PciDevice
from devicemodel.pci.msix import ENTRY_SIZE, MAX_VECTORS, MsixCapability
from devicemodel.virtio.device import VirtioDevice
from devicemodel.virtio.spec import INTERRUPT_CONFIG, INTERRUPT_VRING, STATUS_DRIVER_OK, bit
from devicemodel.virtio.transport import DriverRegisters, QueueLatch

VENDOR_ID = 0x1AF4
MODERN_DEVICE_ID_BASE = 0x1040
MODERN_REVISION = 1

MSIX_BAR = 1
MODERN_BAR = 4
STRUCTURE_SIZE = 0x1000
COMMON_OFFSET, ISR_OFFSET, DEVICE_OFFSET, NOTIFY_OFFSET = 0x0000, 0x1000, 0x2000, 0x3000
MODERN_BAR_SIZE = 0x4000
NOTIFY_OFF_MULTIPLIER = 4
QUEUE_SELECT_LIMIT = 1024          # QEMU's VIRTIO_QUEUE_MAX: higher selectors are ignored

# Virtio PCI capability types (4.1.4)
CAP_COMMON_CFG, CAP_NOTIFY_CFG, CAP_ISR_CFG, CAP_DEVICE_CFG, CAP_PCI_CFG = 1, 2, 3, 4, 5
CAP_ID_VENDOR = 0x09
VirtioCap = struct.Struct("<BBBBBBxxII")       # vndr, next, len, cfg_type, bar, id, offset, length
CAP_LEN = VirtioCap.size                       # 16
NOTIFY_CAP_LEN = CAP_LEN + 4
PCI_CFG_CAP_LEN = CAP_LEN + 4
CAP_BAR, CAP_OFFSET, CAP_LENGTH, PCI_CFG_DATA = 4, 8, 12, 16

NO_VECTOR = 0xFFFF
F_RING_RESET = 40

# Common configuration fields
DEVICE_FEATURE_SELECT, DEVICE_FEATURE = 0x00, 0x04
DRIVER_FEATURE_SELECT, DRIVER_FEATURE = 0x08, 0x0C
CONFIG_MSIX_VECTOR, NUM_QUEUES, DEVICE_STATUS, CONFIG_GENERATION = 0x10, 0x12, 0x14, 0x15
QUEUE_SELECT, QUEUE_SIZE, QUEUE_MSIX_VECTOR, QUEUE_ENABLE, QUEUE_NOTIFY_OFF = 0x16, 0x18, 0x1A, 0x1C, 0x1E
QUEUE_DESC_LO, QUEUE_DESC_HI, QUEUE_DRIVER_LO, QUEUE_DRIVER_HI = 0x20, 0x24, 0x28, 0x2C
QUEUE_DEVICE_LO, QUEUE_DEVICE_HI, QUEUE_RESET = 0x30, 0x34, 0x3A
_RING_HALVES = {QUEUE_DESC_LO: ("desc", False), QUEUE_DESC_HI: ("desc", True),
                QUEUE_DRIVER_LO: ("avail", False), QUEUE_DRIVER_HI: ("avail", True),
                QUEUE_DEVICE_LO: ("used", False), QUEUE_DEVICE_HI: ("used", True)}

# PCI class codes of QEMU's virtio-pci devices
CLASS_STORAGE_SCSI = 0x0100
CLASS_NETWORK_ETHERNET = 0x0200
CLASS_COMMUNICATION_OTHER = 0x0780
CLASS_OTHERS = 0x00FF


def msix_bar_layout(vectors: int) -> tuple[int, int]:
    """(BAR size, PBA offset) of QEMU's msix_init_exclusive_bar: 4 KiB with the PBA in
    the upper half while the table fits in the lower one."""
    pba_offset = max(0x800, vectors * ENTRY_SIZE)
    size = max(0x1000, pba_offset + (vectors + 63) // 64 * 8)
    return 1 << (size - 1).bit_length(), pba_offset


class VirtioPci(PciDevice):
    """The PCI function carrying ``device``; ``vectors`` MSI-X vectors (0: INTx only)."""

    def __init__(self, device: VirtioDevice, *, vectors: int, class_code: int, name: str):
        if not 0 <= vectors <= MAX_VECTORS:
            raise ConfigError(f"vectors must be between 0 and {MAX_VECTORS}")
        super().__init__(vendor_id=VENDOR_ID, device_id=MODERN_DEVICE_ID_BASE + device.device_id,
                         revision=MODERN_REVISION, class_code=class_code, interrupt_pin=1, name=name)
        self.device = device
        device.host_features |= bit(F_RING_RESET)        # this transport has queue_reset
        device.transport = self
        self.modern = AddressSpace(f"{name}-virtio", MODERN_BAR_SIZE)
        for offset, label, read, write in (
                (COMMON_OFFSET, "common", self._read_common, self._write_common),
                (ISR_OFFSET, "isr", self._read_isr, None),
                (DEVICE_OFFSET, "device", self._read_device_config, self._write_device_config),
                (NOTIFY_OFFSET, "notify", lambda offset, size: 0, self._notify)):
            self.modern.add_region(Region(base=offset, size=STRUCTURE_SIZE, name=f"virtio-pci-{label}",
                                          read=read, write=write or (lambda o, s, v: None), owner=self))
        self.add_bar(MODERN_BAR, MODERN_BAR_SIZE, mem64=True, prefetchable=True, space=self.modern)
        for cfg_type, offset in ((CAP_COMMON_CFG, COMMON_OFFSET), (CAP_ISR_CFG, ISR_OFFSET),
                                 (CAP_DEVICE_CFG, DEVICE_OFFSET)):
            self._add_virtio_cap(cfg_type, offset, STRUCTURE_SIZE, CAP_LEN)
        notify = self._add_virtio_cap(CAP_NOTIFY_CFG, NOTIFY_OFFSET, STRUCTURE_SIZE, NOTIFY_CAP_LEN)
        self.set(notify + CAP_LEN, 4, NOTIFY_OFF_MULTIPLIER)
        self.pci_cfg = self._add_virtio_cap(CAP_PCI_CFG, 0, 0, PCI_CFG_CAP_LEN, bar=0)
        for field, size in ((CAP_BAR, 1), (CAP_OFFSET, 4), (CAP_LENGTH, 4), (PCI_CFG_DATA, 4)):
            self.set_wmask(self.pci_cfg + field, size, (1 << (8 * size)) - 1)
        self.msix = None
        if vectors:
            size, pba_offset = msix_bar_layout(vectors)
            space = AddressSpace(f"{name}-msix", size)
            self.add_bar(MSIX_BAR, size, space=space)
            self.msix = MsixCapability(self, None, vectors, table_bar=MSIX_BAR, table_space=space,
                                       pba_bar=MSIX_BAR, pba_space=space, pba_offset=pba_offset)
        self._transport_reset()

    def _add_virtio_cap(self, cfg_type: int, offset: int, length: int, cap_len: int, bar: int = MODERN_BAR) -> int:
        at = self.add_capability(CAP_ID_VENDOR, cap_len)
        self.config[at + 2:at + CAP_LEN] = VirtioCap.pack(0, 0, cap_len, cfg_type, bar, 0, offset, length)[2:]
        return at

    @property
    def vectors(self) -> int:
        return self.msix.vectors if self.msix is not None else 0

    # --- resets ---------------------------------------------------------------------

    def _transport_reset(self) -> None:
        """What the transport forgets when the device resets (QEMU's virtio_pci_reset)."""
        self.regs = DriverRegisters(self.device)
        self.config_vector = NO_VECTOR
        self.queue_vectors = [NO_VECTOR] * len(self.device.queues)
        self.isr = 0
        self.set_irq(0)

    def reset(self) -> None:
        """A system reset: the device, the transport and MSI-X go back to power-on."""
        self.device.reset()
        self._transport_reset()
        if self.msix is not None:
            self.msix.reset()

    # --- interrupts (the device's transport interface) --------------------------------

    def queue_interrupt(self, index: int) -> None:
        self._signal(INTERRUPT_VRING, self.queue_vectors[index])

    def config_interrupt(self) -> None:
        self._signal(INTERRUPT_CONFIG, self.config_vector)

    def _signal(self, isr_bit: int, vector: int) -> None:
        self.isr |= isr_bit
        if self.msix is not None and self.msix.enabled:
            if vector != NO_VECTOR:
                self.msix.notify(vector)
        else:
            self.set_irq(1)

    def _vector(self, value: int) -> int:
        """What a vector register keeps: the vector if the function has it, else NO_VECTOR."""
        return value if value < self.vectors else NO_VECTOR

    # --- BAR 4 ----------------------------------------------------------------------

    def _read_common(self, offset: int, size: int) -> int:
        regs_, device = self.regs, self.device
        queue, index = regs_.queue, regs_.queue_sel
        if offset == DEVICE_FEATURE_SELECT:
            return regs_.device_features_sel
        if offset == DEVICE_FEATURE:
            return regs_.device_features_word()
        if offset == DRIVER_FEATURE_SELECT:
            return regs_.driver_features_sel
        if offset == DRIVER_FEATURE:
            return regs_.driver_features_word()
        if offset == CONFIG_MSIX_VECTOR:
            return self.config_vector
        if offset == NUM_QUEUES:
            return len(device.queues)
        if offset == DEVICE_STATUS:
            return device.status
        if offset == CONFIG_GENERATION:
            return device.config_generation & 0xFF
        if offset == QUEUE_SELECT:
            return index
        if queue is None:
            return NO_VECTOR if offset == QUEUE_MSIX_VECTOR else 0
        if offset == QUEUE_SIZE:
            return regs_.latch.num
        if offset == QUEUE_MSIX_VECTOR:
            return self.queue_vectors[index]
        if offset == QUEUE_ENABLE:
            return int(queue.ready)
        if offset == QUEUE_NOTIFY_OFF:
            return index
        if offset in _RING_HALVES:
            name, high = _RING_HALVES[offset]
            return (getattr(regs_.latch, name) >> (32 if high else 0)) & 0xFFFFFFFF
        return 0

    def _write_common(self, offset: int, size: int, value: int) -> None:
        regs_, device = self.regs, self.device
        if offset == DEVICE_FEATURE_SELECT:
            regs_.device_features_sel = value
        elif offset == DRIVER_FEATURE_SELECT:
            regs_.driver_features_sel = value
        elif offset == DRIVER_FEATURE:
            regs_.write_driver_features(value)
        elif offset == CONFIG_MSIX_VECTOR:
            self.config_vector = self._vector(value)
        elif offset == DEVICE_STATUS:
            regs_.write_status(value)
            if device.status == 0:
                self._transport_reset()
        elif offset == QUEUE_SELECT:
            if value < QUEUE_SELECT_LIMIT:
                regs_.queue_sel = value
        elif regs_.queue is None:
            return
        elif offset == QUEUE_SIZE:
            regs_.latch.num = value
        elif offset == QUEUE_MSIX_VECTOR:
            self.queue_vectors[regs_.queue_sel] = self._vector(value)
        elif offset == QUEUE_ENABLE:
            if value == 1:
                regs_.enable_queue()
            else:
                device.needs_reset(f"wrong value for queue_enable: {value:#x}")
        elif offset in _RING_HALVES:
            regs_.latch.set_half(*_RING_HALVES[offset], value)
        elif offset == QUEUE_RESET and value == 1 and device.has_feature(F_RING_RESET):
            self._reset_queue(regs_.queue_sel)

    def _reset_queue(self, index: int) -> None:
        """VIRTIO_F_RING_RESET: the queue back to its defaults, disabled."""
        queue = self.device.queues[index]
        queue.reset()
        self.regs.latches[index] = QueueLatch(num=queue.default_size)
        self.queue_vectors[index] = NO_VECTOR

    def _read_isr(self, offset: int, size: int) -> int:
        value, self.isr = self.isr, 0
        self.set_irq(0)
        return value

    def _read_device_config(self, offset: int, size: int) -> int:
        return self.device.read_config(offset, size)

    def _write_device_config(self, offset: int, size: int, value: int) -> None:
        self.device.write_config(offset, size, value)

    def _notify(self, offset: int, size: int, value: int) -> None:
        self.device.notify(offset // NOTIFY_OFF_MULTIPLIER)

    # --- configuration space ------------------------------------------------------------

    def _pci_cfg_window(self, offset: int, size: int):
        """(BAR 4 offset, length) that an access to pci_cfg_data reaches, or None."""
        data = self.pci_cfg + PCI_CFG_DATA
        if not (offset < data + 4 and data < offset + size):
            return None
        length = self.get(self.pci_cfg + CAP_LENGTH, 4)
        if self.config[self.pci_cfg + CAP_BAR] != MODERN_BAR or length not in (1, 2, 4):
            return None
        at = self.get(self.pci_cfg + CAP_OFFSET, 4) & ~(length - 1)      # aligned, as QEMU
        return (at, length) if at + length <= MODERN_BAR_SIZE else None

    def read_config(self, offset: int, size: int) -> int:
        window = self._pci_cfg_window(offset, size)
        if window is not None:
            at, length = window
            self.set(self.pci_cfg + PCI_CFG_DATA, length, self.modern.read(at, length))
        return super().read_config(offset, size)

    def write_config(self, offset: int, size: int, value: int) -> None:
        super().write_config(offset, size, value)
        if offset <= regs.COMMAND < offset + size and not self.command & regs.COMMAND_MASTER \
                and self.device.status & STATUS_DRIVER_OK:
            self.device.set_status(self.device.status & ~STATUS_DRIVER_OK)
        window = self._pci_cfg_window(offset, size)
        if window is not None:
            at, length = window
            self.modern.write(at, length, self.get(self.pci_cfg + PCI_CFG_DATA, length))
