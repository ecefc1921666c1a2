/* VMLAUNCH and VMRESUME (SDM Vol. 3 Chapter 27): the checks on controls, host state and
 * guest state, MSR loading, guest-state loading and event injection, then guest
 * execution until a VM exit. */
#include "apicv.h"
#include "vmx_caps.h"
#include "vmx_state.h"

enum { LAUNCH_CLEAR = 0, LAUNCH_LAUNCHED = 1 };

static int allowed(uint32_t value, uint32_t must_be_one, uint32_t may_be_one)
{
    return (value & must_be_one) == must_be_one && (value & ~may_be_one) == 0;
}

static int canonical(uint64_t v)
{
    return (uint64_t)(((int64_t)(v << 16)) >> 16) == v;
}

static int bad_phys(uint64_t a, uint64_t align)
{
    return (a & (align - 1)) || (a >> 40);
}

/* SDM 27.2.1.1: the controls for APIC virtualization. */
static int apic_virtualization_controls_valid(cpu_t *cpu)
{
    vmcs_cache_t *vc = &cpu->vc;
    if (vc->proc & CPU_TPR_SHADOW) {
        if (bad_phys(vc->virtual_apic_addr, PAGE_SIZE))
            return 0;
        if (!(vc->proc2 & SEC_VIRTUAL_INTR_DELIVERY) && (vc->tpr_threshold >> 4))
            return 0;
        if (!(vc->proc2 & (SEC_VIRTUALIZE_APIC_ACCESSES | SEC_VIRTUAL_INTR_DELIVERY)) &&
            (vc->tpr_threshold & 0xf) > ((vapic_read32(cpu, VAPIC_TPR) >> 4) & 0xf))
            return 0;
    } else if (vc->proc2 & (SEC_VIRTUALIZE_X2APIC | SEC_APIC_REGISTER_VIRT | SEC_VIRTUAL_INTR_DELIVERY)) {
        return 0;
    }
    if ((vc->proc2 & SEC_VIRTUALIZE_X2APIC) && (vc->proc2 & SEC_VIRTUALIZE_APIC_ACCESSES))
        return 0;
    if ((vc->proc2 & SEC_VIRTUAL_INTR_DELIVERY) && !(vc->pin & PIN_EXT_INTR_EXITING))
        return 0;
    if ((vc->proc2 & SEC_VIRTUALIZE_APIC_ACCESSES) && bad_phys(vc->apic_access_addr, PAGE_SIZE))
        return 0;
    if ((vc->pin & PIN_POSTED_INTERRUPTS) &&
        (!(vc->proc2 & SEC_VIRTUAL_INTR_DELIVERY) || !(vc->exit_ctl & EXIT_ACK_INTR_ON_EXIT) ||
         (vc->posted_intr_nv >> 8) || bad_phys(vc->posted_intr_desc, 64)))
        return 0;
    return 1;
}

