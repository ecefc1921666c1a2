"""Machine-check architecture as KVM presents it to a guest (kvm_vcpu_ioctl_x86_setup_mce
with QEMU's defaults): CPUID shows MCE and MCA, IA32_MCG_CAP reports MCG_CTL and
MCE_BANKS banks of four MSRs each (CTL, STATUS, ADDR, MISC from 0x400).  Nothing ever
logs an error in them; a guest's machine-check code finds them clear.  Without them Linux
reports "mce: Unable to init MCE device"."""

MSR_IA32_MCG_CAP = 0x179
MSR_IA32_MCG_STATUS = 0x17A
MSR_IA32_MCG_CTL = 0x17B
MSR_IA32_MC0_CTL = 0x400
MCE_BANKS = 10
MCG_CTL_P = 1 << 8
ALL_ONES = (1 << 64) - 1
MCE_MSRS = (MSR_IA32_MCG_CAP, MSR_IA32_MCG_STATUS, MSR_IA32_MCG_CTL,
            *range(MSR_IA32_MC0_CTL, MSR_IA32_MC0_CTL + 4 * MCE_BANKS))
BANK_CTL, BANK_STATUS = 0, 1


class MachineCheckMsrs:
    def __init__(self):
        self.values = {MSR_IA32_MCG_CAP: MCG_CTL_P | MCE_BANKS, MSR_IA32_MCG_STATUS: 0,
                       MSR_IA32_MCG_CTL: ALL_ONES}
        self.values.update({msr: 0 for msr in range(MSR_IA32_MC0_CTL, MSR_IA32_MC0_CTL + 4 * MCE_BANKS)})

    def read(self, index: int) -> int:
        return self.values[index]

    def write(self, index: int, value: int) -> bool:
        """KVM's rules (set_msr_mce): MCG_CAP is read-only; MCG_CTL and the banks' CTL
        take all zeros or all ones (bit 10 and bit 0 aside); STATUS may only be cleared."""
        if index == MSR_IA32_MCG_CAP:
            return False
        if index == MSR_IA32_MCG_CTL and value not in (0, ALL_ONES):
            return False
        if index >= MSR_IA32_MC0_CTL:
            kind = (index - MSR_IA32_MC0_CTL) % 4
            if kind == BANK_CTL and value and (value | 1 << 10 | 1) != ALL_ONES:
                return False
            if kind == BANK_STATUS and value:
                return False
        self.values[index] = value
        return True
