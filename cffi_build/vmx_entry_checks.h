/* The checks VM entry makes (SDM Vol. 3 "Checks on VMX Controls and Host-State Area",
 * "Checks on the Guest-State Area", "Loading MSRs"), one entry per rule, with how its
 * failure shows: VMfailValid(7) for the controls, VMfailValid(8) for the host state, a
 * VM exit with the entry-failure bit and basic reason 33 (guest state; the exit
 * qualification given here) or 34 (MSR loading; the qualification is the failing
 * entry's number).  Only the rules of features this silicon implements are listed: the
 * others' controls are reserved bits.  X(id, area, qualification, rule). */
#ifndef PYHV_VMX_ENTRY_CHECKS_H
#define PYHV_VMX_ENTRY_CHECKS_H

#define VMX_ENTRY_CHECKS(X) \
    X(CTL_PIN_RESERVED, CONTROLS, 0, "pin-based controls as IA32_VMX_TRUE_PINBASED_CTLS allows") \
    X(CTL_PROC_RESERVED, CONTROLS, 0, "primary processor-based controls as IA32_VMX_TRUE_PROCBASED_CTLS allows") \
    X(CTL_PROC2_RESERVED, CONTROLS, 0, "secondary processor-based controls (when activated) as IA32_VMX_PROCBASED_CTLS2 allows") \
    X(CTL_EXIT_RESERVED, CONTROLS, 0, "VM-exit controls as IA32_VMX_TRUE_EXIT_CTLS allows") \
    X(CTL_ENTRY_RESERVED, CONTROLS, 0, "VM-entry controls as IA32_VMX_TRUE_ENTRY_CTLS allows") \
    X(CTL_CR3_TARGET_COUNT, CONTROLS, 0, "CR3-target count at most 4 (IA32_VMX_MISC[24:16])") \
    X(CTL_IO_BITMAP_ADDR, CONTROLS, 0, "with I/O bitmaps: both addresses 4-KiB aligned and within the physical-address width") \
    X(CTL_MSR_BITMAP_ADDR, CONTROLS, 0, "with MSR bitmaps: the address 4-KiB aligned and within the physical-address width") \
    X(CTL_VIRTUAL_APIC_ADDR, CONTROLS, 0, "with the TPR shadow: the virtual-APIC address 4-KiB aligned and within the width") \
    X(CTL_TPR_THRESHOLD_RESERVED, CONTROLS, 0, "TPR shadow without virtual-interrupt delivery: TPR threshold bits 31:4 are 0") \
    X(CTL_TPR_THRESHOLD_VTPR, CONTROLS, 0, "TPR shadow without virtualized APIC accesses or virtual-interrupt delivery: TPR threshold[3:0] <= VTPR[7:4]") \
    X(CTL_APICV_NEEDS_TPR_SHADOW, CONTROLS, 0, "without the TPR shadow: no x2APIC virtualization, APIC-register virtualization or virtual-interrupt delivery") \
    X(CTL_X2APIC_AND_APIC_ACCESSES, CONTROLS, 0, "x2APIC-mode virtualization and virtualized APIC accesses are not both 1") \
    X(CTL_VID_NEEDS_EXT_INTR_EXITING, CONTROLS, 0, "virtual-interrupt delivery needs external-interrupt exiting") \
    X(CTL_APIC_ACCESS_ADDR, CONTROLS, 0, "with virtualized APIC accesses: the APIC-access address 4-KiB aligned and within the width") \
    X(CTL_POSTED_NEEDS_VID, CONTROLS, 0, "posted interrupts need virtual-interrupt delivery") \
    X(CTL_POSTED_NEEDS_ACK, CONTROLS, 0, "posted interrupts need \"acknowledge interrupt on exit\"") \
    X(CTL_POSTED_VECTOR, CONTROLS, 0, "posted interrupts: notification vector bits 15:8 are 0") \
    X(CTL_POSTED_DESCRIPTOR, CONTROLS, 0, "posted interrupts: descriptor address 64-byte aligned and within the width") \
    X(CTL_VIRTUAL_NMIS_NEED_NMI_EXITING, CONTROLS, 0, "virtual NMIs need NMI exiting") \
    X(CTL_NMI_WINDOW_NEEDS_VIRTUAL_NMIS, CONTROLS, 0, "NMI-window exiting needs virtual NMIs") \
    X(CTL_VPID_ZERO, CONTROLS, 0, "with VPIDs enabled: the VPID is not 0") \
    X(CTL_EPTP_MEMORY_TYPE, CONTROLS, 0, "EPTP memory type UC (0) or WB (6)") \
    X(CTL_EPTP_WALK_LENGTH, CONTROLS, 0, "EPTP page-walk length 4 (bits 5:3 = 3)") \
    X(CTL_EPTP_RESERVED, CONTROLS, 0, "EPTP bits 11:7 and beyond the physical-address width are 0") \
    X(CTL_UNRESTRICTED_NEEDS_EPT, CONTROLS, 0, "unrestricted guest needs EPT") \
    X(CTL_SAVE_TIMER_NEEDS_TIMER, CONTROLS, 0, "\"save VMX-preemption timer value\" needs the VMX-preemption timer") \
    X(CTL_EXIT_MSR_STORE_ADDR, CONTROLS, 0, "VM-exit MSR-store area (count > 0): 16-byte aligned, first and last byte within the width") \
    X(CTL_EXIT_MSR_LOAD_ADDR, CONTROLS, 0, "VM-exit MSR-load area (count > 0): 16-byte aligned, first and last byte within the width") \
    X(CTL_ENTRY_MSR_LOAD_ADDR, CONTROLS, 0, "VM-entry MSR-load area (count > 0): 16-byte aligned, first and last byte within the width") \
    X(CTL_INJECT_TYPE, CONTROLS, 0, "injected event: interruption type not reserved (1)") \
    X(CTL_INJECT_NMI_VECTOR, CONTROLS, 0, "injected NMI: vector 2") \
    X(CTL_INJECT_EXCEPTION_VECTOR, CONTROLS, 0, "injected hardware exception: vector at most 31") \
    X(CTL_INJECT_OTHER_EVENT_VECTOR, CONTROLS, 0, "injected other event (pending MTF VM exit): vector 0") \
    X(CTL_INJECT_ERROR_CODE, CONTROLS, 0, "deliver-error-code set exactly for hardware exceptions 8, 10-14 and 17 with CR0.PE = 1") \
    X(CTL_INJECT_RESERVED, CONTROLS, 0, "injected event: interruption-information bits 30:12 are 0") \
    X(CTL_INJECT_ERROR_CODE_RESERVED, CONTROLS, 0, "injected error code: bits 31:16 are 0") \
    X(CTL_INJECT_INSTRUCTION_LENGTH, CONTROLS, 0, "injected software interrupt or exception: instruction length 1-15") \
    X(HOST_CR0_FIXED, HOST, 0, "host CR0 as IA32_VMX_CR0_FIXED0/1 require") \
    X(HOST_CR4_FIXED, HOST, 0, "host CR4 as IA32_VMX_CR4_FIXED0/1 require") \
    X(HOST_CR3_WIDTH, HOST, 0, "host CR3 within the physical-address width") \
    X(HOST_PAT, HOST, 0, "with \"load IA32_PAT\": each host PAT entry a valid memory type") \
    X(HOST_EFER_RESERVED, HOST, 0, "with \"load IA32_EFER\": host EFER reserved bits 0") \
    X(HOST_EFER_LMA_LME, HOST, 0, "with \"load IA32_EFER\": host EFER.LMA and LME equal \"host address-space size\"") \
    X(HOST_SELECTOR_RPL_TI, HOST, 0, "host ES, CS, SS, DS, FS, GS and TR selectors: RPL and TI 0") \
    X(HOST_CS_SELECTOR, HOST, 0, "host CS selector not 0") \
    X(HOST_TR_SELECTOR, HOST, 0, "host TR selector not 0") \
    X(HOST_ADDRESS_SPACE_SIZE, HOST, 0, "VM entry from IA-32e mode (root mode here is): \"host address-space size\" 1") \
    X(HOST_CR4_PAE, HOST, 0, "64-bit host: CR4.PAE 1") \
    X(HOST_CANONICAL, HOST, 0, "host FS, GS, TR, GDTR and IDTR bases, SYSENTER_ESP/EIP and RIP canonical") \
    X(GUEST_CR0_FIXED, GUEST, 0, "guest CR0 as IA32_VMX_CR0_FIXED0/1 require (PE and PG free with unrestricted guest)") \
    X(GUEST_CR0_PG_PE, GUEST, 0, "guest CR0.PG needs CR0.PE") \
    X(GUEST_CR4_FIXED, GUEST, 0, "guest CR4 as IA32_VMX_CR4_FIXED0/1 require") \
    X(GUEST_DEBUGCTL, GUEST, 0, "with \"load debug controls\": IA32_DEBUGCTL reserved bits 0") \
    X(GUEST_DR7_HIGH, GUEST, 0, "with \"load debug controls\": DR7 bits 63:32 are 0") \
    X(GUEST_IA32E_PAGING, GUEST, 0, "IA-32e mode guest: CR0.PG and CR4.PAE") \
    X(GUEST_PCIDE, GUEST, 0, "outside IA-32e mode: CR4.PCIDE 0") \
    X(GUEST_CR3_WIDTH, GUEST, 0, "guest CR3 within the physical-address width") \
    X(GUEST_SYSENTER_CANONICAL, GUEST, 0, "guest SYSENTER_ESP and SYSENTER_EIP canonical") \
    X(GUEST_PAT, GUEST, 0, "with \"load IA32_PAT\": each guest PAT entry a valid memory type") \
    X(GUEST_EFER_RESERVED, GUEST, 0, "with \"load IA32_EFER\": guest EFER reserved bits 0") \
    X(GUEST_EFER_LMA, GUEST, 0, "with \"load IA32_EFER\": EFER.LMA equals \"IA-32e mode guest\"") \
    X(GUEST_EFER_LME, GUEST, 0, "with \"load IA32_EFER\" and CR0.PG: EFER.LME equals \"IA-32e mode guest\"") \
    X(GUEST_TR_TI, GUEST, 0, "TR selector: TI 0") \
    X(GUEST_LDTR_TI, GUEST, 0, "usable LDTR selector: TI 0") \
    X(GUEST_SS_RPL, GUEST, 0, "neither virtual-8086 nor unrestricted guest: SS.RPL equals CS.RPL") \
    X(GUEST_V86_BASE, GUEST, 0, "virtual-8086: CS, SS, DS, ES, FS, GS bases are selector * 16") \
    X(GUEST_V86_LIMIT, GUEST, 0, "virtual-8086: CS, SS, DS, ES, FS, GS limits 0xffff") \
    X(GUEST_V86_AR, GUEST, 0, "virtual-8086: CS, SS, DS, ES, FS, GS access rights 0xf3") \
    X(GUEST_BASE_CANONICAL, GUEST, 0, "FS, GS, TR and usable LDTR bases canonical") \
    X(GUEST_BASE_HIGH, GUEST, 0, "CS and usable SS, DS, ES bases: bits 63:32 are 0") \
    X(GUEST_CS_TYPE, GUEST, 0, "CS type 9, 11, 13 or 15 (or 3 with unrestricted guest)") \
    X(GUEST_SS_TYPE, GUEST, 0, "usable SS type 3 or 7") \
    X(GUEST_DATA_TYPE, GUEST, 0, "usable DS, ES, FS, GS: accessed, and readable if code") \
    X(GUEST_S_BIT, GUEST, 0, "CS and usable SS, DS, ES, FS, GS: S 1") \
    X(GUEST_CS_DPL, GUEST, 0, "CS.DPL: 0 for type 3, SS.DPL for non-conforming code, at most SS.DPL for conforming") \
    X(GUEST_SS_DPL, GUEST, 0, "SS.DPL: SS.RPL without unrestricted guest; 0 with CS type 3 or CR0.PE 0") \
    X(GUEST_DATA_DPL, GUEST, 0, "without unrestricted guest, usable DS, ES, FS, GS of type 0-11: DPL >= RPL") \
    X(GUEST_PRESENT, GUEST, 0, "CS and usable SS, DS, ES, FS, GS: P 1") \
    X(GUEST_AR_RESERVED, GUEST, 0, "usable segments: access-rights bits 11:8 and 31:17 are 0") \
    X(GUEST_CS_L_DB, GUEST, 0, "IA-32e mode guest with CS.L: CS.D/B 0") \
    X(GUEST_LIMIT_G, GUEST, 0, "usable segments: G 1 if limit bits 31:20 are set, G 0 if bits 11:0 are not all set") \
    X(GUEST_TR_AR, GUEST, 0, "TR usable, type 11 (or 3 outside IA-32e mode), S 0, P 1") \
    X(GUEST_LDTR_AR, GUEST, 0, "usable LDTR: type 2, S 0, P 1") \
    X(GUEST_DTR_BASE, GUEST, 0, "GDTR and IDTR bases canonical") \
    X(GUEST_DTR_LIMIT, GUEST, 0, "GDTR and IDTR limits: bits 31:16 are 0") \
    X(GUEST_RIP, GUEST, 0, "RIP bits 63:32 are 0 outside 64-bit mode, canonical in it") \
    X(GUEST_RFLAGS_RESERVED, GUEST, 0, "RFLAGS reserved bits 63:22, 15, 5, 3 are 0 and bit 1 is 1") \
    X(GUEST_RFLAGS_VM, GUEST, 0, "RFLAGS.VM 0 for an IA-32e mode guest or with CR0.PE 0") \
    X(GUEST_RFLAGS_IF, GUEST, 0, "injecting an external interrupt: RFLAGS.IF 1") \
    X(GUEST_ACTIVITY_STATE, GUEST, 0, "activity state active, HLT, shutdown or wait-for-SIPI (0-3)") \
    X(GUEST_HLT_DPL, GUEST, 0, "activity state HLT: SS.DPL 0") \
    X(GUEST_ACTIVITY_SHADOW, GUEST, 0, "blocking by STI or MOV SS: activity state active") \
    X(GUEST_ACTIVITY_INJECTION, GUEST, 0, "an injected event the activity state admits (HLT: interrupt, NMI, #DB, #MC, MTF; shutdown: NMI, #MC; wait-for-SIPI: none)") \
    X(GUEST_INTR_RESERVED, GUEST, 0, "interruptibility state bits 31:4 are 0") \
    X(GUEST_INTR_STI_MOV_SS, GUEST, 0, "blocking by STI and by MOV SS not both 1") \
    X(GUEST_INTR_STI_IF, GUEST, 0, "blocking by STI needs RFLAGS.IF 1") \
    X(GUEST_INTR_EXT_INJECTION, GUEST, 0, "injecting an external interrupt: no blocking by STI or MOV SS") \
    X(GUEST_INTR_NMI_MOV_SS, GUEST, 0, "injecting an NMI: no blocking by MOV SS") \
    X(GUEST_INTR_SMI, GUEST, 0, "blocking by SMI 0 outside SMM") \
    X(GUEST_INTR_VIRTUAL_NMI, GUEST, 0, "virtual NMIs, injecting an NMI: no blocking by NMI") \
    X(GUEST_PENDING_DBG_RESERVED, GUEST, 0, "pending debug exceptions: bits 11:4, 13, 15 and 63:16 are 0") \
    X(GUEST_PENDING_DBG_BS, GUEST, 0, "blocking by STI or MOV SS, or HLT: BS set exactly when RFLAGS.TF and not DEBUGCTL.BTF") \
    X(GUEST_PDPTE, GUEST, 0, "PAE paging with EPT: the PDPTE fields of present entries without reserved bits") \
    X(GUEST_INTR_STI_NMI, GUEST, 3, "injecting an NMI: no blocking by STI") \
    X(GUEST_VMCS_LINK, GUEST, 4, "VMCS link pointer all 1s, or 4-KiB aligned, within the width, at a (non-shadow) VMCS of this revision") \
    X(GUEST_PDPTE_LOAD, GUEST, 2, "PAE paging without EPT: the PDPTEs at CR3 present entries without reserved bits") \
    X(MSR_LOAD_UNREADABLE, MSR_LOAD, 0, "MSR-load entry in memory") \
    X(MSR_LOAD_RESERVED, MSR_LOAD, 0, "MSR-load entry: bits 63:32 of the first quadword are 0") \
    X(MSR_LOAD_INDEX, MSR_LOAD, 0, "MSR-load entry: not IA32_FS_BASE, IA32_GS_BASE or an x2APIC MSR (800H-8FFH)") \
    X(MSR_LOAD_VALUE, MSR_LOAD, 0, "MSR-load entry: a value WRMSR accepts for the MSR")

enum vmx_entry_check {
    ENTRY_CHECK_NONE,
#define ENTRY_CHECK_ENUM(id, area, qual, rule) ENTRY_CHECK_##id,
    VMX_ENTRY_CHECKS(ENTRY_CHECK_ENUM)
#undef ENTRY_CHECK_ENUM
    ENTRY_CHECK_COUNT
};

#endif
