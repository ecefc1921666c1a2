"""The guest's MSRs as the hypervisor sees them: where each guest-visible value lives,
for the RDMSR/WRMSR exits that the MSR bitmap intercepts and for KVM_GET/SET_MSRS.

* emulated here (the bitmap intercepts them): APIC base, feature control, ...;
* in the VMCS guest-state area (VM entry loads them, VM exit saves them): EFER, PAT,
  SYSENTER_*, FS/GS base, DEBUGCTL;
* the TSC: the processor's, plus the VMCS TSC offset;
* the machine-check banks (kvm/mce.py);
* the Hyper-V reset and crash MSRs (kvm/hyperv.py), the VM's;
* held by the processor itself for the guest (the bitmap passes them through and root
  mode never uses them): STAR/LSTAR/..., KERNEL_GS_BASE, TSC_AUX, MTRRs, MISC_ENABLE.
  Root mode and guest share the one physical processor's registers, so these
  are read and written with the processor's RDMSR/WRMSR;
* implemented by kvm/'s compiled half, which also handles their RDMSR/WRMSR exits:
  the kvmclock MSRs."""

from kvm import vmx
from kvm._silicon import ffi, lib
from kvm.hyperv import HYPERV_MSRS
from kvm.mce import MCE_MSRS, MachineCheckMsrs

MSR_IA32_TSC = 0x10
MSR_IA32_APIC_BASE = 0x1B
MSR_IA32_FEATURE_CONTROL = 0x3A
MSR_IA32_UCODE_REV = 0x8B
MSR_IA32_ARCH_CAPABILITIES = 0x10A
MSR_PLATFORM_INFO = 0xCE
MSR_EFER = 0xC0000080

FEATURE_CONTROL_LOCKED = 1
# The processor executes nothing speculatively, so none of the speculative-execution and
# buffer-sampling flaws that these bits rule out apply (Linux then skips page-table
# isolation, buffer clearing and the rest): RDCL_NO, SKIP_L1DFL_VMENTRY, SSB_NO, MDS_NO,
# PSCHANGE_MC_NO, TAA_NO, SBDR_SSDP_NO, FBSDP_NO, PSDP_NO, BHI_NO, PBRSB_NO, GDS_NO,
# RFDS_NO, ITS_NO.
ARCH_CAPABILITIES = sum(1 << bit for bit in (0, 3, 4, 5, 6, 8, 13, 14, 15, 20, 24, 26, 27, 62))
EFER_LMA = 0x400

VMCS_MSRS = {
    0x174: vmx.GUEST_SYSENTER_CS, 0x175: vmx.GUEST_SYSENTER_ESP, 0x176: vmx.GUEST_SYSENTER_EIP,
    0x1D9: vmx.GUEST_IA32_DEBUGCTL, 0x277: vmx.GUEST_IA32_PAT, MSR_EFER: vmx.GUEST_IA32_EFER,
    0xC0000100: vmx.GUEST_FS_BASE, 0xC0000101: vmx.GUEST_GS_BASE,
}
PROCESSOR_MSRS = (
    [0xFE, 0x1A0, 0x250, 0x258, 0x259, 0x2FF] + list(range(0x200, 0x210)) + list(range(0x268, 0x270))
    + [0xC0000081, 0xC0000082, 0xC0000083, 0xC0000084, 0xC0000102, 0xC0000103]
)
APIC_BASE_ENABLE = 1 << 11
MSR_KVM_WALL_CLOCK_NEW = 0x4B564D00
MSR_KVM_SYSTEM_TIME_NEW = 0x4B564D01
EMULATED_MSRS = [MSR_IA32_APIC_BASE, MSR_IA32_FEATURE_CONTROL, MSR_IA32_UCODE_REV,
                 MSR_IA32_ARCH_CAPABILITIES, MSR_PLATFORM_INFO,
                 MSR_KVM_WALL_CLOCK_NEW, MSR_KVM_SYSTEM_TIME_NEW, *MCE_MSRS, *HYPERV_MSRS]
# KVM_GET_MSR_INDEX_LIST
MSR_INDEX_LIST = sorted([MSR_IA32_TSC, *VMCS_MSRS, *PROCESSOR_MSRS, *EMULATED_MSRS])
_KNOWN = frozenset(MSR_INDEX_LIST)