/* SDM 27.2.1: checks on VMX controls. */
static int controls_valid(cpu_t *cpu)
{
    vmcs_cache_t *vc = &cpu->vc;
    if (!allowed(vc->pin, PIN_DEFAULT1, PIN_ALLOWED1) ||
        !allowed(vc->proc, PROC_TRUE_DEFAULT1, PROC_ALLOWED1) ||
        !allowed(vc->proc2, 0, PROC2_ALLOWED1) ||
        !allowed(vc->exit_ctl, EXIT_TRUE_DEFAULT1, EXIT_ALLOWED1) ||
        !allowed(vc->entry_ctl, ENTRY_TRUE_DEFAULT1, ENTRY_ALLOWED1))
        return 0;
    if (vc->cr3_target_count > 4)
        return 0;
    if ((vc->proc & CPU_USE_IO_BITMAPS) && (bad_phys(vc->io_bitmap_a, PAGE_SIZE) || bad_phys(vc->io_bitmap_b, PAGE_SIZE)))
        return 0;
    if ((vc->proc & CPU_USE_MSR_BITMAPS) && bad_phys(vc->msr_bitmap, PAGE_SIZE))
        return 0;
    if ((vc->pin & PIN_VIRTUAL_NMIS) && !(vc->pin & PIN_NMI_EXITING))
        return 0;
    if ((vc->proc & CPU_NMI_WINDOW_EXITING) && !(vc->pin & PIN_VIRTUAL_NMIS))
        return 0;
    if ((vc->proc2 & SEC_ENABLE_VPID) && vc->vpid == 0)
        return 0;
    if (vc->proc2 & SEC_ENABLE_EPT) {
        uint64_t e = vc->eptp;
        uint64_t memtype = e & 7, walk = (e >> 3) & 7;
        if ((memtype != 0 && memtype != 6) || walk != 3 || (e & 0xf80) || (e >> 40))
            return 0;
    }
    if ((vc->proc2 & SEC_UNRESTRICTED_GUEST) && !(vc->proc2 & SEC_ENABLE_EPT))
        return 0;
    if (!apic_virtualization_controls_valid(cpu))
        return 0;
    uint32_t info = (uint32_t)vmcs_get(cpu, VM_ENTRY_INTR_INFO_FIELD);
    if (info & INTR_INFO_VALID) {
        uint32_t type = (info >> 8) & 7, vector = info & 0xff;
        if (type == 1 || type == 7 || (info & 0x7ffff000u))
            return 0;
        if (type == EV_NMI && vector != 2)
            return 0;
        if (type == EV_HW_EXC && vector > 31)
            return 0;
        int wants_code = type == EV_HW_EXC && (vector == 8 || (vector >= 10 && vector <= 14) || vector == 17);
        if ((info & INTR_INFO_DELIVER_CODE) && !wants_code)
            return 0;
        if (type >= EV_SW_INT) {
            uint32_t len = (uint32_t)vmcs_get(cpu, VM_ENTRY_INSTRUCTION_LEN);
            if (len > 15 || len == 0)
                return 0;
        }
    }
    if (bad_phys(vmcs_get(cpu, VM_ENTRY_MSR_LOAD_ADDR), 16) ||
        bad_phys(vmcs_get(cpu, VM_EXIT_MSR_LOAD_ADDR), 16) ||
        bad_phys(vmcs_get(cpu, VM_EXIT_MSR_STORE_ADDR), 16))
        return 0;
    return 1;
}

/* SDM 27.2.2-27.2.4: checks on host state.  Root mode here is 64-bit. */
static int host_state_valid(cpu_t *cpu)
{
    uint64_t cr0 = vmcs_get(cpu, HOST_CR0), cr4 = vmcs_get(cpu, HOST_CR4);
    if ((cr0 & CR0_FIXED0) != CR0_FIXED0 || (cr0 & ~CR0_FIXED1))
        return 0;
    if ((cr4 & CR4_FIXED0) != CR4_FIXED0 || (cr4 & ~CR4_FIXED1) || !(cr4 & CR4_PAE))
        return 0;
    if (!(cpu->vc.exit_ctl & EXIT_HOST_ADDR_SPACE_SIZE))
        return 0;
    if (vmcs_get(cpu, HOST_CR3) >> 40)
        return 0;
    static const uint32_t sels[] = { HOST_ES_SELECTOR, HOST_CS_SELECTOR, HOST_SS_SELECTOR,
        HOST_DS_SELECTOR, HOST_FS_SELECTOR, HOST_GS_SELECTOR, HOST_TR_SELECTOR };
    for (unsigned k = 0; k < sizeof(sels) / sizeof(sels[0]); k++)
        if (vmcs_get(cpu, sels[k]) & 7)
            return 0;
    if (vmcs_get(cpu, HOST_CS_SELECTOR) == 0 || vmcs_get(cpu, HOST_TR_SELECTOR) == 0)
        return 0;
    static const uint32_t bases[] = { HOST_FS_BASE, HOST_GS_BASE, HOST_TR_BASE, HOST_GDTR_BASE,
        HOST_IDTR_BASE, HOST_IA32_SYSENTER_ESP, HOST_IA32_SYSENTER_EIP, HOST_RIP };
    for (unsigned k = 0; k < sizeof(bases) / sizeof(bases[0]); k++)
        if (!canonical(vmcs_get(cpu, bases[k])))
            return 0;
    if (cpu->vc.exit_ctl & EXIT_LOAD_IA32_EFER) {
        uint64_t efer = vmcs_get(cpu, HOST_IA32_EFER);
        if ((efer & ~(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE)) || !(efer & EFER_LMA) || !(efer & EFER_LME))
            return 0;
    }
    return 1;
}

