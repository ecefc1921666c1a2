"""VT-x architectural names for the hypervisor: VMCS field encodings (read from the
silicon, so there is one list), basic exit reasons, and control bits (Intel SDM Vol. 3,
Appendices A-C; names as Linux's arch/x86/include/asm/vmx.h spells them)."""

from collections import namedtuple

from kvm._silicon import ffi, lib

FIELDS = {
    ffi.string(lib.vmcs_field_name(i)).decode(): lib.vmcs_field_encoding(i)
    for i in range(lib.vmcs_field_count())
}
globals().update(FIELDS)
FIELD_NAMES = {encoding: name for name, encoding in FIELDS.items()}

VMX_SUCCEED = lib.VMX_SUCCEED
VMX_FAIL_INVALID = lib.VMX_FAIL_INVALID
VMX_FAIL_VALID = lib.VMX_FAIL_VALID
VMX_EXITED = lib.VMX_EXITED

EXIT_REASONS = {
    0: "EXCEPTION_NMI", 1: "EXTERNAL_INTERRUPT", 2: "TRIPLE_FAULT", 3: "INIT_SIGNAL",
    4: "SIPI_SIGNAL", 7: "INTERRUPT_WINDOW", 8: "NMI_WINDOW", 9: "TASK_SWITCH", 10: "CPUID",
    11: "GETSEC", 12: "HLT", 13: "INVD", 14: "INVLPG", 15: "RDPMC", 16: "RDTSC", 17: "RSM",
    18: "VMCALL", 19: "VMCLEAR", 20: "VMLAUNCH", 21: "VMPTRLD", 22: "VMPTRST", 23: "VMREAD",
    24: "VMRESUME", 25: "VMWRITE", 26: "VMOFF", 27: "VMON", 28: "CR_ACCESS", 29: "DR_ACCESS",
    30: "IO_INSTRUCTION", 31: "MSR_READ", 32: "MSR_WRITE", 33: "INVALID_STATE",
    34: "MSR_LOAD_FAIL", 36: "MWAIT_INSTRUCTION", 37: "MONITOR_TRAP_FLAG",
    39: "MONITOR_INSTRUCTION", 40: "PAUSE_INSTRUCTION", 41: "MCE_DURING_VMENTRY",
    43: "TPR_BELOW_THRESHOLD", 44: "APIC_ACCESS", 45: "EOI_INDUCED", 46: "GDTR_IDTR",
    47: "LDTR_TR", 48: "EPT_VIOLATION", 49: "EPT_MISCONFIG", 50: "INVEPT", 51: "RDTSCP",
    52: "PREEMPTION_TIMER", 53: "INVVPID", 54: "WBINVD", 55: "XSETBV", 56: "APIC_WRITE",
    57: "RDRAND", 58: "INVPCID", 59: "VMFUNC", 60: "ENCLS", 61: "RDSEED", 62: "PML_FULL",
    63: "XSAVES", 64: "XRSTORS",
}
globals().update({f"EXIT_REASON_{name}": code for code, name in EXIT_REASONS.items()})
EXIT_REASON_FAILED_VMENTRY = 0x80000000
PRODUCED_EXIT_REASONS = [code for code in EXIT_REASONS if lib.vmx_exit_reason_produced(code)]


# The rules VM entry checks (cffi_build/vmx_entry_checks.h): {name: EntryCheck}; area
# CONTROLS and HOST fail with VMfailValid(7) and (8), GUEST and MSR_LOAD with a VM exit
# (reason 33 with the qualification given, or 34 with the failing entry's number).
EntryCheck = namedtuple("EntryCheck", "number area rule qualification")
ENTRY_CHECKS = {
    ffi.string(lib.vmx_entry_check_name(i)).decode(): EntryCheck(
        i, ffi.string(lib.vmx_entry_check_area(i)).decode(), ffi.string(lib.vmx_entry_check_rule(i)).decode(),
        lib.vmx_entry_check_qualification(i))
    for i in range(1, lib.vmx_entry_check_count() + 1)
}
ENTRY_CHECK_NAMES = {check.number: name for name, check in ENTRY_CHECKS.items()}


