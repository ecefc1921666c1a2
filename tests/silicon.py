"""A test harness that plays hypervisor itself: a VM and vCPU set up by kvm/, entered
with the silicon's VMLAUNCH/VMRESUME directly, so that tests see the raw VM exits and
choose the EPT entries (a hypervisor written from the SDM, in a few lines)."""

import mmap
import struct

from devicemodel.entry_state import set_protected_mode_entry
from kvm import Kvm, vmx
from kvm._silicon import lib

CODE_GPA = 0x1000
GDT_GPA, IDT_GPA, STACK_TOP = 0x3000, 0x4000, 0x8000
CODE_SELECTOR = 0x10   # the entry state's flat code segment


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

    def map_rw(self, *gpas: int):
        for gpa in gpas:
            self.map(gpa, vmx.VMX_EPT_RWX_MASK)

    def with_idt(self, handlers: dict):
        """A GDT with the entry state's flat segments, an IDT with 32-bit interrupt gates
        {vector: handler address}, and a stack below STACK_TOP."""
        flat = lambda access: struct.pack("<HHBBBB", 0xFFFF, 0, 0, access, 0xCF, 0)  # noqa: E731
        self.ram[GDT_GPA:GDT_GPA + 32] = bytes(16) + flat(0x9B) + flat(0x93)
        for vector, handler in handlers.items():
            gate = struct.pack("<HHBBH", handler & 0xFFFF, CODE_SELECTOR, 0, 0x8E, handler >> 16)
            self.ram[IDT_GPA + vector * 8:IDT_GPA + vector * 8 + 8] = gate
        self.vcpu.vmwrite(vmx.GUEST_GDTR_BASE, GDT_GPA)
        self.vcpu.vmwrite(vmx.GUEST_GDTR_LIMIT, 31)
        self.vcpu.vmwrite(vmx.GUEST_IDTR_BASE, IDT_GPA)
        self.vcpu.vmwrite(vmx.GUEST_IDTR_LIMIT, 0x7FF)
        self.vcpu.vmwrite(vmx.GUEST_RSP, STACK_TOP)
        self.map_rw(GDT_GPA, IDT_GPA, STACK_TOP - 0x1000)
        return self

    def set_dr(self, n: int, value: int):
        """Root mode's MOV to DRn (DR7 is the guest's through the VMCS)."""
        if n == 7:
            self.vcpu.vmwrite(vmx.GUEST_DR7, value)
        else:
            assert lib.cpu_set_dr(self.vcpu.cpu, n, value) == 0

    def dr(self, n: int) -> int:
        return self.read(vmx.GUEST_DR7) if n == 7 else lib.cpu_get_dr(self.vcpu.cpu, n)

    def set_controls(self, field: int, set_bits: int = 0, clear_bits: int = 0):
        self.vcpu.vmwrite(field, (self.read(field) | set_bits) & ~clear_bits)

    def rflags(self) -> int:
        return self.read(vmx.GUEST_RFLAGS)

    def rip(self) -> int:
        return self.read(vmx.GUEST_RIP)