/* SDM 27.3.1: checks on the guest-state area. */
static int guest_state_valid(cpu_t *cpu)
{
    vmcs_cache_t *vc = &cpu->vc;
    int unrestricted = (vc->proc2 & SEC_UNRESTRICTED_GUEST) != 0;
    int ia32e = (vc->entry_ctl & ENTRY_IA32E_MODE) != 0;
    uint64_t cr0 = vmcs_get(cpu, GUEST_CR0), cr4 = vmcs_get(cpu, GUEST_CR4);
    uint64_t fixed0 = CR0_FIXED0 & ~(unrestricted ? (CR0_PE | CR0_PG) : 0);
    if ((cr0 & fixed0) != fixed0 || (cr0 & ~CR0_FIXED1))
        return 0;
    if ((cr0 & CR0_PG) && !(cr0 & CR0_PE))
        return 0;
    if ((cr4 & CR4_FIXED0) != CR4_FIXED0 || (cr4 & ~CR4_FIXED1))
        return 0;
    if (ia32e && (!(cr0 & CR0_PG) || !(cr4 & CR4_PAE)))
        return 0;
    if (!ia32e && (cr4 & CR4_PCIDE))
        return 0;
    if (vmcs_get(cpu, GUEST_CR3) >> 40)
        return 0;
    if (vc->entry_ctl & ENTRY_LOAD_IA32_EFER) {
        uint64_t efer = vmcs_get(cpu, GUEST_IA32_EFER);
        if (efer & ~(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE))
            return 0;
        if (!!(efer & EFER_LMA) != ia32e || ((cr0 & CR0_PG) && !!(efer & EFER_LME) != ia32e))
            return 0;
    }
    uint64_t rflags = vmcs_get(cpu, GUEST_RFLAGS);
    if ((rflags & 0xffffffffffc08028ull) || !(rflags & 2))
        return 0;
    if ((rflags & F_VM) && (ia32e || !(cr0 & CR0_PE)))
        return 0;

    seg_t s[8];
    for (int k = 0; k < 8; k++)
        guest_segment_from_vmcs(cpu, k, &s[k]);
    int v86 = (rflags & F_VM) != 0;
    int real = !(cr0 & CR0_PE);
    /* access rights: reserved bits, and granularity consistent with the limit */
    for (int k = 0; k < 8; k++) {
        uint32_t ar = (uint32_t)vmcs_get(cpu, GUEST_ES_AR_BYTES + 2 * (uint32_t)k);
        if (ar & AR_UNUSABLE)
            continue;
        if (ar & 0xfffe0f00u)
            return 0;
        if (!v86 && ((s[k].limit & 0xfff) != 0xfff) && (ar & AR_G))
            return 0;
        if (!v86 && (s[k].limit >> 20) && !(ar & AR_G))
            return 0;
    }
    uint32_t cs_ar = s[S_CS].ar, ss_ar = s[S_SS].ar;
    if (!v86 && !(real && unrestricted)) {
        uint32_t t = AR_TYPE(cs_ar);
        if (!(cs_ar & AR_P) || !(cs_ar & AR_S) || !(t == 9 || t == 11 || t == 13 || t == 15 ||
                                                  (unrestricted && t == 3)))
            return 0;
        if (!(ss_ar & AR_UNUSABLE)) {
            uint32_t st = AR_TYPE(ss_ar);
            if (!(ss_ar & AR_P) || !(ss_ar & AR_S) || (st != 3 && st != 7))
                return 0;
        }
        if (t != 3 && (t & 4) == 0 && AR_DPL(cs_ar) != AR_DPL(ss_ar))
            return 0;
        if (ia32e && (cs_ar & AR_L) && (cs_ar & AR_DB))
            return 0;
    }
    uint32_t tr_ar = s[S_TR].ar;
    if ((tr_ar & AR_UNUSABLE) || (tr_ar & AR_S) || !(tr_ar & AR_P) ||
        !(AR_TYPE(tr_ar) == 11 || (!ia32e && AR_TYPE(tr_ar) == 3)) || (s[S_TR].sel & 4))
        return 0;
    uint32_t ldt_ar = s[S_LDTR].ar;
    if (!(ldt_ar & AR_UNUSABLE) && ((ldt_ar & AR_S) || !(ldt_ar & AR_P) || AR_TYPE(ldt_ar) != 2))
        return 0;
    uint64_t rip = vmcs_get(cpu, GUEST_RIP);
    if (ia32e && (cs_ar & AR_L) ? !canonical(rip) : (rip >> 32) != 0)
        return 0;
    uint32_t activity = (uint32_t)vmcs_get(cpu, GUEST_ACTIVITY_STATE);
    if (activity > 3 || (activity == 1 && AR_DPL(ss_ar) != 0))
        return 0;
    uint32_t intr = (uint32_t)vmcs_get(cpu, GUEST_INTERRUPTIBILITY_INFO);
    if ((intr & ~0x1fu) || (intr & 3) == 3 || ((intr & 1) && !(rflags & F_IF)))
        return 0;
    /* pending debug exceptions: only B3-B0, enabled breakpoint, BS and RTM; in a shadow or
     * HLT, BS says whether the single-step trap of the previous instruction is pending */
    uint64_t pending = vmcs_get(cpu, GUEST_PENDING_DBG_EXCEPTIONS);
    if (pending & ~(DR6_B_MASK | PENDING_DBG_ENABLED_BP | DR6_BS | (1ull << 16)))
        return 0;
    if ((intr & 3) || activity == 1) {
        uint64_t debugctl = (vc->entry_ctl & ENTRY_LOAD_DEBUG_CONTROLS) ?
                            vmcs_get(cpu, GUEST_IA32_DEBUGCTL) : cpu->msr_debugctl;
        int single_step = (rflags & F_TF) && !(debugctl & 2);   /* TF without BTF */
        if (!!(pending & DR6_BS) != single_step)
            return 0;
    }
    if (vmcs_get(cpu, VMCS_LINK_POINTER) != ~0ull)
        return 0;
    return 1;
}

