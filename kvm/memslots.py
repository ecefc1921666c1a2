"""Memory slots: guest-physical ranges backed by userspace buffers (KVM_SET_USER_MEMORY_REGION)."""

import bisect
from dataclasses import dataclass

from kvm.constants import KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY


@dataclass
class MemSlot:
    slot: int
    guest_phys_addr: int
    memory_size: int
    buffer: object
    flags: int
    hpa: int

    @property
    def end(self) -> int:
        return self.guest_phys_addr + self.memory_size

    @property
    def readonly(self) -> bool:
        return bool(self.flags & KVM_MEM_READONLY)

    @property
    def logs_dirty_pages(self) -> bool:
        return bool(self.flags & KVM_MEM_LOG_DIRTY_PAGES)

    def hpa_of(self, gpa: int) -> int:
        return self.hpa + (gpa - self.guest_phys_addr)


class MemSlots:
    def __init__(self):
        self._by_id = {}
        self._sorted = []   # (guest_phys_addr, MemSlot)

    def add(self, slot: MemSlot):
        for other in self._by_id.values():
            if other.slot != slot.slot and slot.guest_phys_addr < other.end and other.guest_phys_addr < slot.end:
                raise ValueError(f"memory slot {slot.slot} overlaps slot {other.slot}")
        self._by_id[slot.slot] = slot
        self._rebuild()

    def remove(self, slot_id: int):
        slot = self._by_id.pop(slot_id, None)
        self._rebuild()
        return slot

    def get(self, slot_id: int):
        return self._by_id.get(slot_id)

    def _rebuild(self):
        self._sorted = sorted((s.guest_phys_addr, s) for s in self._by_id.values())
        self._bases = [base for base, _ in self._sorted]

    def find(self, gpa: int):
        """The slot containing gpa, or None (then the address is MMIO)."""
        i = bisect.bisect_right(self._bases, gpa) - 1
        if i >= 0:
            slot = self._sorted[i][1]
            if gpa < slot.end:
                return slot
        return None

    def __iter__(self):
        return iter(s for _, s in self._sorted)