def exit_reason_name(reason: int) -> str:
    basic = EXIT_REASONS.get(reason & 0xFFFF, f"UNKNOWN_{reason & 0xFFFF}")
    return ("FAILED_VMENTRY:" + basic) if reason & EXIT_REASON_FAILED_VMENTRY else basic


# Pin-based VM-execution controls
PIN_BASED_EXT_INTR_MASK = 1 << 0
PIN_BASED_NMI_EXITING = 1 << 3
PIN_BASED_VIRTUAL_NMIS = 1 << 5
PIN_BASED_VMX_PREEMPTION_TIMER = 1 << 6
PIN_BASED_POSTED_INTR = 1 << 7

# Primary processor-based VM-execution controls
CPU_BASED_INTR_WINDOW_EXITING = 1 << 2
CPU_BASED_USE_TSC_OFFSETTING = 1 << 3
CPU_BASED_HLT_EXITING = 1 << 7
CPU_BASED_INVLPG_EXITING = 1 << 9
CPU_BASED_MWAIT_EXITING = 1 << 10
CPU_BASED_RDPMC_EXITING = 1 << 11
CPU_BASED_RDTSC_EXITING = 1 << 12
CPU_BASED_CR3_LOAD_EXITING = 1 << 15
CPU_BASED_CR3_STORE_EXITING = 1 << 16
CPU_BASED_CR8_LOAD_EXITING = 1 << 19
CPU_BASED_CR8_STORE_EXITING = 1 << 20
CPU_BASED_TPR_SHADOW = 1 << 21
CPU_BASED_NMI_WINDOW_EXITING = 1 << 22
CPU_BASED_MOV_DR_EXITING = 1 << 23
CPU_BASED_UNCOND_IO_EXITING = 1 << 24
CPU_BASED_USE_IO_BITMAPS = 1 << 25
CPU_BASED_MONITOR_TRAP_FLAG = 1 << 27
CPU_BASED_USE_MSR_BITMAPS = 1 << 28
CPU_BASED_MONITOR_EXITING = 1 << 29
CPU_BASED_PAUSE_EXITING = 1 << 30
CPU_BASED_ACTIVATE_SECONDARY_CONTROLS = 1 << 31

# Secondary processor-based VM-execution controls
SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES = 1 << 0
SECONDARY_EXEC_ENABLE_EPT = 1 << 1
SECONDARY_EXEC_DESC = 1 << 2
SECONDARY_EXEC_ENABLE_RDTSCP = 1 << 3
SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE = 1 << 4
SECONDARY_EXEC_ENABLE_VPID = 1 << 5
SECONDARY_EXEC_WBINVD_EXITING = 1 << 6
SECONDARY_EXEC_UNRESTRICTED_GUEST = 1 << 7
SECONDARY_EXEC_APIC_REGISTER_VIRT = 1 << 8
SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY = 1 << 9

# VM-exit controls
VM_EXIT_SAVE_DEBUG_CONTROLS = 1 << 2
VM_EXIT_HOST_ADDR_SPACE_SIZE = 1 << 9
VM_EXIT_ACK_INTR_ON_EXIT = 1 << 15
VM_EXIT_SAVE_IA32_PAT = 1 << 18
VM_EXIT_LOAD_IA32_PAT = 1 << 19
VM_EXIT_SAVE_IA32_EFER = 1 << 20
VM_EXIT_LOAD_IA32_EFER = 1 << 21
VM_EXIT_SAVE_VMX_PREEMPTION_TIMER = 1 << 22

# VM-entry controls
VM_ENTRY_LOAD_DEBUG_CONTROLS = 1 << 2
VM_ENTRY_IA32E_MODE = 1 << 9
VM_ENTRY_LOAD_IA32_PAT = 1 << 14
VM_ENTRY_LOAD_IA32_EFER = 1 << 15

