"""KVM_GET_DIRTY_LOG: the pages of a memslot written since the last call, from the EPT
dirty flags (the processor sets them on guest writes: EPTP enables accessed/dirty
flags) and from the pages the hypervisor itself wrote (string INS, ...).  Reading the
log clears the flags and flushes the processors' TLBs, whose cached writable
translations would otherwise let writes pass without setting the flag again."""

from kvm import vmx
from kvm._silicon import ffi, lib

PAGE_SHIFT = 12


def take_dirty_log(vm, slot) -> bytearray:
    """The bitmap (bit i: page i of the slot; a whole number of 64-bit words, as KVM's)."""
    npages = slot.memory_size >> PAGE_SHIFT
    bitmap = bytearray(((npages + 63) // 64) * 8)
    cleared = False
    for gpa, entry_hpa, entry in vm.ept.leaves(slot.guest_phys_addr, slot.memory_size):
        if entry & vmx.VMX_EPT_DIRTY_BIT:
            _mark(bitmap, (gpa - slot.guest_phys_addr) >> PAGE_SHIFT)
            vm.hostmem.write64(entry_hpa, entry & ~vmx.VMX_EPT_DIRTY_BIT)
            cleared = True
    lib.root_vm_take_hypervisor_dirty(vm.root, slot.slot, ffi.from_buffer(bitmap), len(bitmap))
    if cleared:
        vm.flush_tlbs()
    return bitmap


def _mark(bitmap: bytearray, page: int):
    bitmap[page >> 3] |= 1 << (page & 7)


def dirty_pages(bitmap) -> list:
    """The page numbers set in a dirty bitmap."""
    return [i for i in range(len(bitmap) * 8) if bitmap[i >> 3] >> (i & 7) & 1]
