"""The VM-entry checks (SDM Vol. 3 "Checks on VMX Controls and Host-State Area", "Checks
on the Guest-State Area", "Loading MSRs"): for every rule the silicon checks
(kvm.vmx.ENTRY_CHECKS, from cffi_build/vmx_entry_checks.h), a VMCS that breaks exactly
that rule -- from kvm/'s valid vmcs01 -- fails as the SDM says: VMfailValid(7) for the
controls, VMfailValid(8) for the host state, a VM exit with the entry-failure bit and
basic reason 33 (with the rule's exit qualification) or 34 (with the failing MSR entry's
number) otherwise; the silicon's diagnostic names the rule, and the VMCS stays
unlaunched.  Then the settings the rules allow, which must enter."""

import struct

import pytest

from kvm import vmx
from kvm._silicon import lib
from silicon import CODE_GPA, RawGuest

CR0_PE, CR0_NE, CR0_PG = 1, 1 << 5, 1 << 31
CR4_PAE, CR4_VMXE, CR4_PCIDE = 1 << 5, 1 << 13, 1 << 17
EFER_LME, EFER_LMA = 1 << 8, 1 << 10
RFLAGS_TF, RFLAGS_IF, RFLAGS_VM = 1 << 8, 1 << 9, 1 << 17
AR_S, AR_P, AR_L, AR_DB, AR_G, AR_UNUSABLE = 1 << 4, 1 << 7, 1 << 13, 1 << 14, 1 << 15, 1 << 16
EXT, NMI, HW, SOFT_INT, OTHER = 0, 2, 3, 4, 7
NONCANONICAL = 1 << 47
BEYOND_WIDTH = 1 << 40
PAT_RESERVED_TYPE = 0x0007040600070402        # entry 0: type 2


# ---- building blocks -----------------------------------------------------------------------

def write(g, field, value):
    g.vcpu.vmwrite(field, value)


def update(g, field, set_bits=0, clear_bits=0):
    write(g, field, (g.read(field) | set_bits) & ~clear_bits)


def seg(g, name, selector=None, base=None, limit=None, ar=None, set_ar=0, clear_ar=0):
    prefix = f"GUEST_{name}_"
    for part, value in (("SELECTOR", selector), ("BASE", base), ("LIMIT", limit), ("AR_BYTES", ar)):
        if value is not None:
            write(g, vmx.FIELDS[prefix + part], value)
    if set_ar or clear_ar:
        update(g, vmx.FIELDS[prefix + "AR_BYTES"], set_ar, clear_ar)


def with_type(g, name, seg_type, dpl=None):
    ar = g.read(vmx.FIELDS[f"GUEST_{name}_AR_BYTES"]) & ~0xF
    if dpl is not None:
        ar = (ar & ~0x60) | (dpl << 5)
    seg(g, name, ar=ar | seg_type)


def page(g, data=b""):
    hpa = g.vm.hostmem.alloc_page()
    g.vm.hostmem.write_bytes(hpa, data)
    return hpa


def inject(g, kind, vector, code=None, length=0):
    info = vmx.INTR_INFO_VALID_MASK | (kind << 8) | vector
    if code is not None:
        info |= vmx.INTR_INFO_DELIVER_CODE_MASK
        write(g, vmx.VM_ENTRY_EXCEPTION_ERROR_CODE, code)
    write(g, vmx.VM_ENTRY_INTR_INFO_FIELD, info)
    write(g, vmx.VM_ENTRY_INSTRUCTION_LEN, length)


def unsupported_bit(g, msr):
    allowed = g.vcpu.rdmsr_root(msr) >> 32
    return next(1 << bit for bit in range(32) if not allowed >> bit & 1)


def without_unrestricted_guest(g):
    """Protected mode with paging, as VMX without unrestricted guest requires."""
    update(g, vmx.SECONDARY_VM_EXEC_CONTROL, clear_bits=vmx.SECONDARY_EXEC_UNRESTRICTED_GUEST)
    update(g, vmx.GUEST_CR0, set_bits=CR0_PG)


def real_mode(g):
    update(g, vmx.GUEST_CR0, clear_bits=CR0_PE | CR0_PG)


def long_mode(g):
    update(g, vmx.VM_ENTRY_CONTROLS, set_bits=vmx.VM_ENTRY_IA32E_MODE)
    update(g, vmx.GUEST_CR0, set_bits=CR0_PG)
    update(g, vmx.GUEST_CR4, set_bits=CR4_PAE)
    update(g, vmx.GUEST_IA32_EFER, set_bits=EFER_LMA | EFER_LME)
    seg(g, "CS", set_ar=AR_L, clear_ar=AR_DB)


def pae_paging(g, cr3=0):
    update(g, vmx.GUEST_CR0, set_bits=CR0_PG)
    update(g, vmx.GUEST_CR4, set_bits=CR4_PAE)
    write(g, vmx.GUEST_CR3, cr3)


def virtual_8086(g):
    update(g, vmx.GUEST_RFLAGS, set_bits=RFLAGS_VM)
    for name in ("ES", "CS", "SS", "DS", "FS", "GS"):
        seg(g, name, selector=0x100, base=0x1000, limit=0xFFFF, ar=0xF3)


