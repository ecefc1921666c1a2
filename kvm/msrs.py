"""MSRs the hypervisor emulates for the guest (the ones the MSR bitmap intercepts)."""

MSR_IA32_TSC = 0x10
MSR_IA32_APIC_BASE = 0x1B
MSR_IA32_FEATURE_CONTROL = 0x3A
MSR_IA32_UCODE_REV = 0x8B
MSR_IA32_ARCH_CAPABILITIES = 0x10A
MSR_PLATFORM_INFO = 0xCE

FEATURE_CONTROL_LOCKED = 1


class GuestMsrs:
    """Per-vCPU values of emulated MSRs.  read/write return None for #GP."""

    def __init__(self, vcpu):
        self.vcpu = vcpu
        self.apic_base = 0xFEE00000 | (1 << 11) | ((1 << 8) if vcpu.id == 0 else 0)

    def read(self, index: int):
        if index == MSR_IA32_APIC_BASE:
            return self.apic_base
        if index == MSR_IA32_FEATURE_CONTROL:
            return FEATURE_CONTROL_LOCKED   # locked with VMX off: no nested VMX yet
        if index in (MSR_IA32_UCODE_REV, MSR_IA32_ARCH_CAPABILITIES):
            return 0
        if index == MSR_PLATFORM_INFO:
            return 0
        return None

    def write(self, index: int, value: int) -> bool:
        if index == MSR_IA32_APIC_BASE:
            if value & ~(((1 << 40) - 1) & ~0xFFF | 0xD00):
                return False   # reserved bits
            self.apic_base = value
            return True
        if index == MSR_IA32_TSC:
            self.vcpu.set_guest_tsc(value)
            return True
        if index == MSR_IA32_UCODE_REV:
            return True
        return False
