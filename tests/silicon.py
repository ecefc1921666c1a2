"""A test harness that plays hypervisor itself: a VM and vCPU set up by kvm/, entered
with the silicon's VMLAUNCH/VMRESUME directly, so that tests see the raw VM exits and
choose the EPT entries (a hypervisor written from the SDM, in a few lines)."""

import mmap

from devicemodel.entry_state import set_protected_mode_entry
from kvm import Kvm, vmx
from kvm._silicon import lib

CODE_GPA = 0x1000


class RawGuest:
    def __init__(self, code: bytes, ram_size: int = 4 << 20, populate: bool = True):
        self.kvm = Kvm()
        self.vm = self.kvm.create_vm()
        self.ram = mmap.mmap(-1, ram_size)
        self.ram[CODE_GPA:CODE_GPA + len(code)] = code
        self.vm.set_user_memory_region(0, 0, ram_size, self.ram)
        self.slot = self.vm.memslots.get(0)
        self.vcpu = self.vm.create_vcpu(0)
        set_protected_mode_entry(self.vcpu, CODE_GPA, 0, 0)
        self._launched = False
        if populate:
            self.map(CODE_GPA, vmx.VMX_EPT_RWX_MASK)

    def map(self, gpa: int, perms: int, extra: int = vmx.VMX_EPT_MT_WB):
        """Map the guest page at gpa to its RAM with the given EPT permission bits."""
        page = gpa & ~0xFFF
        self.vm.ept.set_leaf(page, self.slot.hpa_of(page) | perms | extra)

    def leaf(self, gpa: int) -> int:
        return self.vm.ept.lookup(gpa) or 0

    def enter(self) -> int:
        cpu = self.vcpu.cpu
        rc = lib.vmx_vmresume(cpu) if self._launched else lib.vmx_vmlaunch(cpu)
        if rc == vmx.VMX_EXITED and not self.reason() & vmx.EXIT_REASON_FAILED_VMENTRY:
            self._launched = True
        return rc

    def run_to_exit(self) -> int:
        assert self.enter() == vmx.VMX_EXITED
        return self.reason()

    def read(self, field: int) -> int:
        return self.vcpu.vmread(field)

    def reason(self) -> int:
        return self.read(vmx.VM_EXIT_REASON)

    def qualification(self) -> int:
        return self.read(vmx.EXIT_QUALIFICATION)
