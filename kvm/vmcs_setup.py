"""Building vmcs01 for a vCPU: VM-execution, exit and entry controls adjusted to the
capability MSRs, host state, bitmaps, EPT pointer and the reset guest state."""

from kvm import vmx
from kvm.constants import KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE
from kvm.hostmem import PAGE_SIZE
from kvm.msr_filter import msr_allowed

# MSRs the guest reads and writes without exits: the processor holds their guest
# values and nothing in root mode depends on them.
PASSTHROUGH_MSRS = (
    [0x174, 0x175, 0x176, 0x1D9, 0x1A0, 0x277, 0x2FF, 0xFE, 0x250, 0x258, 0x259]
    + list(range(0x200, 0x210)) + list(range(0x268, 0x270))
    + [0xC0000080, 0xC0000081, 0xC0000082, 0xC0000083, 0xC0000084,
       0xC0000100, 0xC0000101, 0xC0000102, 0xC0000103]
)
PASSTHROUGH_READ_ONLY_MSRS = [0x10]   # the TSC: writes go through TSC_OFFSET

HOST_CR0 = 0x80050033   # PG WP NE ET MP PE
HOST_CR4 = 0x2020       # VMXE PAE
HOST_EFER = 0xD01       # NXE LMA LME SCE
HOST_RIP = 0xFFFFFFFF81000000   # where root mode resumes: kvm/'s exit handler
HOST_RSP = 0xFFFFFFFF81100000


def adjust_controls(vcpu, wanted: int, msr: int) -> int:
    """Set the bits the capability MSR requires and drop the ones it does not allow."""
    cap = vcpu.rdmsr_root(msr)
    return (wanted | (cap & 0xFFFFFFFF)) & (cap >> 32)


def msr_bitmap_position(msr: int, write: bool):
    """(byte, bit) of an MSR in the MSR-bitmap page: the read bitmaps for the low
    (0-1FFFH) and high (C0000000H-C0001FFFH) MSRs, then the write bitmaps."""
    if msr <= 0x1FFF:
        base, bit = 0, msr
    elif 0xC0000000 <= msr <= 0xC0001FFF:
        base, bit = 1024, msr - 0xC0000000
    else:
        raise ValueError(f"MSR {msr:#x} is outside the MSR bitmaps")
    return base + (2048 if write else 0) + bit // 8, bit % 8


def set_msr_intercept(vcpu, msr: int, write: bool, intercept: bool):
    """Make the guest's RDMSR (or WRMSR) of msr exit, or not, in the vCPU's MSR bitmap."""
    byte, bit = msr_bitmap_position(msr, write)
    bitmap = vcpu.vm.hostmem.page_view(vcpu.vmread(vmx.MSR_BITMAP))
    bitmap[byte] = (bitmap[byte] | (1 << bit)) if intercept else (bitmap[byte] & ~(1 << bit))


def msr_bitmap(msr_filter) -> bytes:
    """The MSR bitmap: the pass-through MSRs do not exit, unless the VM's MSR filter
    denies them, for userspace to see (vmx_msr_filter_changed)."""
    bitmap = bytearray(b"\xff" * PAGE_SIZE)

    def allow(msr, write):
        if not msr_allowed(msr_filter, msr, KVM_MSR_FILTER_WRITE if write else KVM_MSR_FILTER_READ):
            return
        byte, bit = msr_bitmap_position(msr, write)
        bitmap[byte] &= ~(1 << bit) & 0xFF

    for msr in PASSTHROUGH_MSRS:
        allow(msr, False)
        allow(msr, True)
    for msr in PASSTHROUGH_READ_ONLY_MSRS:
        allow(msr, False)
    return bytes(bitmap)