class GuestMsrs:
    """Per-vCPU guest MSRs.  read/write return None/False for #GP."""

    def __init__(self, vcpu):
        self.vcpu = vcpu
        self._apic_base = 0xFEE00000 | (1 << 11) | ((1 << 8) if vcpu.id == 0 else 0)
        self._value = ffi.new("uint64_t *")
        self.mce = MachineCheckMsrs()

    @property
    def apic_base(self) -> int:
        return self._apic_base

    @apic_base.setter
    def apic_base(self, value: int):
        old, self._apic_base = self._apic_base, value
        lib.root_vcpu_set_apic_enabled(self.vcpu.root, bool(value & APIC_BASE_ENABLE))
        self.vcpu.apicv.apic_base_changed(old, value)

    def knows(self, index: int) -> bool:
        """Whether KVM handles this MSR at all (a refused access is then an invalid one)."""
        return index in _KNOWN

    def read(self, index: int):
        compiled = lib.root_msr_get(self.vcpu.root, index, self._value)
        if compiled != 1:
            return self._value[0] if compiled == 0 else None
        if index in VMCS_MSRS:
            return self.vcpu.vmread(VMCS_MSRS[index])
        if index == MSR_IA32_TSC:
            return (self._processor_read(MSR_IA32_TSC) + self.vcpu.vmread(vmx.TSC_OFFSET)) & ((1 << 64) - 1)
        if index in PROCESSOR_MSRS:
            return self._processor_read(index)
        return self._emulated_read(index)

    def write(self, index: int, value: int, host: bool = False) -> bool:
        """The guest's WRMSR, or userspace's KVM_SET_MSRS (``host``)."""
        compiled = lib.root_msr_set(self.vcpu.root, index, value)
        if compiled != 1:
            return compiled == 0
        if index == MSR_EFER:
            return self._write_efer(value)
        if index in VMCS_MSRS:
            if not self._processor_accepts(index, value):
                return False
            self.vcpu.vmwrite(VMCS_MSRS[index], value)
            return True
        if index == MSR_IA32_TSC:
            self.vcpu.set_guest_tsc(value)
            return True
        if index in PROCESSOR_MSRS:
            return index != 0xFE and lib.cpu_wrmsr(self.vcpu.cpu, index, value) == 0
        return self._emulated_write(index, value, host)

    def _processor_read(self, index: int):
        return self._value[0] if lib.cpu_rdmsr(self.vcpu.cpu, index, self._value) == 0 else None

    def _processor_accepts(self, index: int, value: int) -> bool:
        """The processor's own validity rules (canonical bases, PAT types), tried on its
        register and undone: root mode's value must survive."""
        old = self._processor_read(index)
        if lib.cpu_wrmsr(self.vcpu.cpu, index, value) != 0:
            return False
        lib.cpu_wrmsr(self.vcpu.cpu, index, old)
        return True

    def _write_efer(self, value: int) -> bool:
        if value & ~0xD01:
            return False
        self.vcpu.vmwrite(vmx.GUEST_IA32_EFER, value)
        entry = self.vcpu.vmread(vmx.VM_ENTRY_CONTROLS) & ~vmx.VM_ENTRY_IA32E_MODE
        self.vcpu.vmwrite(vmx.VM_ENTRY_CONTROLS, entry | (vmx.VM_ENTRY_IA32E_MODE if value & EFER_LMA else 0))
        return True

    def _emulated_read(self, index: int):
        if index == MSR_IA32_APIC_BASE:
            return self.apic_base
        if index == MSR_IA32_FEATURE_CONTROL:
            return FEATURE_CONTROL_LOCKED   # locked with VMX off: no nested VMX yet
        if index == MSR_IA32_ARCH_CAPABILITIES:
            return ARCH_CAPABILITIES
        if index in (MSR_IA32_UCODE_REV, MSR_PLATFORM_INFO):
            return 0
        if index in MCE_MSRS:
            return self.mce.read(index)
        if index in HYPERV_MSRS:
            return self.vcpu.vm.hyperv.read(index)
        return None

    def _emulated_write(self, index: int, value: int, host: bool) -> bool:
        if index == MSR_IA32_APIC_BASE:
            if value & ~(((1 << 40) - 1) & ~0xFFF | 0xD00):
                return False   # reserved bits
            self.apic_base = value
            return True
        if index in MCE_MSRS:
            return self.mce.write(index, value)
        if index in HYPERV_MSRS:
            return self.vcpu.vm.hyperv.write(self.vcpu, index, value, host)
        return index == MSR_IA32_UCODE_REV

    def get(self, indices):
        """KVM_GET_MSRS: {index: value} for the leading indices that can be read."""
        out = {}
        for index in indices:
            value = self.read(index)
            if value is None:
                break
            out[index] = value
        return out

    def set(self, entries) -> int:
        """KVM_SET_MSRS: write (index, value) pairs (or a dict) in order, stopping at the
        first the guest could not write; returns how many were written."""
        items = entries.items() if isinstance(entries, dict) else entries
        done = 0
        for index, value in items:
            if not self.write(index, value & ((1 << 64) - 1), host=True):
                break
            done += 1
        return done