# Interruption information
INTR_INFO_VALID_MASK = 1 << 31
INTR_INFO_DELIVER_CODE_MASK = 1 << 11
INTR_INFO_INTR_TYPE_MASK = 7 << 8
INTR_TYPE_EXT_INTR = 0 << 8
INTR_TYPE_NMI_INTR = 2 << 8
INTR_TYPE_HARD_EXCEPTION = 3 << 8
INTR_TYPE_SOFT_INTR = 4 << 8
INTR_TYPE_PRIV_SW_EXCEPTION = 5 << 8
INTR_TYPE_SOFT_EXCEPTION = 6 << 8

# Capability MSRs
MSR_IA32_VMX_BASIC = 0x480
MSR_IA32_VMX_TRUE_PINBASED_CTLS = 0x48D
MSR_IA32_VMX_TRUE_PROCBASED_CTLS = 0x48E
MSR_IA32_VMX_TRUE_EXIT_CTLS = 0x48F
MSR_IA32_VMX_TRUE_ENTRY_CTLS = 0x490
MSR_IA32_VMX_PROCBASED_CTLS2 = 0x48B
MSR_IA32_VMX_EPT_VPID_CAP = 0x48C

# EPT entries
VMX_EPT_READABLE_MASK = 1 << 0
VMX_EPT_WRITABLE_MASK = 1 << 1
VMX_EPT_EXECUTABLE_MASK = 1 << 2
VMX_EPT_RWX_MASK = 7
VMX_EPT_MT_WB = 6 << 3
VMX_EPT_LARGE = 1 << 7
VMX_EPT_ACCESS_BIT = 1 << 8
VMX_EPT_DIRTY_BIT = 1 << 9
VMX_EPTP_MT_WB = 6
VMX_EPTP_PWL_4 = 3 << 3
VMX_EPTP_AD_ENABLE = 1 << 6

# EPT violation exit qualification
EPT_VIOLATION_ACC_READ = 1 << 0
EPT_VIOLATION_ACC_WRITE = 1 << 1
EPT_VIOLATION_ACC_INSTR = 1 << 2
EPT_VIOLATION_READABLE = 1 << 3
EPT_VIOLATION_WRITABLE = 1 << 4
EPT_VIOLATION_EXECUTABLE = 1 << 5
EPT_VIOLATION_GVA_IS_VALID = 1 << 7
EPT_VIOLATION_GVA_TRANSLATED = 1 << 8

# APIC-access exit qualification
APIC_ACCESS_OFFSET = 0xFFF
APIC_ACCESS_TYPE = 0xF000
TYPE_LINEAR_APIC_INST_READ = 0 << 12
TYPE_LINEAR_APIC_INST_WRITE = 1 << 12

# The VM-execution, exit and entry controls: their capability MSRs (allowed 0- and
# 1-settings; SDM Appendix A), the VMCS field that holds each, and the prefix of their
# bit names above.
CONTROLS = [
    ("Pin-based VM-execution controls", 0x48D, "PIN_BASED_VM_EXEC_CONTROL", "PIN_BASED_"),
    ("Primary processor-based VM-execution controls", 0x48E, "CPU_BASED_VM_EXEC_CONTROL", "CPU_BASED_"),
    ("Secondary processor-based VM-execution controls", 0x48B, "SECONDARY_VM_EXEC_CONTROL", "SECONDARY_EXEC_"),
    ("VM-exit controls", 0x48F, "VM_EXIT_CONTROLS", "VM_EXIT_"),
    ("VM-entry controls", 0x490, "VM_ENTRY_CONTROLS", "VM_ENTRY_"),
]


def control_bit_names(prefix: str) -> dict:
    """{bit number: name} of the single-bit constants above whose names start with prefix."""
    names = {}
    for name, value in globals().items():
        if name.startswith(prefix) and isinstance(value, int) and value and value & (value - 1) == 0:
            names.setdefault(value.bit_length() - 1, name)
    return names