def tpr_shadow(g):
    update(g, vmx.CPU_BASED_VM_EXEC_CONTROL, set_bits=vmx.CPU_BASED_TPR_SHADOW)
    write(g, vmx.VIRTUAL_APIC_PAGE_ADDR, page(g))


def posted_interrupts(g):
    tpr_shadow(g)
    update(g, vmx.SECONDARY_VM_EXEC_CONTROL, set_bits=vmx.SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY)
    update(g, vmx.PIN_BASED_VM_EXEC_CONTROL, set_bits=vmx.PIN_BASED_POSTED_INTR)
    write(g, vmx.POSTED_INTR_NV, 0xF2)
    write(g, vmx.POSTED_INTR_DESC_ADDR, page(g))


def msr_area(g, count_field, addr_field, addr, count=1):
    write(g, count_field, count)
    write(g, addr_field, addr)


def msr_load(g, *entries):
    hpa = page(g, b"".join(struct.pack("<IIQ", index, reserved, value) for index, reserved, value in entries))
    msr_area(g, vmx.VM_ENTRY_MSR_LOAD_COUNT, vmx.VM_ENTRY_MSR_LOAD_ADDR, hpa, len(entries))


MSR_STORE = (vmx.VM_EXIT_MSR_STORE_COUNT, vmx.VM_EXIT_MSR_STORE_ADDR)
EXIT_MSR_LOAD = (vmx.VM_EXIT_MSR_LOAD_COUNT, vmx.VM_EXIT_MSR_LOAD_ADDR)
ENTRY_MSR_LOAD = (vmx.VM_ENTRY_MSR_LOAD_COUNT, vmx.VM_ENTRY_MSR_LOAD_ADDR)
PIN, PROC, PROC2 = vmx.PIN_BASED_VM_EXEC_CONTROL, vmx.CPU_BASED_VM_EXEC_CONTROL, vmx.SECONDARY_VM_EXEC_CONTROL
EXIT_CTL, ENTRY_CTL = vmx.VM_EXIT_CONTROLS, vmx.VM_ENTRY_CONTROLS


# ---- one VMCS per rule: (rule, what breaks it, how) ----------------------------------------

