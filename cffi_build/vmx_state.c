/* Moving guest and host state between the processor and the VMCS (the guest-state and
 * host-state areas of SDM Vol. 3 Chapter 25). */
#include "apicv.h"
#include "vmx_state.h"

static const uint32_t sel_field[8] = {
    GUEST_ES_SELECTOR, GUEST_CS_SELECTOR, GUEST_SS_SELECTOR, GUEST_DS_SELECTOR,
    GUEST_FS_SELECTOR, GUEST_GS_SELECTOR, GUEST_LDTR_SELECTOR, GUEST_TR_SELECTOR };
static const uint32_t base_field[8] = {
    GUEST_ES_BASE, GUEST_CS_BASE, GUEST_SS_BASE, GUEST_DS_BASE,
    GUEST_FS_BASE, GUEST_GS_BASE, GUEST_LDTR_BASE, GUEST_TR_BASE };
static const uint32_t limit_field[8] = {
    GUEST_ES_LIMIT, GUEST_CS_LIMIT, GUEST_SS_LIMIT, GUEST_DS_LIMIT,
    GUEST_FS_LIMIT, GUEST_GS_LIMIT, GUEST_LDTR_LIMIT, GUEST_TR_LIMIT };
static const uint32_t ar_field[8] = {
    GUEST_ES_AR_BYTES, GUEST_CS_AR_BYTES, GUEST_SS_AR_BYTES, GUEST_DS_AR_BYTES,
    GUEST_FS_AR_BYTES, GUEST_GS_AR_BYTES, GUEST_LDTR_AR_BYTES, GUEST_TR_AR_BYTES };

void guest_segment_from_vmcs(cpu_t *cpu, int s, seg_t *out)
{
    out->sel = (uint16_t)vmcs_get(cpu, sel_field[s]);
    out->base = vmcs_get(cpu, base_field[s]);
    out->limit = (uint32_t)vmcs_get(cpu, limit_field[s]);
    out->ar = (uint32_t)vmcs_get(cpu, ar_field[s]) & 0x1f0ff;
}

void load_guest_state(cpu_t *cpu)
{
    for (int s = 0; s < 8; s++)
        guest_segment_from_vmcs(cpu, s, &cpu->seg[s]);
    cpu->cr0 = vmcs_get(cpu, GUEST_CR0);
    cpu->cr3 = vmcs_get(cpu, GUEST_CR3);
    cpu->cr4 = vmcs_get(cpu, GUEST_CR4);
    if (cpu->vc.entry_ctl & ENTRY_LOAD_DEBUG_CONTROLS) {
        cpu->dr[7] = vmcs_get(cpu, GUEST_DR7);
        cpu->msr_debugctl = vmcs_get(cpu, GUEST_IA32_DEBUGCTL);
    }
    cpu->gdtr.base = vmcs_get(cpu, GUEST_GDTR_BASE);
    cpu->gdtr.limit = (uint32_t)vmcs_get(cpu, GUEST_GDTR_LIMIT);
    cpu->idtr.base = vmcs_get(cpu, GUEST_IDTR_BASE);
    cpu->idtr.limit = (uint32_t)vmcs_get(cpu, GUEST_IDTR_LIMIT);
    cpu->gpr[R_SP] = vmcs_get(cpu, GUEST_RSP);
    cpu->rip = vmcs_get(cpu, GUEST_RIP);
    cpu_set_rflags(cpu, vmcs_get(cpu, GUEST_RFLAGS));
    cpu->msr_sysenter_cs = vmcs_get(cpu, GUEST_SYSENTER_CS);
    cpu->msr_sysenter_esp = vmcs_get(cpu, GUEST_SYSENTER_ESP);
    cpu->msr_sysenter_eip = vmcs_get(cpu, GUEST_SYSENTER_EIP);
    if (cpu->vc.entry_ctl & ENTRY_LOAD_IA32_EFER) {
        cpu->efer = vmcs_get(cpu, GUEST_IA32_EFER);
    } else {
        /* LMA and LME follow the "IA-32e mode guest" control */
        if (cpu->vc.entry_ctl & ENTRY_IA32E_MODE)
            cpu->efer |= EFER_LMA | EFER_LME;
        else
            cpu->efer &= ~(EFER_LMA | EFER_LME);
    }
    if (cpu->vc.entry_ctl & ENTRY_LOAD_IA32_PAT)
        cpu->msr_pat = vmcs_get(cpu, GUEST_IA32_PAT);
    cpu->interruptibility = (uint32_t)vmcs_get(cpu, GUEST_INTERRUPTIBILITY_INFO);
    cpu->activity = (uint32_t)vmcs_get(cpu, GUEST_ACTIVITY_STATE);
    cpu->pending_dbg = 0;
    uint64_t pending_dbg = vmcs_get(cpu, GUEST_PENDING_DBG_EXCEPTIONS);
    if (pending_dbg)
        pend_debug_traps(cpu, pending_dbg);   /* after load_vmcs_controls() reset the checks */
    debug_registers_changed(cpu);
    if ((cpu->cr4 & CR4_PAE) && !(cpu->efer & EFER_LMA) && (cpu->cr0 & CR0_PG)) {
        if (cpu->vc.proc2 & SEC_ENABLE_EPT) {
            cpu->pdpte[0] = vmcs_get(cpu, GUEST_PDPTR0);
            cpu->pdpte[1] = vmcs_get(cpu, GUEST_PDPTR1);
            cpu->pdpte[2] = vmcs_get(cpu, GUEST_PDPTR2);
            cpu->pdpte[3] = vmcs_get(cpu, GUEST_PDPTR3);
        }
    }
    cpu_update_mode(cpu);
}

