"""The MSI capability (PCI Local Bus Specification 3.0, 6.8.1), after QEMU's hw/pci/msi.c.

Layout from the capability's offset: ID 0x05, next pointer, Message Control (16-bit),
Message Address (32-bit, bits 1:0 zero), then with 64-bit addressing the Message Upper
Address, then Message Data (16-bit), and with per-vector masking (after 2 reserved
bytes) the Mask Bits and Pending Bits (32-bit each).

Message Control: bit 0 MSI Enable, bits 3:1 Multiple Message Capable (log2 of the
vectors the function has, read-only), bits 6:4 Multiple Message Enable (log2 of the
vectors the system gave it; a value above the capable one reads back as the capable
one, as in QEMU), bit 7 64-bit address capable, bit 8 per-vector masking capable.

``notify(vector)`` signals a vector: with MSI enabled and the vector unmasked, the
function writes the message: ``deliver_msi(address, data)`` with the vector number in
the data's low bits when several vectors are enabled. A masked vector's message waits
in its pending bit and goes out when the guest unmasks it. Enabling MSI takes the
function's INTx pin down, which the function may no longer use.
"""

from __future__ import annotations

from typing import Callable, Optional

from devicemodel.pci import regs
from devicemodel.pci.device import PciDevice

CONTROL = 2
ADDRESS_LO = 4
CTRL_ENABLE = 0x0001
CTRL_MMC_SHIFT = 1
CTRL_MME_SHIFT = 4
CTRL_MME_MASK = 0x0070
CTRL_64BIT = 0x0080
CTRL_MASKBIT = 0x0100


class MsiCapability:
    def __init__(self, device: PciDevice, deliver_msi: Optional[Callable[[int, int], None]] = None, vectors: int = 1,
                 address64: bool = True, per_vector_mask: bool = False, offset=None):
        if vectors not in (1, 2, 4, 8, 16, 32):
            raise ValueError(f"MSI offers 1, 2, 4, 8, 16 or 32 vectors, not {vectors}")
        self.device = device
        self.deliver_msi = deliver_msi or device.send_msi
        self.vectors = vectors
        self.address64 = address64
        self.per_vector_mask = per_vector_mask
        self.data_offset = 12 if address64 else 8
        self.mask_offset = self.data_offset + 4 if per_vector_mask else None
        size = self.data_offset + (12 if per_vector_mask else 2)
        self.offset = device.add_capability(regs.CAP_ID_MSI, size, offset, written=self._written)
        base = self.offset
        control = ((vectors.bit_length() - 1) << CTRL_MMC_SHIFT) | (CTRL_64BIT if address64 else 0) \
            | (CTRL_MASKBIT if per_vector_mask else 0)
        device.set(base + CONTROL, 2, control)
        device.set_wmask(base + CONTROL, 2, CTRL_ENABLE | CTRL_MME_MASK)
        device.set_wmask(base + ADDRESS_LO, 4, 0xFFFFFFFC)
        if address64:
            device.set_wmask(base + ADDRESS_LO + 4, 4, 0xFFFFFFFF)
        device.set_wmask(base + self.data_offset, 2, 0xFFFF)
        if per_vector_mask:
            device.set_wmask(base + self.mask_offset, 4, (1 << vectors) - 1)

    # --- registers -------------------------------------------------------------------

    @property
    def control(self) -> int:
        return self.device.get(self.offset + CONTROL, 2)

    @property
    def enabled(self) -> bool:
        return bool(self.control & CTRL_ENABLE)

    @property
    def enabled_vectors(self) -> int:
        return 1 << ((self.control & CTRL_MME_MASK) >> CTRL_MME_SHIFT)

    @property
    def address(self) -> int:
        address = self.device.get(self.offset + ADDRESS_LO, 4)
        if self.address64:
            address |= self.device.get(self.offset + ADDRESS_LO + 4, 4) << 32
        return address

    @property
    def data(self) -> int:
        return self.device.get(self.offset + self.data_offset, 2)

    def is_masked(self, vector: int) -> bool:
        return self.per_vector_mask and bool(self.device.get(self.offset + self.mask_offset, 4) >> vector & 1)

    @property
    def pending(self) -> int:
        return self.device.get(self.offset + self.mask_offset + 4, 4) if self.per_vector_mask else 0

    def _set_pending(self, bits: int) -> None:
        self.device.set(self.offset + self.mask_offset + 4, 4, bits)

    # --- messages ---------------------------------------------------------------------

    def notify(self, vector: int = 0) -> None:
        if not 0 <= vector < self.vectors:
            raise ValueError(f"{self.device.name} has no MSI vector {vector}")
        if not self.enabled:
            return
        if self.is_masked(vector):
            self._set_pending(self.pending | 1 << vector)
            return
        data = self.data
        enabled = self.enabled_vectors
        if enabled > 1:
            data = (data & ~(enabled - 1)) | (vector & (enabled - 1))
        self.deliver_msi(self.address, data)

    def _written(self) -> None:
        """After a write: clamp Multiple Message Enable, drop INTx, send what was unmasked."""
        control = self.control
        capable = (control >> CTRL_MMC_SHIFT) & 0x7
        if (control & CTRL_MME_MASK) >> CTRL_MME_SHIFT > capable:
            self.device.set(self.offset + CONTROL, 2, (control & ~CTRL_MME_MASK) | capable << CTRL_MME_SHIFT)
        if not self.enabled:
            return
        if self.device.config[regs.INTERRUPT_PIN]:
            self.device.set_irq(0)
        if not self.per_vector_mask:
            return
        # vectors beyond those enabled lose what was pending (QEMU's msi_write_config)
        pending = self.pending & ((1 << self.enabled_vectors) - 1)
        self._set_pending(pending)
        for vector in range(self.enabled_vectors):
            if pending >> vector & 1 and not self.is_masked(vector):
                self._set_pending(self.pending & ~(1 << vector))
                self.notify(vector)