/* A VM-entry failure during or after the guest-state checks: like a VM exit, with the
 * entry-failure bit, and host state loaded (SDM 27.8). */
static int entry_failure(cpu_t *cpu, uint32_t reason, uint64_t qual)
{
    vmcs_set(cpu, VM_EXIT_REASON, reason | EXIT_REASON_FAILED_VMENTRY);
    vmcs_set(cpu, EXIT_QUALIFICATION, qual);
    vmcs_set(cpu, VM_ENTRY_INTR_INFO_FIELD,
             vmcs_get(cpu, VM_ENTRY_INTR_INFO_FIELD) & ~(uint64_t)INTR_INFO_VALID);
    cpu->exit_reason = reason | EXIT_REASON_FAILED_VMENTRY;
    load_host_state(cpu);
    return VMX_EXITED;
}

/* VM-entry MSR-load list: returns 0, or the 1-based index of the entry that failed. */
static uint32_t load_entry_msrs(cpu_t *cpu)
{
    uint32_t count = (uint32_t)vmcs_get(cpu, VM_ENTRY_MSR_LOAD_COUNT);
    uint64_t addr = vmcs_get(cpu, VM_ENTRY_MSR_LOAD_ADDR);
    for (uint32_t k = 0; k < count; k++) {
        uint8_t *p = hostmem_ptr(cpu->sil, addr + (uint64_t)k * 16);
        if (!p)
            return k + 1;
        uint32_t index, reserved;
        uint64_t value;
        memcpy(&index, p, 4);
        memcpy(&reserved, p + 4, 4);
        memcpy(&value, p + 8, 8);
        if (reserved || (index >> 8) == 0x8 || index == 0xc0000100 || index == 0xc0000101 ||
            msr_write(cpu, index, value) < 0)
            return k + 1;
    }
    return 0;
}