void save_guest_state(cpu_t *cpu)
{
    for (int s = 0; s < 8; s++) {
        seg_t *g = &cpu->seg[s];
        vmcs_set(cpu, sel_field[s], g->sel);
        vmcs_set(cpu, base_field[s], g->base);
        vmcs_set(cpu, limit_field[s], g->limit);
        vmcs_set(cpu, ar_field[s], g->ar & 0x1f0ff);
    }
    vmcs_set(cpu, GUEST_CR0, cpu->cr0);
    vmcs_set(cpu, GUEST_CR3, cpu->cr3);
    vmcs_set(cpu, GUEST_CR4, cpu->cr4);
    if (cpu->vc.exit_ctl & EXIT_SAVE_DEBUG_CONTROLS) {
        vmcs_set(cpu, GUEST_DR7, cpu->dr[7]);
        vmcs_set(cpu, GUEST_IA32_DEBUGCTL, cpu->msr_debugctl);
    }
    vmcs_set(cpu, GUEST_GDTR_BASE, cpu->gdtr.base);
    vmcs_set(cpu, GUEST_GDTR_LIMIT, cpu->gdtr.limit);
    vmcs_set(cpu, GUEST_IDTR_BASE, cpu->idtr.base);
    vmcs_set(cpu, GUEST_IDTR_LIMIT, cpu->idtr.limit);
    vmcs_set(cpu, GUEST_RSP, cpu->gpr[R_SP]);
    vmcs_set(cpu, GUEST_RIP, cpu->rip);
    vmcs_set(cpu, GUEST_RFLAGS, cpu_get_rflags(cpu));
    vmcs_set(cpu, GUEST_SYSENTER_CS, cpu->msr_sysenter_cs);
    vmcs_set(cpu, GUEST_SYSENTER_ESP, cpu->msr_sysenter_esp);
    vmcs_set(cpu, GUEST_SYSENTER_EIP, cpu->msr_sysenter_eip);
    if (cpu->vc.exit_ctl & EXIT_SAVE_IA32_EFER)
        vmcs_set(cpu, GUEST_IA32_EFER, cpu->efer);
    if (cpu->vc.exit_ctl & EXIT_SAVE_IA32_PAT)
        vmcs_set(cpu, GUEST_IA32_PAT, cpu->msr_pat);
    /* IA32_VMX_MISC bit 5: the IA-32e mode guest control follows EFER.LMA */
    uint64_t entry = vmcs_get(cpu, VM_ENTRY_CONTROLS) & ~(uint64_t)ENTRY_IA32E_MODE;
    vmcs_set(cpu, VM_ENTRY_CONTROLS, entry | ((cpu->efer & EFER_LMA) ? ENTRY_IA32E_MODE : 0));
    vmcs_set(cpu, GUEST_INTERRUPTIBILITY_INFO, cpu->interruptibility);
    vmcs_set(cpu, GUEST_ACTIVITY_STATE, cpu->activity);
    vmcs_set(cpu, GUEST_PENDING_DBG_EXCEPTIONS, cpu->pending_dbg);
    if ((cpu->vc.proc2 & SEC_ENABLE_EPT) && (cpu->cr4 & CR4_PAE) &&
        !(cpu->efer & EFER_LMA) && (cpu->cr0 & CR0_PG)) {
        vmcs_set(cpu, GUEST_PDPTR0, cpu->pdpte[0]);
        vmcs_set(cpu, GUEST_PDPTR1, cpu->pdpte[1]);
        vmcs_set(cpu, GUEST_PDPTR2, cpu->pdpte[2]);
        vmcs_set(cpu, GUEST_PDPTR3, cpu->pdpte[3]);
    }
}