BREAKERS = [
    ("CTL_PIN_RESERVED", "a default-1 bit clear", lambda g: update(g, PIN, clear_bits=1 << 1)),
    ("CTL_PIN_RESERVED", "an unsupported bit", lambda g: update(g, PIN, unsupported_bit(g, 0x48D))),
    ("CTL_PROC_RESERVED", "an unsupported bit", lambda g: update(g, PROC, unsupported_bit(g, 0x48E))),
    ("CTL_PROC_RESERVED", "a default-1 bit clear", lambda g: update(g, PROC, clear_bits=1 << 1)),
    ("CTL_PROC2_RESERVED", "an unsupported bit", lambda g: update(g, PROC2, unsupported_bit(g, 0x48B))),
    ("CTL_EXIT_RESERVED", "a default-1 bit clear", lambda g: update(g, EXIT_CTL, clear_bits=1 << 0)),
    ("CTL_EXIT_RESERVED", "an unsupported bit", lambda g: update(g, EXIT_CTL, unsupported_bit(g, 0x48F))),
    ("CTL_ENTRY_RESERVED", "a default-1 bit clear", lambda g: update(g, ENTRY_CTL, clear_bits=1 << 0)),
    ("CTL_ENTRY_RESERVED", "an unsupported bit", lambda g: update(g, ENTRY_CTL, unsupported_bit(g, 0x490))),
    ("CTL_CR3_TARGET_COUNT", "five targets", lambda g: write(g, vmx.CR3_TARGET_COUNT, 5)),
    ("CTL_IO_BITMAP_ADDR", "A unaligned", lambda g: (update(g, PROC, vmx.CPU_BASED_USE_IO_BITMAPS),
                                                     write(g, vmx.IO_BITMAP_A, page(g) + 8),
                                                     write(g, vmx.IO_BITMAP_B, page(g)))),
    ("CTL_IO_BITMAP_ADDR", "B beyond the width", lambda g: (update(g, PROC, vmx.CPU_BASED_USE_IO_BITMAPS),
                                                            write(g, vmx.IO_BITMAP_A, page(g)),
                                                            write(g, vmx.IO_BITMAP_B, BEYOND_WIDTH))),
    ("CTL_MSR_BITMAP_ADDR", "unaligned", lambda g: update(g, vmx.MSR_BITMAP, 0x10)),
    ("CTL_MSR_BITMAP_ADDR", "beyond the width", lambda g: update(g, vmx.MSR_BITMAP, BEYOND_WIDTH)),
    ("CTL_VIRTUAL_APIC_ADDR", "unaligned", lambda g: (tpr_shadow(g), update(g, vmx.VIRTUAL_APIC_PAGE_ADDR, 0x80))),
    ("CTL_TPR_THRESHOLD_RESERVED", "bit 4", lambda g: (tpr_shadow(g), write(g, vmx.TPR_THRESHOLD, 0x10))),
    ("CTL_TPR_THRESHOLD_VTPR", "threshold 3 over VTPR 2", lambda g: (
        update(g, PROC, vmx.CPU_BASED_TPR_SHADOW),
        write(g, vmx.VIRTUAL_APIC_PAGE_ADDR, page(g, bytes(0x80) + b"\x20")), write(g, vmx.TPR_THRESHOLD, 3))),
    ("CTL_APICV_NEEDS_TPR_SHADOW", "APIC-register virtualization",
     lambda g: update(g, PROC2, vmx.SECONDARY_EXEC_APIC_REGISTER_VIRT)),
    ("CTL_APICV_NEEDS_TPR_SHADOW", "x2APIC virtualization",
     lambda g: update(g, PROC2, vmx.SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE)),
    ("CTL_X2APIC_AND_APIC_ACCESSES", "both", lambda g: (
        tpr_shadow(g), write(g, vmx.APIC_ACCESS_ADDR, page(g)),
        update(g, PROC2, vmx.SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE | vmx.SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES))),
    ("CTL_VID_NEEDS_EXT_INTR_EXITING", "no external-interrupt exiting", lambda g: (
        tpr_shadow(g), update(g, PROC2, vmx.SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY),
        update(g, PIN, clear_bits=vmx.PIN_BASED_EXT_INTR_MASK))),
    ("CTL_APIC_ACCESS_ADDR", "unaligned", lambda g: (
        write(g, vmx.APIC_ACCESS_ADDR, page(g) + 0x100), update(g, PROC2, vmx.SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES))),
    ("CTL_POSTED_NEEDS_VID", "no virtual-interrupt delivery", lambda g: (
        posted_interrupts(g), update(g, PROC2, clear_bits=vmx.SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY))),
    ("CTL_POSTED_NEEDS_ACK", "no acknowledge on exit", lambda g: (
        posted_interrupts(g), update(g, EXIT_CTL, clear_bits=vmx.VM_EXIT_ACK_INTR_ON_EXIT))),
    ("CTL_POSTED_VECTOR", "vector 0x1F2", lambda g: (posted_interrupts(g), write(g, vmx.POSTED_INTR_NV, 0x1F2))),
    ("CTL_POSTED_DESCRIPTOR", "32-byte aligned", lambda g: (
        posted_interrupts(g), update(g, vmx.POSTED_INTR_DESC_ADDR, 0x20))),
    ("CTL_VIRTUAL_NMIS_NEED_NMI_EXITING", "no NMI exiting",
     lambda g: update(g, PIN, clear_bits=vmx.PIN_BASED_NMI_EXITING)),
    ("CTL_NMI_WINDOW_NEEDS_VIRTUAL_NMIS", "no virtual NMIs", lambda g: (
        update(g, PIN, clear_bits=vmx.PIN_BASED_VIRTUAL_NMIS), update(g, PROC, vmx.CPU_BASED_NMI_WINDOW_EXITING))),
    ("CTL_VPID_ZERO", "VPID 0", lambda g: write(g, vmx.VIRTUAL_PROCESSOR_ID, 0)),
    ("CTL_EPTP_MEMORY_TYPE", "write-combining", lambda g: write(g, vmx.EPT_POINTER, g.read(vmx.EPT_POINTER) & ~7 | 1)),
    ("CTL_EPTP_WALK_LENGTH", "3 levels", lambda g: write(g, vmx.EPT_POINTER, g.read(vmx.EPT_POINTER) & ~0x38 | 0x10)),
    ("CTL_EPTP_RESERVED", "bit 7", lambda g: update(g, vmx.EPT_POINTER, 1 << 7)),
    ("CTL_EPTP_RESERVED", "beyond the width", lambda g: update(g, vmx.EPT_POINTER, BEYOND_WIDTH)),
    ("CTL_UNRESTRICTED_NEEDS_EPT", "no EPT", lambda g: update(g, PROC2, clear_bits=vmx.SECONDARY_EXEC_ENABLE_EPT)),
    ("CTL_SAVE_TIMER_NEEDS_TIMER", "no timer", lambda g: update(g, EXIT_CTL, vmx.VM_EXIT_SAVE_VMX_PREEMPTION_TIMER)),
    ("CTL_EXIT_MSR_STORE_ADDR", "unaligned", lambda g: msr_area(g, *MSR_STORE, page(g) + 8)),
    ("CTL_EXIT_MSR_STORE_ADDR", "last byte beyond the width",
     lambda g: msr_area(g, *MSR_STORE, BEYOND_WIDTH - 16, count=2)),
    ("CTL_EXIT_MSR_LOAD_ADDR", "unaligned", lambda g: msr_area(g, *EXIT_MSR_LOAD, page(g) + 4)),
    ("CTL_ENTRY_MSR_LOAD_ADDR", "unaligned", lambda g: msr_area(g, *ENTRY_MSR_LOAD, page(g) + 12)),
    ("CTL_ENTRY_MSR_LOAD_ADDR", "beyond the width", lambda g: msr_area(g, *ENTRY_MSR_LOAD, BEYOND_WIDTH)),
    ("CTL_INJECT_TYPE", "type 1", lambda g: inject(g, 1, 0x20)),
    ("CTL_INJECT_NMI_VECTOR", "NMI vector 3", lambda g: inject(g, NMI, 3)),
    ("CTL_INJECT_EXCEPTION_VECTOR", "exception 32", lambda g: inject(g, HW, 32)),
    ("CTL_INJECT_OTHER_EVENT_VECTOR", "other event 1", lambda g: inject(g, OTHER, 1)),
    ("CTL_INJECT_ERROR_CODE", "#GP without", lambda g: inject(g, HW, 13)),
    ("CTL_INJECT_ERROR_CODE", "#UD with", lambda g: inject(g, HW, 6, code=0)),
    ("CTL_INJECT_ERROR_CODE", "interrupt with", lambda g: inject(g, EXT, 0x20, code=0)),
    ("CTL_INJECT_ERROR_CODE", "#GP with, in real mode", lambda g: (real_mode(g), inject(g, HW, 13, code=0))),
    ("CTL_INJECT_RESERVED", "bit 12", lambda g: update(g, vmx.VM_ENTRY_INTR_INFO_FIELD,
                                                       vmx.INTR_INFO_VALID_MASK | (EXT << 8) | 0x20 | 1 << 12)),
    ("CTL_INJECT_ERROR_CODE_RESERVED", "error code bit 16", lambda g: inject(g, HW, 13, code=1 << 16)),
    ("CTL_INJECT_INSTRUCTION_LENGTH", "length 0", lambda g: inject(g, SOFT_INT, 0x80, length=0)),
    ("CTL_INJECT_INSTRUCTION_LENGTH", "length 16", lambda g: inject(g, SOFT_INT, 0x80, length=16)),

    ("HOST_CR0_FIXED", "NE clear", lambda g: update(g, vmx.HOST_CR0, clear_bits=CR0_NE)),
    ("HOST_CR0_FIXED", "bit 32", lambda g: update(g, vmx.HOST_CR0, 1 << 32)),
    ("HOST_CR4_FIXED", "VMXE clear", lambda g: update(g, vmx.HOST_CR4, clear_bits=CR4_VMXE)),
    ("HOST_CR3_WIDTH", "beyond the width", lambda g: update(g, vmx.HOST_CR3, BEYOND_WIDTH)),
    ("HOST_PAT", "type 2", lambda g: write(g, vmx.HOST_IA32_PAT, PAT_RESERVED_TYPE)),
    ("HOST_EFER_RESERVED", "bit 1", lambda g: update(g, vmx.HOST_IA32_EFER, 1 << 1)),
    ("HOST_EFER_LMA_LME", "LMA clear", lambda g: update(g, vmx.HOST_IA32_EFER, clear_bits=EFER_LMA)),
    ("HOST_SELECTOR_RPL_TI", "DS RPL 3", lambda g: write(g, vmx.HOST_DS_SELECTOR, 0x1B)),
    ("HOST_SELECTOR_RPL_TI", "TR TI", lambda g: write(g, vmx.HOST_TR_SELECTOR, 0x44)),
    ("HOST_CS_SELECTOR", "null", lambda g: write(g, vmx.HOST_CS_SELECTOR, 0)),
    ("HOST_TR_SELECTOR", "null", lambda g: write(g, vmx.HOST_TR_SELECTOR, 0)),
    ("HOST_ADDRESS_SPACE_SIZE", "32-bit host", lambda g: update(
        g, EXIT_CTL, clear_bits=vmx.VM_EXIT_HOST_ADDR_SPACE_SIZE | vmx.VM_EXIT_LOAD_IA32_EFER)),
    ("HOST_CR4_PAE", "PAE clear", lambda g: update(g, vmx.HOST_CR4, clear_bits=CR4_PAE)),
    *[("HOST_CANONICAL", name, lambda g, f=vmx.FIELDS[name]: write(g, f, NONCANONICAL))
      for name in ("HOST_FS_BASE", "HOST_GS_BASE", "HOST_TR_BASE", "HOST_GDTR_BASE", "HOST_IDTR_BASE",
                   "HOST_IA32_SYSENTER_ESP", "HOST_IA32_SYSENTER_EIP", "HOST_RIP")],

    ("GUEST_CR0_FIXED", "NE clear", lambda g: update(g, vmx.GUEST_CR0, clear_bits=CR0_NE)),
    ("GUEST_CR0_FIXED", "PG clear without unrestricted guest", lambda g: (
        without_unrestricted_guest(g), update(g, vmx.GUEST_CR0, clear_bits=CR0_PG))),
    ("GUEST_CR0_PG_PE", "PG without PE", lambda g: (real_mode(g), update(g, vmx.GUEST_CR0, CR0_PG))),
    ("GUEST_CR4_FIXED", "VMXE clear", lambda g: update(g, vmx.GUEST_CR4, clear_bits=CR4_VMXE)),
    ("GUEST_DEBUGCTL", "bit 2", lambda g: write(g, vmx.GUEST_IA32_DEBUGCTL, 1 << 2)),
    ("GUEST_DR7_HIGH", "bit 32", lambda g: update(g, vmx.GUEST_DR7, 1 << 32)),
    ("GUEST_IA32E_PAGING", "no paging", lambda g: update(g, ENTRY_CTL, vmx.VM_ENTRY_IA32E_MODE)),
    ("GUEST_PCIDE", "PCIDE in 32-bit mode", lambda g: update(g, vmx.GUEST_CR4, CR4_PCIDE)),
    ("GUEST_CR3_WIDTH", "beyond the width", lambda g: write(g, vmx.GUEST_CR3, BEYOND_WIDTH)),
    ("GUEST_SYSENTER_CANONICAL", "ESP", lambda g: write(g, vmx.GUEST_SYSENTER_ESP, NONCANONICAL)),
    ("GUEST_SYSENTER_CANONICAL", "EIP", lambda g: write(g, vmx.GUEST_SYSENTER_EIP, NONCANONICAL)),
    ("GUEST_PAT", "type 2", lambda g: write(g, vmx.GUEST_IA32_PAT, PAT_RESERVED_TYPE)),
    ("GUEST_EFER_RESERVED", "bit 1", lambda g: update(g, vmx.GUEST_IA32_EFER, 1 << 1)),
    ("GUEST_EFER_LMA", "LMA in 32-bit mode", lambda g: update(g, vmx.GUEST_IA32_EFER, EFER_LMA)),
    ("GUEST_EFER_LME", "LME with paging in 32-bit mode", lambda g: (
        update(g, vmx.GUEST_CR0, CR0_PG), update(g, vmx.GUEST_IA32_EFER, EFER_LME))),
    ("GUEST_TR_TI", "TI", lambda g: update(g, vmx.GUEST_TR_SELECTOR, 4)),
    ("GUEST_LDTR_TI", "usable, TI", lambda g: seg(g, "LDTR", selector=0xC, limit=0xFFFF, ar=AR_P | 2)),
    ("GUEST_SS_RPL", "SS RPL 1", lambda g: (without_unrestricted_guest(g), update(g, vmx.GUEST_SS_SELECTOR, 1))),
    ("GUEST_V86_BASE", "DS base", lambda g: (virtual_8086(g), seg(g, "DS", base=0x2000))),
    ("GUEST_V86_LIMIT", "SS limit", lambda g: (virtual_8086(g), seg(g, "SS", limit=0xFFFFF))),
    ("GUEST_V86_AR", "CS access rights", lambda g: (virtual_8086(g), seg(g, "CS", ar=0xFB))),
    ("GUEST_BASE_CANONICAL", "FS", lambda g: seg(g, "FS", base=NONCANONICAL)),
    ("GUEST_BASE_CANONICAL", "GS", lambda g: seg(g, "GS", base=NONCANONICAL)),
    ("GUEST_BASE_CANONICAL", "TR", lambda g: seg(g, "TR", base=NONCANONICAL)),
    ("GUEST_BASE_CANONICAL", "usable LDTR", lambda g: seg(g, "LDTR", base=NONCANONICAL, limit=0xFFFF, ar=AR_P | 2)),
    ("GUEST_BASE_HIGH", "CS", lambda g: seg(g, "CS", base=1 << 32)),
    ("GUEST_BASE_HIGH", "SS", lambda g: seg(g, "SS", base=1 << 32)),
    ("GUEST_BASE_HIGH", "ES", lambda g: seg(g, "ES", base=1 << 32)),
    ("GUEST_CS_TYPE", "data", lambda g: with_type(g, "CS", 1)),
    ("GUEST_CS_TYPE", "type 3 without unrestricted guest", lambda g: (without_unrestricted_guest(g), with_type(g, "CS", 3))),
    ("GUEST_CS_TYPE", "unaccessed code", lambda g: with_type(g, "CS", 10)),
    ("GUEST_SS_TYPE", "code", lambda g: with_type(g, "SS", 11)),
    ("GUEST_DATA_TYPE", "not accessed", lambda g: with_type(g, "DS", 2)),
    ("GUEST_DATA_TYPE", "execute-only code", lambda g: with_type(g, "FS", 9)),
    ("GUEST_S_BIT", "CS", lambda g: seg(g, "CS", clear_ar=AR_S)),
    ("GUEST_S_BIT", "GS", lambda g: seg(g, "GS", clear_ar=AR_S)),
    ("GUEST_CS_DPL", "non-conforming, DPL 1 over SS's 0", lambda g: with_type(g, "CS", 11, dpl=1)),
    ("GUEST_CS_DPL", "conforming, DPL 2 over SS's 0", lambda g: with_type(g, "CS", 15, dpl=2)),
    ("GUEST_CS_DPL", "type 3, DPL 1", lambda g: with_type(g, "CS", 3, dpl=1)),
    ("GUEST_SS_DPL", "DPL 1 with RPL 0", lambda g: (
        without_unrestricted_guest(g), with_type(g, "CS", 11, dpl=1), with_type(g, "SS", 3, dpl=1))),
    ("GUEST_SS_DPL", "DPL 1 in real mode", lambda g: (
        real_mode(g), with_type(g, "CS", 11, dpl=1), with_type(g, "SS", 3, dpl=1))),
    ("GUEST_DATA_DPL", "DS DPL 0, RPL 3", lambda g: (without_unrestricted_guest(g), update(g, vmx.GUEST_DS_SELECTOR, 3))),
    ("GUEST_PRESENT", "CS", lambda g: seg(g, "CS", clear_ar=AR_P)),
    ("GUEST_PRESENT", "ES", lambda g: seg(g, "ES", clear_ar=AR_P)),
    ("GUEST_AR_RESERVED", "bit 8", lambda g: seg(g, "DS", set_ar=1 << 8)),
    ("GUEST_AR_RESERVED", "bit 17", lambda g: seg(g, "TR", set_ar=1 << 17)),
    ("GUEST_CS_L_DB", "L and D/B", lambda g: (long_mode(g), seg(g, "CS", set_ar=AR_DB))),
    ("GUEST_LIMIT_G", "limit 0x100000 with G 0", lambda g: seg(g, "DS", limit=0x100000, clear_ar=AR_G)),
    ("GUEST_LIMIT_G", "limit 0xffffe with G 1", lambda g: seg(g, "SS", limit=0xFFFFE)),
    ("GUEST_TR_AR", "unusable", lambda g: seg(g, "TR", set_ar=AR_UNUSABLE)),
    ("GUEST_TR_AR", "available TSS", lambda g: with_type(g, "TR", 9)),
    ("GUEST_TR_AR", "16-bit TSS in IA-32e mode", lambda g: (long_mode(g), with_type(g, "TR", 3))),
    ("GUEST_TR_AR", "S 1", lambda g: seg(g, "TR", set_ar=AR_S)),
    ("GUEST_LDTR_AR", "type 3", lambda g: seg(g, "LDTR", limit=0xFFFF, ar=AR_P | 3)),
    ("GUEST_LDTR_AR", "not present", lambda g: seg(g, "LDTR", limit=0xFFFF, ar=2)),
    ("GUEST_DTR_BASE", "GDTR", lambda g: write(g, vmx.GUEST_GDTR_BASE, NONCANONICAL)),
    ("GUEST_DTR_BASE", "IDTR", lambda g: write(g, vmx.GUEST_IDTR_BASE, NONCANONICAL)),
    ("GUEST_DTR_LIMIT", "GDTR", lambda g: write(g, vmx.GUEST_GDTR_LIMIT, 0x10000)),
    ("GUEST_DTR_LIMIT", "IDTR", lambda g: write(g, vmx.GUEST_IDTR_LIMIT, 0x10000)),
    ("GUEST_RIP", "bit 32 outside 64-bit mode", lambda g: write(g, vmx.GUEST_RIP, 1 << 32)),
    ("GUEST_RIP", "non-canonical in 64-bit mode", lambda g: (long_mode(g), write(g, vmx.GUEST_RIP, NONCANONICAL))),
    ("GUEST_RFLAGS_RESERVED", "bit 1 clear", lambda g: write(g, vmx.GUEST_RFLAGS, 0)),
    ("GUEST_RFLAGS_RESERVED", "bit 3", lambda g: update(g, vmx.GUEST_RFLAGS, 1 << 3)),
    ("GUEST_RFLAGS_VM", "in real mode", lambda g: (virtual_8086(g), real_mode(g))),
    ("GUEST_RFLAGS_VM", "in IA-32e mode", lambda g: (long_mode(g), virtual_8086(g))),
    ("GUEST_RFLAGS_IF", "interrupt with IF 0", lambda g: inject(g, EXT, 0x20)),
    ("GUEST_ACTIVITY_STATE", "4", lambda g: write(g, vmx.GUEST_ACTIVITY_STATE, 4)),
    ("GUEST_HLT_DPL", "SS.DPL 3", lambda g: (
        write(g, vmx.GUEST_ACTIVITY_STATE, 1), with_type(g, "CS", 11, dpl=3), with_type(g, "SS", 3, dpl=3))),
    ("GUEST_ACTIVITY_SHADOW", "HLT in an STI shadow", lambda g: (
        update(g, vmx.GUEST_RFLAGS, RFLAGS_IF), write(g, vmx.GUEST_INTERRUPTIBILITY_INFO, 1),
        write(g, vmx.GUEST_ACTIVITY_STATE, 1))),
    ("GUEST_ACTIVITY_INJECTION", "#GP into HLT", lambda g: (
        write(g, vmx.GUEST_ACTIVITY_STATE, 1), inject(g, HW, 13, code=0))),
    ("GUEST_ACTIVITY_INJECTION", "interrupt into shutdown", lambda g: (
        update(g, vmx.GUEST_RFLAGS, RFLAGS_IF), write(g, vmx.GUEST_ACTIVITY_STATE, 2), inject(g, EXT, 0x20))),
    ("GUEST_ACTIVITY_INJECTION", "NMI into wait-for-SIPI", lambda g: (
        write(g, vmx.GUEST_ACTIVITY_STATE, 3), inject(g, NMI, 2))),
    ("GUEST_INTR_RESERVED", "bit 4", lambda g: write(g, vmx.GUEST_INTERRUPTIBILITY_INFO, 1 << 4)),
    ("GUEST_INTR_STI_MOV_SS", "both", lambda g: (
        update(g, vmx.GUEST_RFLAGS, RFLAGS_IF), write(g, vmx.GUEST_INTERRUPTIBILITY_INFO, 3))),
    ("GUEST_INTR_STI_IF", "IF 0", lambda g: write(g, vmx.GUEST_INTERRUPTIBILITY_INFO, 1)),
    ("GUEST_INTR_EXT_INJECTION", "MOV SS shadow", lambda g: (
        update(g, vmx.GUEST_RFLAGS, RFLAGS_IF), write(g, vmx.GUEST_INTERRUPTIBILITY_INFO, 2), inject(g, EXT, 0x20))),
    ("GUEST_INTR_NMI_MOV_SS", "MOV SS shadow", lambda g: (
        write(g, vmx.GUEST_INTERRUPTIBILITY_INFO, 2), inject(g, NMI, 2))),
    ("GUEST_INTR_SMI", "blocking by SMI", lambda g: write(g, vmx.GUEST_INTERRUPTIBILITY_INFO, 4)),
    ("GUEST_INTR_VIRTUAL_NMI", "NMI blocked", lambda g: (
        write(g, vmx.GUEST_INTERRUPTIBILITY_INFO, 8), inject(g, NMI, 2))),
    ("GUEST_PENDING_DBG_RESERVED", "bit 4", lambda g: write(g, vmx.GUEST_PENDING_DBG_EXCEPTIONS, 1 << 4)),
    ("GUEST_PENDING_DBG_RESERVED", "RTM (not implemented)",
     lambda g: write(g, vmx.GUEST_PENDING_DBG_EXCEPTIONS, 1 << 16 | 1 << 12)),
    ("GUEST_PENDING_DBG_BS", "TF in an STI shadow without BS", lambda g: (
        update(g, vmx.GUEST_RFLAGS, RFLAGS_IF | RFLAGS_TF), write(g, vmx.GUEST_INTERRUPTIBILITY_INFO, 1))),
    ("GUEST_PENDING_DBG_BS", "BS in HLT without TF", lambda g: (
        write(g, vmx.GUEST_ACTIVITY_STATE, 1), write(g, vmx.GUEST_PENDING_DBG_EXCEPTIONS, 1 << 14))),
    ("GUEST_PDPTE", "reserved bit 5", lambda g: (pae_paging(g), write(g, vmx.GUEST_PDPTR2, 0x5000 | 1 << 5 | 1))),
    ("GUEST_PDPTE", "beyond the width", lambda g: (pae_paging(g), write(g, vmx.GUEST_PDPTR0, BEYOND_WIDTH | 1))),
    ("GUEST_INTR_STI_NMI", "STI shadow", lambda g: (
        update(g, vmx.GUEST_RFLAGS, RFLAGS_IF), write(g, vmx.GUEST_INTERRUPTIBILITY_INFO, 1), inject(g, NMI, 2))),
    ("GUEST_VMCS_LINK", "another revision", lambda g: write(g, vmx.VMCS_LINK_POINTER, page(g, b"\x77\x77"))),
    ("GUEST_VMCS_LINK", "a shadow VMCS", lambda g: write(g, vmx.VMCS_LINK_POINTER, page(g, struct.pack(
        "<I", 1 << 31 | g.vcpu.rdmsr_root(vmx.MSR_IA32_VMX_BASIC) & 0x7FFFFFFF)))),
    ("GUEST_VMCS_LINK", "unaligned", lambda g: write(g, vmx.VMCS_LINK_POINTER, page(g) + 8)),
    ("GUEST_PDPTE_LOAD", "without EPT", lambda g: (
        without_unrestricted_guest(g), update(g, PROC2, clear_bits=vmx.SECONDARY_EXEC_ENABLE_EPT),
        pae_paging(g, cr3=page(g, struct.pack("<4Q", 1, 1 | 1 << 7, 0, 0))))),

    ("MSR_LOAD_UNREADABLE", "not in memory", lambda g: msr_area(g, *ENTRY_MSR_LOAD, 0xFF_0000_0000)),
    ("MSR_LOAD_RESERVED", "bits 63:32", lambda g: msr_load(g, (0x277, 1, 0x0007040600070406))),
    ("MSR_LOAD_INDEX", "IA32_FS_BASE", lambda g: msr_load(g, (0xC0000100, 0, 0))),
    ("MSR_LOAD_INDEX", "IA32_GS_BASE", lambda g: msr_load(g, (0xC0000101, 0, 0))),
    ("MSR_LOAD_INDEX", "x2APIC TPR", lambda g: msr_load(g, (0x808, 0, 0))),
    ("MSR_LOAD_VALUE", "a PAT type 2 second", lambda g: msr_load(g, (0x174, 0, 8), (0x277, 0, PAT_RESERVED_TYPE))),
]


