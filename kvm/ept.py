"""EPT paging structures that the hypervisor builds in its host-physical pages and fills
on demand from EPT violations, like KVM's TDP MMU."""

from kvm import vmx

_ADDR_MASK = ((1 << 40) - 1) & ~0xFFF
_NONLEAF = vmx.VMX_EPT_RWX_MASK


class Ept:
    def __init__(self, hostmem):
        self.hostmem = hostmem
        self.root = hostmem.alloc_page()
        self._tables = [self.root]

    @property
    def eptp(self) -> int:
        return self.root | vmx.VMX_EPTP_MT_WB | vmx.VMX_EPTP_PWL_4 | vmx.VMX_EPTP_AD_ENABLE

    def _leaf_slot(self, gpa: int, create: bool):
        table = self.root
        for level in (4, 3, 2):
            slot = table + ((gpa >> (12 + 9 * (level - 1))) & 0x1FF) * 8
            entry = self.hostmem.read64(slot)
            if not entry & vmx.VMX_EPT_RWX_MASK:
                if not create:
                    return None
                page = self.hostmem.alloc_page()
                self._tables.append(page)
                entry = page | _NONLEAF
                self.hostmem.write64(slot, entry)
            table = entry & _ADDR_MASK
        return table + ((gpa >> 12) & 0x1FF) * 8

    def map_page(self, gpa: int, hpa: int, writable: bool = True, executable: bool = True):
        perms = vmx.VMX_EPT_READABLE_MASK
        perms |= vmx.VMX_EPT_WRITABLE_MASK if writable else 0
        perms |= vmx.VMX_EPT_EXECUTABLE_MASK if executable else 0
        self.set_leaf(gpa, (hpa & _ADDR_MASK) | perms | vmx.VMX_EPT_MT_WB)

    def set_leaf(self, gpa: int, entry: int):
        """Write the 4 KiB leaf entry for gpa as given (any permissions, any bits)."""
        self.hostmem.write64(self._leaf_slot(gpa, True), entry)

    def leaves(self, gpa: int, size: int):
        """(guest-physical page, address of its leaf entry, entry) for the 4 KiB pages
        mapped in [gpa, gpa + size), visiting only the tables that exist."""
        end = gpa + size

        def walk(table, base, level):
            span = 1 << (12 + 9 * (level - 1))
            first = max(0, (gpa - base) // span)
            last = min(511, (end - 1 - base) // span)
            entries = self.hostmem.read_table(table)
            for i in range(first, last + 1):
                entry = entries[i]
                if not entry & vmx.VMX_EPT_RWX_MASK:
                    continue
                if level == 1:
                    yield base + i * span, table + i * 8, entry
                else:
                    yield from walk(entry & _ADDR_MASK, base + i * span, level - 1)
        if size > 0:
            yield from walk(self.root, 0, 4)

    def unmap_range(self, gpa: int, size: int):
        """Drop leaf entries (the caller flushes the TLB with INVEPT)."""
        for _, slot, _ in list(self.leaves(gpa, size)):
            self.hostmem.write64(slot, 0)

    def lookup(self, gpa: int):
        """The leaf entry mapping gpa, or None."""
        slot = self._leaf_slot(gpa, False)
        if slot is None:
            return None
        entry = self.hostmem.read64(slot)
        return entry if entry & vmx.VMX_EPT_RWX_MASK else None

    def walk(self, gpa: int):
        """The entries the hardware walk would read, level by level: [(level, entry)]."""
        out = []
        table = self.root
        for level in (4, 3, 2, 1):
            entry = self.hostmem.read64(table + ((gpa >> (12 + 9 * (level - 1))) & 0x1FF) * 8)
            out.append((level, entry))
            if not entry & vmx.VMX_EPT_RWX_MASK or (level in (2, 3) and entry & vmx.VMX_EPT_LARGE):
                break
            table = entry & _ADDR_MASK
        return out

    def free(self):
        for page in self._tables:
            self.hostmem.free_page(page)
        self._tables = []