def setup_vmcs(vcpu):
    w = vcpu.vmwrite
    pin = adjust_controls(vcpu, vmx.PIN_BASED_EXT_INTR_MASK | vmx.PIN_BASED_NMI_EXITING |
                          vmx.PIN_BASED_VIRTUAL_NMIS, vmx.MSR_IA32_VMX_TRUE_PINBASED_CTLS)
    proc = adjust_controls(vcpu, vmx.CPU_BASED_HLT_EXITING | vmx.CPU_BASED_UNCOND_IO_EXITING |
                           vmx.CPU_BASED_USE_MSR_BITMAPS | vmx.CPU_BASED_MWAIT_EXITING |
                           vmx.CPU_BASED_MONITOR_EXITING | vmx.CPU_BASED_RDPMC_EXITING |
                           vmx.CPU_BASED_USE_TSC_OFFSETTING |
                           vmx.CPU_BASED_CR8_LOAD_EXITING | vmx.CPU_BASED_CR8_STORE_EXITING |
                           vmx.CPU_BASED_ACTIVATE_SECONDARY_CONTROLS,
                           vmx.MSR_IA32_VMX_TRUE_PROCBASED_CTLS)
    proc2 = adjust_controls(vcpu, vmx.SECONDARY_EXEC_ENABLE_EPT | vmx.SECONDARY_EXEC_ENABLE_VPID |
                            vmx.SECONDARY_EXEC_UNRESTRICTED_GUEST | vmx.SECONDARY_EXEC_ENABLE_RDTSCP |
                            vmx.SECONDARY_EXEC_WBINVD_EXITING, vmx.MSR_IA32_VMX_PROCBASED_CTLS2)
    # the guest's DR7 and IA32_DEBUGCTL travel in the VMCS (a VM exit resets them)
    exit_ctl = adjust_controls(vcpu, vmx.VM_EXIT_HOST_ADDR_SPACE_SIZE | vmx.VM_EXIT_ACK_INTR_ON_EXIT |
                               vmx.VM_EXIT_SAVE_IA32_EFER | vmx.VM_EXIT_LOAD_IA32_EFER |
                               vmx.VM_EXIT_SAVE_IA32_PAT | vmx.VM_EXIT_LOAD_IA32_PAT |
                               vmx.VM_EXIT_SAVE_DEBUG_CONTROLS,
                               vmx.MSR_IA32_VMX_TRUE_EXIT_CTLS)
    entry_ctl = adjust_controls(vcpu, vmx.VM_ENTRY_LOAD_IA32_EFER | vmx.VM_ENTRY_LOAD_IA32_PAT |
                                vmx.VM_ENTRY_LOAD_DEBUG_CONTROLS,
                                vmx.MSR_IA32_VMX_TRUE_ENTRY_CTLS)
    w(vmx.PIN_BASED_VM_EXEC_CONTROL, pin)
    w(vmx.CPU_BASED_VM_EXEC_CONTROL, proc)
    w(vmx.SECONDARY_VM_EXEC_CONTROL, proc2)
    w(vmx.VM_EXIT_CONTROLS, exit_ctl)
    w(vmx.VM_ENTRY_CONTROLS, entry_ctl)
    w(vmx.EXCEPTION_BITMAP, 0)
    vcpu.msr_bitmap_page = vcpu.vm.hostmem.alloc_page()
    vcpu.vm.hostmem.write_bytes(vcpu.msr_bitmap_page, msr_bitmap(vcpu.vm.msr_filter))
    w(vmx.MSR_BITMAP, vcpu.msr_bitmap_page)
    w(vmx.EPT_POINTER, vcpu.vm.ept.eptp)
    w(vmx.VIRTUAL_PROCESSOR_ID, vcpu.vpid)
    w(vmx.VMCS_LINK_POINTER, (1 << 64) - 1)
    # CR0.NE and CR4.VMXE must be 1 under VMX: the hypervisor owns them and shows the
    # guest the values it wrote through the read shadows.
    w(vmx.CR0_GUEST_HOST_MASK, 0x20)
    w(vmx.CR4_GUEST_HOST_MASK, 0x2000)

    w(vmx.HOST_CR0, HOST_CR0)
    w(vmx.HOST_CR3, vcpu.vm.hostmem.alloc_page())
    w(vmx.HOST_CR4, HOST_CR4)
    w(vmx.HOST_CS_SELECTOR, 0x10)
    for field in (vmx.HOST_SS_SELECTOR, vmx.HOST_DS_SELECTOR, vmx.HOST_ES_SELECTOR):
        w(field, 0x18)
    w(vmx.HOST_TR_SELECTOR, 0x40)
    w(vmx.HOST_IA32_EFER, HOST_EFER)
    w(vmx.HOST_IA32_PAT, 0x0007040600070406)
    w(vmx.HOST_RIP, HOST_RIP)
    w(vmx.HOST_RSP, HOST_RSP)