def expect_failure(g, rule, msr_entry=1):
    check = vmx.ENTRY_CHECKS[rule]
    rc = g.enter()
    if check.area in ("CONTROLS", "HOST"):
        assert rc == vmx.VMX_FAIL_VALID
        assert g.read(vmx.VM_INSTRUCTION_ERROR) == (7 if check.area == "CONTROLS" else 8)
    else:
        assert rc == vmx.VMX_EXITED
        basic = vmx.EXIT_REASON_INVALID_STATE if check.area == "GUEST" else vmx.EXIT_REASON_MSR_LOAD_FAIL
        assert g.reason() == vmx.EXIT_REASON_FAILED_VMENTRY | basic
        assert g.qualification() == (check.qualification if check.area == "GUEST" else msr_entry)
        assert not g.read(vmx.VM_ENTRY_INTR_INFO_FIELD) & vmx.INTR_INFO_VALID_MASK
    assert vmx.ENTRY_CHECK_NAMES.get(lib.vmx_failed_entry_check(g.vcpu.cpu)) == rule
    assert lib.vmx_vmresume(g.vcpu.cpu) == vmx.VMX_FAIL_VALID          # still not launched
    assert g.read(vmx.VM_INSTRUCTION_ERROR) == 5


@pytest.mark.parametrize("rule, how, breaker", BREAKERS, ids=[f"{rule}-{how}" for rule, how, _ in BREAKERS])
def test_breaking_one_rule_fails_entry_as_the_sdm_says(rule, how, breaker):
    g = RawGuest(b"\xf4")
    breaker(g)
    expect_failure(g, rule, msr_entry=2 if rule == "MSR_LOAD_VALUE" else 1)