static int vm_enter(cpu_t *cpu, int launch)
{
    if (!cpu->vmx_on || cpu->current_vmcs == NO_VMCS)
        return VMX_FAIL_INVALID;
    uint32_t *state = vmcs_launch_state(cpu);
    if (launch && *state != LAUNCH_CLEAR) {
        vmcs_set(cpu, VM_INSTRUCTION_ERROR, VMXERR_VMLAUNCH_NONCLEAR);
        return VMX_FAIL_VALID;
    }
    if (!launch && *state != LAUNCH_LAUNCHED) {
        vmcs_set(cpu, VM_INSTRUCTION_ERROR, VMXERR_VMRESUME_NONLAUNCHED);
        return VMX_FAIL_VALID;
    }
    load_vmcs_controls(cpu);
    if (!controls_valid(cpu)) {
        vmcs_set(cpu, VM_INSTRUCTION_ERROR, VMXERR_ENTRY_INVALID_CONTROL);
        return VMX_FAIL_VALID;
    }
    if (!host_state_valid(cpu)) {
        vmcs_set(cpu, VM_INSTRUCTION_ERROR, VMXERR_ENTRY_INVALID_HOST);
        return VMX_FAIL_VALID;
    }
    if (!guest_state_valid(cpu))
        return entry_failure(cpu, EXIT_REASON_INVALID_STATE, 0);
    load_guest_state(cpu);
    uint32_t bad_msr = load_entry_msrs(cpu);
    if (bad_msr)
        return entry_failure(cpu, EXIT_REASON_MSR_LOAD_FAIL, bad_msr);
    if (launch)
        *state = LAUNCH_LAUNCHED;
    tlb_select_context(cpu);
    apicv_vm_entry(cpu);

    if (cpu->vc.pin & PIN_PREEMPTION_TIMER) {
        cpu->vc.preemption_deadline = host_tsc() +
            (vmcs_get(cpu, VMX_PREEMPTION_TIMER_VALUE) << PREEMPTION_TIMER_RATE);
        cpu->boundary_controls |= BOUNDARY_PREEMPTION_TIMER;
    }
    cpu->inject_info = (uint32_t)vmcs_get(cpu, VM_ENTRY_INTR_INFO_FIELD);
    cpu->inject_error = (uint32_t)vmcs_get(cpu, VM_ENTRY_EXCEPTION_ERROR_CODE);
    cpu->inject_len = (uint32_t)vmcs_get(cpu, VM_ENTRY_INSTRUCTION_LEN);
    cpu->in_guest = 1;
    cpu->delivering = 0;
    cpu->emul = NULL;
    cpu->mtf_pending = 0;
    if (setjmp(cpu->exit_jmp))
        return VMX_EXITED;
    cpu_run_guest(cpu);
    return VMX_EXITED;   /* not reached: the guest runs until it exits */
}

int vmx_vmlaunch(cpu_t *cpu) { return vm_enter(cpu, 1); }
int vmx_vmresume(cpu_t *cpu) { return vm_enter(cpu, 0); }
