"""EPT paging structures that the hypervisor builds in its host-physical pages and fills
on demand from EPT violations, like KVM's TDP MMU.  kvm/'s compiled half owns the
tables (root_mmu.c: it populates them from the memslots without returning to Python);
this is the view of them that the rest of kvm/ and the tests use."""

from kvm import vmx
from kvm._silicon import lib
from kvm.hostmem import HostMemoryError

_ADDR_MASK = ((1 << 40) - 1) & ~0xFFF


class Ept:
    def __init__(self, hostmem, root_vm):
        self.hostmem = hostmem
        self._vm = root_vm
        self.root = lib.root_vm_ept_root(root_vm)
        if self.root == 0:
            raise HostMemoryError("hypervisor page pool exhausted")

    @property
    def eptp(self) -> int:
        return self.root | vmx.VMX_EPTP_MT_WB | vmx.VMX_EPTP_PWL_4 | vmx.VMX_EPTP_AD_ENABLE

    def map_page(self, gpa: int, hpa: int, writable: bool = True, executable: bool = True):
        perms = vmx.VMX_EPT_READABLE_MASK
        perms |= vmx.VMX_EPT_WRITABLE_MASK if writable else 0
        perms |= vmx.VMX_EPT_EXECUTABLE_MASK if executable else 0
        self.set_leaf(gpa, (hpa & _ADDR_MASK) | perms | vmx.VMX_EPT_MT_WB)

    def set_leaf(self, gpa: int, entry: int):
        """Write the 4 KiB leaf entry for gpa as given (any permissions, any bits)."""
        if lib.root_ept_set_leaf(self._vm, gpa, entry) != 0:
            raise HostMemoryError("hypervisor page pool exhausted")

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

    def lookup(self, gpa: int):
        """The 4 KiB leaf entry mapping gpa, or None."""
        level, entry = self.walk(gpa)[-1]
        return entry if level == 1 and entry & vmx.VMX_EPT_RWX_MASK else None

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
