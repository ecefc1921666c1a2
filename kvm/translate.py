"""Guest-linear -> guest-physical translation with the guest's current paging state (KVM's
gva_to_gpa), for the hypervisor's own accesses to guest memory and for KVM_TRANSLATE."""

from kvm import vmx
from kvm._silicon import ffi, lib
from kvm.structs import Translation

TRANSLATE_WRITE = lib.TRANSLATE_WRITE
TRANSLATE_USER = lib.TRANSLATE_USER
TRANSLATE_PROBE = lib.TRANSLATE_PROBE
EXC_PF = 14


class PageFault(Exception):
    """The guest's page tables do not allow the access: inject #PF(error_code) at address."""

    def __init__(self, address: int, error_code: int):
        super().__init__(f"#PF at {address:#x}, error code {error_code:#x}")
        self.address = address
        self.error_code = error_code


class UnbackedPagingStructure(Exception):
    """A guest paging-structure entry lies outside guest RAM."""


def guest_cpl(vcpu) -> int:
    return (vcpu.vmread(vmx.GUEST_SS_AR_BYTES) >> 5) & 3


def translate(vcpu, gla: int, access: int = 0) -> int:
    """The guest-physical address of `gla` for an access (TRANSLATE_* flags), setting the
    guest's accessed/dirty flags as the processor would.  Raises PageFault."""
    gpa = ffi.new("uint64_t *")
    error = ffi.new("uint32_t *")
    while True:
        rc = lib.cpu_translate(vcpu.cpu, gla & ((1 << 64) - 1), access, gpa, error)
        if rc == lib.TRANSLATE_OK:
            return gpa[0]
        if rc == lib.TRANSLATE_PAGE_FAULT:
            raise PageFault(gla, error[0])
        if rc != lib.TRANSLATE_EPT_FAULT or not vcpu.vm.map_guest_page(gpa[0]):
            raise UnbackedPagingStructure(f"paging structure at {gpa[0]:#x} is not in guest RAM")


def inject_page_fault(vcpu, fault: PageFault):
    """#PF into the guest: CR2 is the hypervisor's to set, the event goes through VM entry."""
    lib.cpu_set_cr2(vcpu.cpu, fault.address)
    vcpu.inject_exception(EXC_PF, fault.error_code)


def kvm_translate(vcpu, gla: int) -> Translation:
    """KVM_TRANSLATE: a supervisor read walk; writeable and usermode say whether a
    supervisor write and a user read would be allowed (checked without side effects)."""
    try:
        gpa = translate(vcpu, gla)
    except (PageFault, UnbackedPagingStructure):
        return Translation(linear_address=gla)

    def allowed(access):
        try:
            translate(vcpu, gla, access | TRANSLATE_PROBE)
            return 1
        except (PageFault, UnbackedPagingStructure):
            return 0
    return Translation(linear_address=gla, physical_address=gpa, valid=1,
                       writeable=allowed(TRANSLATE_WRITE), usermode=allowed(TRANSLATE_USER))