def test_every_rule_has_a_test_that_breaks_it():
    assert {rule for rule, _, _ in BREAKERS} == set(vmx.ENTRY_CHECKS)
    assert all(check.area in ("CONTROLS", "HOST", "GUEST", "MSR_LOAD") for check in vmx.ENTRY_CHECKS.values())


# ---- what the rules allow -----------------------------------------------------------------

def expect_entry(g, reason=vmx.EXIT_REASON_HLT):
    assert g.run_to_exit() == reason
    assert lib.vmx_failed_entry_check(g.vcpu.cpu) == 0


def test_kvm_s_vmcs_enters():
    expect_entry(RawGuest(b"\xf4"))


def test_msr_areas_are_not_checked_without_entries():
    g = RawGuest(b"\xf4")
    for count_field, addr_field in (MSR_STORE, EXIT_MSR_LOAD, ENTRY_MSR_LOAD):
        msr_area(g, count_field, addr_field, 0x1234567, count=0)
    expect_entry(g)


def test_secondary_controls_do_not_count_when_not_activated():
    g = RawGuest(b"\xf4")
    update(g, PROC2, unsupported_bit(g, 0x48B))
    update(g, PROC, clear_bits=vmx.CPU_BASED_ACTIVATE_SECONDARY_CONTROLS)
    expect_failure(g, "GUEST_CR0_FIXED")     # no longer unrestricted: CR0.PG is missing


