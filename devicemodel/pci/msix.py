"""The MSI-X capability with its table and pending-bit array in memory BARs (PCI Local Bus
Specification 3.0, 6.8.2), after QEMU's hw/pci/msix.c.

Capability: ID 0x11, next pointer, Message Control (bits 10:0 table size - 1, bit 14
Function Mask, bit 15 MSI-X Enable; only the two top bits are writable), Table
Offset/BIR and PBA Offset/BIR (offset in bits 31:3, the BAR index in 2:0).

Table: 16 bytes per vector: Message Address (low, high), Message Data, Vector Control
(bit 0 masked; every vector starts masked). The PBA holds a pending bit per vector,
read-only. Both are reached with 32- or 64-bit accesses (QEMU's rule); they are regions
in the container ``AddressSpace`` of each BAR, at the offsets the capability gives.

``notify(vector)``: with MSI-X enabled, an unmasked vector (neither its mask bit nor
the function mask set) writes its message through ``deliver_msi(address, data)`` (None:
the function's ``send_msi``, to the APIC bus); a
masked one sets its pending bit instead, and the message goes out when the vector is
unmasked. Enabling MSI-X takes the function's INTx pin down.
"""

from __future__ import annotations

from typing import Callable, Optional

from devicemodel.address_space import AddressSpace, Region
from devicemodel.pci import regs
from devicemodel.pci.device import PciDevice

CAP_SIZE = 12
CONTROL = 2
TABLE = 4
PBA = 8
CTRL_MASKALL = 0x4000
CTRL_ENABLE = 0x8000
ENTRY_SIZE = 16
ENTRY_ADDR_LO, ENTRY_ADDR_HI, ENTRY_DATA, ENTRY_CTRL = 0, 4, 8, 12
ENTRY_MASKED = 0x1
MAX_VECTORS = 2048


class MsixCapability:
    def __init__(self, device: PciDevice, deliver_msi: Optional[Callable[[int, int], None]], vectors: int, *,
                 table_bar: int, table_space: AddressSpace, table_offset: int = 0,
                 pba_bar: int, pba_space: AddressSpace, pba_offset: int, offset=None):
        if not 1 <= vectors <= MAX_VECTORS:
            raise ValueError(f"MSI-X offers 1 to {MAX_VECTORS} vectors, not {vectors}")
        if table_offset & 7 or pba_offset & 7:
            raise ValueError("the MSI-X table and PBA offsets must be 8-byte aligned")
        self.device = device
        self.deliver_msi = deliver_msi or device.send_msi
        self.vectors = vectors
        self.table = bytearray(vectors * ENTRY_SIZE)
        self.pba = bytearray(((vectors + 63) // 64) * 8)
        self.offset = device.add_capability(regs.CAP_ID_MSIX, CAP_SIZE, offset, written=self._written)
        device.set(self.offset + CONTROL, 2, vectors - 1)
        device.set_wmask(self.offset + CONTROL, 2, CTRL_MASKALL | CTRL_ENABLE)
        device.set(self.offset + TABLE, 4, table_offset | table_bar)
        device.set(self.offset + PBA, 4, pba_offset | pba_bar)
        name = device.name
        table_space.add_region(Region(base=table_offset, size=len(self.table), name=f"{name}-msix-table",
                                      read=self._read_table, write=self._write_table, owner=self,
                                      sizes=(4, 8), impl_size=4))
        pba_space.add_region(Region(base=pba_offset, size=len(self.pba), name=f"{name}-msix-pba",
                                    read=self._read_pba, write=self._ignore, owner=self,
                                    sizes=(4, 8), impl_size=4))
        self.function_masked = True     # what the last look at the control register saw
        self.reset()

    def reset(self) -> None:
        self.table[:] = bytes(len(self.table))
        for vector in range(self.vectors):
            self.table[vector * ENTRY_SIZE + ENTRY_CTRL] = ENTRY_MASKED
        self.pba[:] = bytes(len(self.pba))
        self.device.set(self.offset + CONTROL, 2, self.vectors - 1)
        self.function_masked = self._function_masked()

    # --- state ---------------------------------------------------------------------

    @property
    def control(self) -> int:
        return self.device.get(self.offset + CONTROL, 2)

    @property
    def enabled(self) -> bool:
        return bool(self.control & CTRL_ENABLE)

    def _function_masked(self) -> bool:
        """Whether nothing may go out: MSI-X disabled or the whole function masked."""
        control = self.control
        return not control & CTRL_ENABLE or bool(control & CTRL_MASKALL)

    def _entry(self, vector: int, field: int) -> int:
        at = vector * ENTRY_SIZE + field
        return int.from_bytes(self.table[at:at + 4], "little")

    def is_masked(self, vector: int) -> bool:
        return self.function_masked or bool(self._entry(vector, ENTRY_CTRL) & ENTRY_MASKED)

    def is_pending(self, vector: int) -> bool:
        return bool(self.pba[vector // 8] >> (vector % 8) & 1)

    def _set_pending(self, vector: int, pending: bool) -> None:
        bit = 1 << (vector % 8)
        self.pba[vector // 8] = self.pba[vector // 8] | bit if pending else self.pba[vector // 8] & ~bit

    # --- messages -----------------------------------------------------------------------

    def notify(self, vector: int) -> None:
        if not 0 <= vector < self.vectors:
            raise ValueError(f"{self.device.name} has no MSI-X vector {vector}")
        if not self.enabled:
            return
        if self.is_masked(vector):
            self._set_pending(vector, True)
            return
        address = self._entry(vector, ENTRY_ADDR_LO) | self._entry(vector, ENTRY_ADDR_HI) << 32
        self.deliver_msi(address, self._entry(vector, ENTRY_DATA))

    def _unmasked(self, vector: int) -> None:
        """Send what ``vector`` held back while it was masked."""
        if not self.is_masked(vector) and self.is_pending(vector):
            self._set_pending(vector, False)
            self.notify(vector)

    def _written(self) -> None:
        """The control register may have changed: INTx off, held-back messages out."""
        was_masked, self.function_masked = self.function_masked, self._function_masked()
        if not self.enabled:
            return
        if self.device.config[regs.INTERRUPT_PIN]:
            self.device.set_irq(0)
        if was_masked and not self.function_masked:
            for vector in range(self.vectors):
                self._unmasked(vector)

    # --- the table and the PBA in their BARs ----------------------------------------------

    def _read_table(self, offset: int, size: int) -> int:
        return int.from_bytes(self.table[offset:offset + 4], "little")

    def _write_table(self, offset: int, size: int, value: int) -> None:
        vector = offset // ENTRY_SIZE
        self.table[offset:offset + 4] = value.to_bytes(4, "little")
        if offset % ENTRY_SIZE == ENTRY_CTRL:
            self._unmasked(vector)

    def _read_pba(self, offset: int, size: int) -> int:
        return int.from_bytes(self.pba[offset:offset + 4], "little")

    def _ignore(self, offset: int, size: int, value: int) -> None:
        pass

    def save_state(self) -> dict:
        return {"table": bytes(self.table), "pba": bytes(self.pba)}

    def load_state(self, state: dict) -> None:
        self.table[:] = state["table"]
        self.pba[:] = state["pba"]
        self.function_masked = self._function_masked()
