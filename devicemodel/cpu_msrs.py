"""The MSRs the device model serves for its vCPUs: the local APIC's (IA32_APIC_BASE,
IA32_TSC_DEADLINE and the x2APIC registers 0x800-0x8ff). ``install_msr_filter`` makes
KVM send the guest's RDMSR/WRMSR of them to userspace (KVM_X86_SET_MSR_FILTER with
KVM_CAP_X86_USER_SPACE_MSR), where the vCPU loop answers them through ``CpuMsrs``."""

from __future__ import annotations

from typing import Optional

from kvm.capabilities import KVM_CAP_X86_USER_SPACE_MSR
from kvm.constants import KVM_MSR_EXIT_REASON_FILTER, KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE
from kvm.structs import MsrFilter, MsrFilterRange

from devicemodel.devices.apic import MSR_APIC_BASE, MSR_TSC_DEADLINE, X2APIC_MSR_BASE, X2APIC_MSR_END

SERVED_RANGES = ((MSR_APIC_BASE, 1), (MSR_TSC_DEADLINE, 1), (X2APIC_MSR_BASE, X2APIC_MSR_END - X2APIC_MSR_BASE))


def install_msr_filter(vm) -> None:
    """Deny KVM the served MSRs, so that their accesses exit to userspace."""
    vm.enable_cap(KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_FILTER)
    vm.set_msr_filter(MsrFilter(ranges=[
        MsrFilterRange(flags=KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE, nmsrs=count, base=base,
                       bitmap=bytes((count + 7) // 8)) for base, count in SERVED_RANGES]))


class CpuMsrs:
    """One vCPU's served MSRs: ``read`` gives None and ``write`` False for #GP."""

    def __init__(self, lapic, vcpu=None):
        self.lapic = lapic
        self.vcpu = vcpu

    def read(self, index: int) -> Optional[int]:
        return self.lapic.msr_read(index)

    def write(self, index: int, value: int) -> bool:
        if not self.lapic.msr_write(index, value):
            return False
        if index == MSR_APIC_BASE and self.vcpu is not None:
            self.vcpu.set_msrs({MSR_APIC_BASE: self.lapic.apic_base})   # KVM's copy (CPUID, sregs)
        return True