def test_other_event_is_an_mtf_exit_before_the_first_instruction():
    g = RawGuest(b"\x90\xf4")
    inject(g, OTHER, 0)
    expect_entry(g, vmx.EXIT_REASON_MONITOR_TRAP_FLAG)
    assert g.rip() == CODE_GPA
    assert not g.read(PROC) & vmx.CPU_BASED_MONITOR_TRAP_FLAG


def test_events_a_halted_guest_may_take():
    g = RawGuest(b"\xf4").with_idt({0x20: CODE_GPA, 1: CODE_GPA, 18: CODE_GPA})
    update(g, vmx.GUEST_RFLAGS, RFLAGS_IF)
    write(g, vmx.GUEST_ACTIVITY_STATE, 1)
    inject(g, EXT, 0x20)
    expect_entry(g)                           # woken by the interrupt, halts again
    assert g.read(vmx.GUEST_RSP) == 0x8000 - 12
    for vector in (1, 18):
        g = RawGuest(b"\xf4").with_idt({0x20: CODE_GPA, 1: CODE_GPA, 18: CODE_GPA})
        write(g, vmx.GUEST_ACTIVITY_STATE, 1)
        inject(g, HW, vector)
        expect_entry(g)


def test_an_exception_into_real_mode_has_no_error_code():
    g = RawGuest(b"\xf4")
    real_mode(g)
    g.ram[13 * 4:13 * 4 + 4] = struct.pack("<HH", CODE_GPA, 0)
    write(g, vmx.GUEST_RSP, 0x8000)
    g.map_rw(0, 0x7000)                       # the IVT and the stack
    write(g, vmx.GUEST_CS_SELECTOR, 0)
    write(g, vmx.GUEST_CS_BASE, 0)
    inject(g, HW, 13)
    expect_entry(g)
    assert g.read(vmx.GUEST_RSP) == 0x8000 - 6             # IP, CS, FLAGS: no error code


