"""The Hyper-V synthetic MSRs through which a guest asks for a reset or reports a crash:
on x86 these are what makes KVM return KVM_EXIT_SYSTEM_EVENT (arch/x86/kvm/hyperv.c;
KVM_REQ_HV_RESET and KVM_REQ_HV_CRASH end the next entry, after the WRMSR is complete).
A triple fault is KVM_EXIT_SHUTDOWN, never a system event; ACPI power-off and the reset
ports are the device model's.

* HV_X64_MSR_RESET: writing 1 -> KVM_SYSTEM_EVENT_RESET; reads 0.
* HV_X64_MSR_CRASH_P0..P4: the crash parameters the guest leaves for userspace, which
  reads them with KVM_GET_MSRS (partition-wide).
* HV_X64_MSR_CRASH_CTL: userspace writes HV_CRASH_CTL_CRASH_NOTIFY (KVM_SET_MSRS) to tell
  the guest that crash notification is there, which the guest reads back; the guest
  writing CRASH_NOTIFY -> KVM_SYSTEM_EVENT_CRASH.

Like KVM without KVM_CAP_HYPERV_ENFORCE_CPUID, the MSRs answer whatever the guest's CPUID
says; no other part of Hyper-V is emulated."""

from kvm.constants import KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET

HV_X64_MSR_RESET = 0x40000003
HV_X64_MSR_CRASH_P0 = 0x40000100
HV_X64_MSR_CRASH_CTL = 0x40000105
HV_CRASH_PARAMS = range(HV_X64_MSR_CRASH_P0, HV_X64_MSR_CRASH_P0 + 5)
HV_CRASH_CTL_CRASH_NOTIFY = 1 << 63
HYPERV_MSRS = (HV_X64_MSR_RESET, *HV_CRASH_PARAMS, HV_X64_MSR_CRASH_CTL)


class HypervMsrs:
    """One VM's Hyper-V MSR state."""

    def __init__(self):
        self.crash_params = [0] * len(HV_CRASH_PARAMS)
        self.crash_ctl = 0

    def read(self, index: int) -> int:
        if index in HV_CRASH_PARAMS:
            return self.crash_params[index - HV_X64_MSR_CRASH_P0]
        return self.crash_ctl if index == HV_X64_MSR_CRASH_CTL else 0

    def write(self, vcpu, index: int, value: int, host: bool) -> bool:
        """The write; a request for a system event goes to ``vcpu``."""
        if index in HV_CRASH_PARAMS:
            self.crash_params[index - HV_X64_MSR_CRASH_P0] = value
        elif index == HV_X64_MSR_CRASH_CTL:
            if host:
                self.crash_ctl = value & HV_CRASH_CTL_CRASH_NOTIFY
            elif value & HV_CRASH_CTL_CRASH_NOTIFY:
                vcpu.request_system_event(KVM_SYSTEM_EVENT_CRASH)
        elif value == 1:
            vcpu.request_system_event(KVM_SYSTEM_EVENT_RESET)
        return True