/* Host state after a VM exit (SDM 28.5).  Root-mode software is the Python hypervisor,
 * so this is the processor state it would resume with. */
void load_host_state(cpu_t *cpu)
{
    static const uint32_t host_sel[7] = {
        HOST_ES_SELECTOR, HOST_CS_SELECTOR, HOST_SS_SELECTOR, HOST_DS_SELECTOR,
        HOST_FS_SELECTOR, HOST_GS_SELECTOR, HOST_TR_SELECTOR };
    static const int seg_of[7] = { S_ES, S_CS, S_SS, S_DS, S_FS, S_GS, S_TR };
    int host64 = (cpu->vc.exit_ctl & EXIT_HOST_ADDR_SPACE_SIZE) != 0;
    for (int k = 0; k < 7; k++) {
        seg_t *s = &cpu->seg[seg_of[k]];
        s->sel = (uint16_t)vmcs_get(cpu, host_sel[k]);
        s->base = 0;
        s->limit = 0xffffffff;
        s->ar = (s->sel & ~3u) ? (0x93 | AR_G | AR_DB) : AR_UNUSABLE;
    }
    cpu->seg[S_CS].ar = 0x9b | AR_G | (host64 ? AR_L : AR_DB);
    cpu->seg[S_TR].ar = 0x8b;
    cpu->seg[S_TR].limit = 0x67;
    cpu->seg[S_FS].base = vmcs_get(cpu, HOST_FS_BASE);
    cpu->seg[S_GS].base = vmcs_get(cpu, HOST_GS_BASE);
    cpu->seg[S_TR].base = vmcs_get(cpu, HOST_TR_BASE);
    cpu->seg[S_LDTR].sel = 0;
    cpu->seg[S_LDTR].ar = AR_UNUSABLE;
    cpu->gdtr.base = vmcs_get(cpu, HOST_GDTR_BASE);
    cpu->gdtr.limit = 0xffff;
    cpu->idtr.base = vmcs_get(cpu, HOST_IDTR_BASE);
    cpu->idtr.limit = 0xffff;
    cpu->cr0 = vmcs_get(cpu, HOST_CR0);
    cpu->cr3 = vmcs_get(cpu, HOST_CR3);
    cpu->cr4 = vmcs_get(cpu, HOST_CR4);
    cpu->dr[7] = 0x400;
    cpu->msr_debugctl = 0;
    cpu->gpr[R_SP] = vmcs_get(cpu, HOST_RSP);
    cpu->rip = vmcs_get(cpu, HOST_RIP);
    cpu_set_rflags(cpu, 2);
    cpu->msr_sysenter_cs = vmcs_get(cpu, HOST_IA32_SYSENTER_CS);
    cpu->msr_sysenter_esp = vmcs_get(cpu, HOST_IA32_SYSENTER_ESP);
    cpu->msr_sysenter_eip = vmcs_get(cpu, HOST_IA32_SYSENTER_EIP);
    if (cpu->vc.exit_ctl & EXIT_LOAD_IA32_EFER)
        cpu->efer = vmcs_get(cpu, HOST_IA32_EFER);
    else if (host64)
        cpu->efer |= EFER_LMA | EFER_LME;
    else
        cpu->efer &= ~(EFER_LMA | EFER_LME);
    if (cpu->vc.exit_ctl & EXIT_LOAD_IA32_PAT)
        cpu->msr_pat = vmcs_get(cpu, HOST_IA32_PAT);
    cpu->interruptibility = 0;
    cpu->activity = 0;
    cpu_update_mode(cpu);
}