def test_a_link_pointer_to_a_vmcs_of_this_revision_is_accepted():
    g = RawGuest(b"\xf4")
    revision = g.vcpu.rdmsr_root(vmx.MSR_IA32_VMX_BASIC) & 0x7FFFFFFF
    write(g, vmx.VMCS_LINK_POINTER, page(g, struct.pack("<I", revision)))
    expect_entry(g)


def test_conforming_code_may_have_a_lower_dpl_than_ss():
    g = RawGuest(b"\xf4")
    with_type(g, "CS", 15, dpl=0)
    with_type(g, "SS", 3, dpl=0)
    without_unrestricted_guest(g)
    seg(g, "SS", selector=g.read(vmx.GUEST_SS_SELECTOR))
    assert g.enter() == vmx.VMX_EXITED
    assert lib.vmx_failed_entry_check(g.vcpu.cpu) == 0


def test_a_valid_virtual_8086_state_passes_the_checks():
    g = RawGuest(b"\xf4")
    virtual_8086(g)
    assert g.enter() == vmx.VMX_EXITED
    assert not g.reason() & vmx.EXIT_REASON_FAILED_VMENTRY      # HLT at CPL 3: #GP, then a triple fault
    assert lib.vmx_failed_entry_check(g.vcpu.cpu) == 0


def test_pae_paging_without_ept_loads_the_pdptes_from_cr3():
    g = RawGuest(b"\xf4")
    without_unrestricted_guest(g)
    update(g, PROC2, clear_bits=vmx.SECONDARY_EXEC_ENABLE_EPT)
    pae_paging(g, cr3=page(g, struct.pack("<4Q", 0x5001, 0, 0, 0)))
    assert g.enter() == vmx.VMX_EXITED
    assert not g.reason() & vmx.EXIT_REASON_FAILED_VMENTRY
    assert lib.vmx_failed_entry_check(g.vcpu.cpu) == 0
