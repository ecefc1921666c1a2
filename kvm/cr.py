"""MOV to CR0 and CR4 as the hypervisor carries it out when it exits (it changes a bit the
hypervisor owns, CR0.NE or CR4.VMXE): KVM's kvm_set_cr0 and kvm_set_cr4.  The checks
that make the instruction #GP; IA-32e mode, which begins and ends with CR0.PG while
EFER.LME is set (EFER.LMA and the IA-32e-mode-guest entry control follow); the PAE
page-directory pointers that VM entry loads from the VMCS; and a flush of the vCPU's
TLB when the paging mode changes, as the instruction itself would flush it.  Linux's
decompressor writes CR0 = PG|AM|WP|NE|ET|MP|PE from 32-bit protected mode this way."""

from kvm import vmx
from kvm._silicon import lib

CR0_PE, CR0_ET, CR0_NE, CR0_WP = 1 << 0, 1 << 4, 1 << 5, 1 << 16
CR0_NW, CR0_CD, CR0_PG = 1 << 29, 1 << 30, 1 << 31
CR0_PAGING = CR0_PE | CR0_WP | CR0_PG
CR4_PSE, CR4_PAE, CR4_PGE, CR4_VMXE, CR4_PCIDE = 1 << 4, 1 << 5, 1 << 7, 1 << 13, 1 << 17
CR4_SMEP, CR4_SMAP = 1 << 20, 1 << 21
CR4_PAGING = CR4_PSE | CR4_PAE | CR4_PGE | CR4_PCIDE | CR4_SMEP | CR4_SMAP
EFER_LME, EFER_LMA = 1 << 8, 1 << 10
CS_L = 1 << 13
MSR_IA32_VMX_CR4_FIXED1 = 0x489
MAXPHYADDR = 40
PDPTE_RESERVED = ((1 << 64) - (1 << MAXPHYADDR)) | 0x1E6    # bits 1, 2, 5-8 and above MAXPHYADDR
INVVPID_SINGLE_CONTEXT = 1
PDPTRS = (vmx.GUEST_PDPTR0, vmx.GUEST_PDPTR1, vmx.GUEST_PDPTR2, vmx.GUEST_PDPTR3)


def set_cr0(vcpu, value: int) -> bool:
    """False: the MOV makes a #GP and changes nothing."""
    old, cr4, efer = vcpu.guest_cr0(), vcpu.guest_cr4(), vcpu.vmread(vmx.GUEST_IA32_EFER)
    value |= CR0_ET
    if value >> 32 or (value & CR0_NW and not value & CR0_CD) or (value & CR0_PG and not value & CR0_PE):
        return False
    paging_on = value & CR0_PG and not old & CR0_PG
    if paging_on and efer & EFER_LME:
        if not cr4 & CR4_PAE or vcpu.vmread(vmx.GUEST_CS_AR_BYTES) & CS_L:
            return False
    elif paging_on and cr4 & CR4_PAE and not _load_pdptrs(vcpu):
        return False
    if not value & CR0_PG and cr4 & CR4_PCIDE:
        return False
    vcpu.set_guest_cr0(value)
    if efer & EFER_LME and (value ^ old) & CR0_PG:
        _set_long_mode(vcpu, efer, bool(value & CR0_PG))
    if (value ^ old) & CR0_PAGING:
        _flush_tlb(vcpu)
    return True


def set_cr4(vcpu, value: int) -> bool:
    old = vcpu.guest_cr4()
    long_mode = vcpu.vmread(vmx.GUEST_IA32_EFER) & EFER_LMA
    allowed = vcpu.rdmsr_root(MSR_IA32_VMX_CR4_FIXED1) & ~CR4_VMXE   # no VMX for the guest
    if value & ~allowed or (long_mode and not value & CR4_PAE):
        return False
    if value & CR4_PCIDE and not old & CR4_PCIDE and (vcpu.vmread(vmx.GUEST_CR3) & 0xFFF or not long_mode):
        return False
    if (not long_mode and vcpu.guest_cr0() & CR0_PG and value & CR4_PAE
            and (value ^ old) & (CR4_PSE | CR4_PAE | CR4_PGE | CR4_SMEP) and not _load_pdptrs(vcpu)):
        return False
    vcpu.set_guest_cr4(value)
    if (value ^ old) & CR4_PAGING:
        _flush_tlb(vcpu)
    return True


def _set_long_mode(vcpu, efer: int, on: bool):
    vcpu.vmwrite(vmx.GUEST_IA32_EFER, efer | EFER_LMA if on else efer & ~EFER_LMA)
    entry = vcpu.vmread(vmx.VM_ENTRY_CONTROLS) & ~vmx.VM_ENTRY_IA32E_MODE
    vcpu.vmwrite(vmx.VM_ENTRY_CONTROLS, entry | (vmx.VM_ENTRY_IA32E_MODE if on else 0))


def _load_pdptrs(vcpu) -> bool:
    """The four PAE page-directory pointers at CR3 into the VMCS; False when one that is
    present has reserved bits set (the MOV then makes a #GP)."""
    table = vcpu.vm.read_guest(vcpu.vmread(vmx.GUEST_CR3) & 0xFFFFFFE0, 32)
    if table is None:
        return False
    entries = [int.from_bytes(table[8 * k:8 * k + 8], "little") for k in range(4)]
    if any(e & 1 and e & PDPTE_RESERVED for e in entries):
        return False
    for field, entry in zip(PDPTRS, entries):
        vcpu.vmwrite(field, entry)
    return True


def _flush_tlb(vcpu):
    lib.vmx_invvpid(vcpu.cpu, INVVPID_SINGLE_CONTEXT, vcpu.vpid, 0)