/* The controls the processor consults while the guest runs (SDM: the VMCS may be
 * cached on the processor; software must use VMREAD/VMWRITE). */
void load_vmcs_controls(cpu_t *cpu)
{
    vmcs_cache_t *vc = &cpu->vc;
    vc->pin = (uint32_t)vmcs_get(cpu, PIN_BASED_VM_EXEC_CONTROL);
    vc->proc = (uint32_t)vmcs_get(cpu, CPU_BASED_VM_EXEC_CONTROL);
    vc->proc2 = (vc->proc & CPU_ACTIVATE_SECONDARY) ? (uint32_t)vmcs_get(cpu, SECONDARY_VM_EXEC_CONTROL) : 0;
    vc->exit_ctl = (uint32_t)vmcs_get(cpu, VM_EXIT_CONTROLS);
    vc->entry_ctl = (uint32_t)vmcs_get(cpu, VM_ENTRY_CONTROLS);
    vc->exception_bitmap = (uint32_t)vmcs_get(cpu, EXCEPTION_BITMAP);
    vc->pf_mask = (uint32_t)vmcs_get(cpu, PAGE_FAULT_ERROR_CODE_MASK);
    vc->pf_match = (uint32_t)vmcs_get(cpu, PAGE_FAULT_ERROR_CODE_MATCH);
    vc->io_bitmap_a = vmcs_get(cpu, IO_BITMAP_A);
    vc->io_bitmap_b = vmcs_get(cpu, IO_BITMAP_B);
    vc->msr_bitmap = vmcs_get(cpu, MSR_BITMAP);
    vc->eptp = vmcs_get(cpu, EPT_POINTER);
    vc->vpid = (uint16_t)vmcs_get(cpu, VIRTUAL_PROCESSOR_ID);
    vc->cr0_mask = vmcs_get(cpu, CR0_GUEST_HOST_MASK);
    vc->cr4_mask = vmcs_get(cpu, CR4_GUEST_HOST_MASK);
    vc->cr0_shadow = vmcs_get(cpu, CR0_READ_SHADOW);
    vc->cr4_shadow = vmcs_get(cpu, CR4_READ_SHADOW);
    vc->cr3_target_count = (uint32_t)vmcs_get(cpu, CR3_TARGET_COUNT);
    vc->cr3_target[0] = vmcs_get(cpu, CR3_TARGET_VALUE0);
    vc->cr3_target[1] = vmcs_get(cpu, CR3_TARGET_VALUE1);
    vc->cr3_target[2] = vmcs_get(cpu, CR3_TARGET_VALUE2);
    vc->cr3_target[3] = vmcs_get(cpu, CR3_TARGET_VALUE3);
    vc->tsc_offset = vmcs_get(cpu, TSC_OFFSET);
    apicv_load_controls(cpu);
    cpu->boundary_controls = vc->proc & (CPU_INTR_WINDOW_EXITING | CPU_NMI_WINDOW_EXITING |
                                         CPU_MONITOR_TRAP_FLAG);
}

/* Root-mode software working on the guest's behalf (KVM's emulator, its page walker)
 * runs the processor in the guest state of the current VMCS, then goes back to root
 * mode.  Returns the root-mode RSP to hand to guest_context_leave. */
uint64_t guest_context_enter(cpu_t *cpu)
{
    uint64_t host_rsp = cpu->gpr[R_SP];
    load_vmcs_controls(cpu);
    load_guest_state(cpu);
    return host_rsp;
}

void guest_context_leave(cpu_t *cpu, uint64_t host_rsp)
{
    cpu->emul = NULL;
    load_host_state(cpu);
    cpu->gpr[R_SP] = host_rsp;
}
