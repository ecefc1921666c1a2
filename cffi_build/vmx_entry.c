/* VMLAUNCH and VMRESUME (SDM Vol. 3 Chapter 27): the checks on controls, host state and
 * guest state, MSR loading, guest-state loading and event injection, then guest
 * execution until a VM exit. */
#include "apicv.h"
#include "vmx_caps.h"
#include "vmx_entry_checks.h"
#include "vmx_state.h"

enum { LAUNCH_CLEAR = 0, LAUNCH_LAUNCHED = 1 };
enum { EV_OTHER = 7 };            /* interruption type 7: a pending MTF VM exit */

static const struct {
    const char *name, *area, *rule;
    uint32_t qualification;
} entry_checks[ENTRY_CHECK_COUNT] = {
    { "NONE", "", "", 0 },
#define ENTRY_CHECK_ROW(id, area, qual, rule) { #id, #area, rule, qual },
    VMX_ENTRY_CHECKS(ENTRY_CHECK_ROW)
#undef ENTRY_CHECK_ROW
};

int vmx_entry_check_count(void) { return ENTRY_CHECK_COUNT - 1; }
const char *vmx_entry_check_name(int id) { return id > 0 && id < ENTRY_CHECK_COUNT ? entry_checks[id].name : NULL; }
const char *vmx_entry_check_area(int id) { return id > 0 && id < ENTRY_CHECK_COUNT ? entry_checks[id].area : NULL; }
const char *vmx_entry_check_rule(int id) { return id > 0 && id < ENTRY_CHECK_COUNT ? entry_checks[id].rule : NULL; }
uint32_t vmx_entry_check_qualification(int id) { return id > 0 && id < ENTRY_CHECK_COUNT ? entry_checks[id].qualification : 0; }
int vmx_failed_entry_check(cpu_t *cpu) { return cpu->failed_entry_check; }

/* Each check function returns 0, or the first rule (enum vmx_entry_check) broken. */
#define CHECK(ok, id) do { if (!(ok)) return ENTRY_CHECK_##id; } while (0)

static int allowed(uint32_t value, uint32_t must_be_one, uint32_t may_be_one)
{
    return (value & must_be_one) == must_be_one && (value & ~may_be_one) == 0;
}

static int canonical(uint64_t v)
{
    return (uint64_t)(((int64_t)(v << 16)) >> 16) == v;
}

static int aligned_in_width(uint64_t a, uint64_t align)
{
    return !(a & (align - 1)) && !(a & PHYS_ADDR_RSVD);
}

/* An MSR area of `count` 16-byte entries (checked only when the count is not 0). */
static int msr_area_valid(cpu_t *cpu, uint32_t count_field, uint32_t addr_field)
{
    uint64_t count = vmcs_get(cpu, count_field) & 0xffffffffu, addr = vmcs_get(cpu, addr_field);
    return count == 0 || (aligned_in_width(addr, 16) && !((addr + count * 16 - 1) & PHYS_ADDR_RSVD));
}

static int wants_error_code(uint32_t vector)
{
    return vector == EXC_DF || (vector >= EXC_TS && vector <= EXC_PF) || vector == EXC_AC;
}

static int soft_event(uint32_t type)
{
    return type == EV_SW_INT || type == EV_PRIV_SW_EXC || type == EV_SW_EXC;
}

/* SDM "VM-Execution Control Fields": the controls for APIC virtualization. */
static int apic_virtualization_check(cpu_t *cpu)
{
    vmcs_cache_t *vc = &cpu->vc;
    if (vc->proc & CPU_TPR_SHADOW) {
        CHECK(aligned_in_width(vc->virtual_apic_addr, PAGE_SIZE), CTL_VIRTUAL_APIC_ADDR);
        if (!(vc->proc2 & SEC_VIRTUAL_INTR_DELIVERY)) {
            CHECK(!(vc->tpr_threshold >> 4), CTL_TPR_THRESHOLD_RESERVED);
            if (!(vc->proc2 & SEC_VIRTUALIZE_APIC_ACCESSES))
                CHECK((vc->tpr_threshold & 0xf) <= ((vapic_read32(cpu, VAPIC_TPR) >> 4) & 0xf),
                      CTL_TPR_THRESHOLD_VTPR);
        }
    } else {
        CHECK(!(vc->proc2 & (SEC_VIRTUALIZE_X2APIC | SEC_APIC_REGISTER_VIRT | SEC_VIRTUAL_INTR_DELIVERY)),
              CTL_APICV_NEEDS_TPR_SHADOW);
    }
    CHECK(!((vc->proc2 & SEC_VIRTUALIZE_X2APIC) && (vc->proc2 & SEC_VIRTUALIZE_APIC_ACCESSES)),
          CTL_X2APIC_AND_APIC_ACCESSES);
    CHECK(!(vc->proc2 & SEC_VIRTUAL_INTR_DELIVERY) || (vc->pin & PIN_EXT_INTR_EXITING),
          CTL_VID_NEEDS_EXT_INTR_EXITING);
    CHECK(!(vc->proc2 & SEC_VIRTUALIZE_APIC_ACCESSES) || aligned_in_width(vc->apic_access_addr, PAGE_SIZE),
          CTL_APIC_ACCESS_ADDR);
    if (vc->pin & PIN_POSTED_INTERRUPTS) {
        CHECK(vc->proc2 & SEC_VIRTUAL_INTR_DELIVERY, CTL_POSTED_NEEDS_VID);
        CHECK(vc->exit_ctl & EXIT_ACK_INTR_ON_EXIT, CTL_POSTED_NEEDS_ACK);
        CHECK(!(vc->posted_intr_nv >> 8), CTL_POSTED_VECTOR);
        CHECK(aligned_in_width(vc->posted_intr_desc, 64), CTL_POSTED_DESCRIPTOR);
    }
    return 0;
}

/* SDM "VM-Entry Control Fields": event injection. */
static int injection_check(cpu_t *cpu)
{
    uint32_t info = (uint32_t)vmcs_get(cpu, VM_ENTRY_INTR_INFO_FIELD);
    if (!(info & INTR_INFO_VALID))
        return 0;
    uint32_t type = (info >> 8) & 7, vector = info & 0xff;
    CHECK(type != 1, CTL_INJECT_TYPE);   /* 7 exists: the silicon has the monitor trap flag */
    CHECK(type != EV_NMI || vector == 2, CTL_INJECT_NMI_VECTOR);
    CHECK(type != EV_HW_EXC || vector <= 31, CTL_INJECT_EXCEPTION_VECTOR);
    CHECK(type != EV_OTHER || vector == 0, CTL_INJECT_OTHER_EVENT_VECTOR);
    int protected_mode = !(cpu->vc.proc2 & SEC_UNRESTRICTED_GUEST) || (vmcs_get(cpu, GUEST_CR0) & CR0_PE);
    int code = type == EV_HW_EXC && protected_mode && wants_error_code(vector);
    CHECK(!!(info & INTR_INFO_DELIVER_CODE) == code, CTL_INJECT_ERROR_CODE);
    CHECK(!(info & 0x7ffff000u), CTL_INJECT_RESERVED);
    CHECK(!code || !(vmcs_get(cpu, VM_ENTRY_EXCEPTION_ERROR_CODE) >> 16), CTL_INJECT_ERROR_CODE_RESERVED);
    if (soft_event(type)) {
        uint64_t len = vmcs_get(cpu, VM_ENTRY_INSTRUCTION_LEN);   /* 0 only with IA32_VMX_MISC[30] */
        CHECK(len >= 1 && len <= 15, CTL_INJECT_INSTRUCTION_LENGTH);
    }
    return 0;
}

/* SDM "Checks on VMX Controls". */
static int controls_check(cpu_t *cpu)
{
    vmcs_cache_t *vc = &cpu->vc;
    CHECK(allowed(vc->pin, PIN_DEFAULT1, PIN_ALLOWED1), CTL_PIN_RESERVED);
    CHECK(allowed(vc->proc, PROC_TRUE_DEFAULT1, PROC_ALLOWED1), CTL_PROC_RESERVED);
    CHECK(allowed(vc->proc2, 0, PROC2_ALLOWED1), CTL_PROC2_RESERVED);   /* 0 when not activated */
    CHECK(allowed(vc->exit_ctl, EXIT_TRUE_DEFAULT1, EXIT_ALLOWED1), CTL_EXIT_RESERVED);
    CHECK(allowed(vc->entry_ctl, ENTRY_TRUE_DEFAULT1, ENTRY_ALLOWED1), CTL_ENTRY_RESERVED);
    CHECK(vc->cr3_target_count <= 4, CTL_CR3_TARGET_COUNT);
    CHECK(!(vc->proc & CPU_USE_IO_BITMAPS) ||
          (aligned_in_width(vc->io_bitmap_a, PAGE_SIZE) && aligned_in_width(vc->io_bitmap_b, PAGE_SIZE)),
          CTL_IO_BITMAP_ADDR);
    CHECK(!(vc->proc & CPU_USE_MSR_BITMAPS) || aligned_in_width(vc->msr_bitmap, PAGE_SIZE), CTL_MSR_BITMAP_ADDR);
    int broken = apic_virtualization_check(cpu);
    if (broken)
        return broken;
    CHECK(!(vc->pin & PIN_VIRTUAL_NMIS) || (vc->pin & PIN_NMI_EXITING), CTL_VIRTUAL_NMIS_NEED_NMI_EXITING);
    CHECK(!(vc->proc & CPU_NMI_WINDOW_EXITING) || (vc->pin & PIN_VIRTUAL_NMIS), CTL_NMI_WINDOW_NEEDS_VIRTUAL_NMIS);
    CHECK(!(vc->proc2 & SEC_ENABLE_VPID) || vc->vpid != 0, CTL_VPID_ZERO);
    if (vc->proc2 & SEC_ENABLE_EPT) {
        uint64_t memtype = vc->eptp & 7;
        CHECK(memtype == 0 || memtype == 6, CTL_EPTP_MEMORY_TYPE);
        CHECK(((vc->eptp >> 3) & 7) == 3, CTL_EPTP_WALK_LENGTH);
        CHECK(!(vc->eptp & (0xf80 | PHYS_ADDR_RSVD)), CTL_EPTP_RESERVED);
    }
    CHECK(!(vc->proc2 & SEC_UNRESTRICTED_GUEST) || (vc->proc2 & SEC_ENABLE_EPT), CTL_UNRESTRICTED_NEEDS_EPT);
    CHECK(!(vc->exit_ctl & EXIT_SAVE_PREEMPTION_TIMER) || (vc->pin & PIN_PREEMPTION_TIMER),
          CTL_SAVE_TIMER_NEEDS_TIMER);
    CHECK(msr_area_valid(cpu, VM_EXIT_MSR_STORE_COUNT, VM_EXIT_MSR_STORE_ADDR), CTL_EXIT_MSR_STORE_ADDR);
    CHECK(msr_area_valid(cpu, VM_EXIT_MSR_LOAD_COUNT, VM_EXIT_MSR_LOAD_ADDR), CTL_EXIT_MSR_LOAD_ADDR);
    CHECK(msr_area_valid(cpu, VM_ENTRY_MSR_LOAD_COUNT, VM_ENTRY_MSR_LOAD_ADDR), CTL_ENTRY_MSR_LOAD_ADDR);
    return injection_check(cpu);
}

/* SDM "Checks on Host Control Registers, MSRs and SSP", "... Segment and Descriptor-Table
 * Registers", "Checks Related to Address-Space Size".  Root mode here is 64-bit. */
static int host_state_check(cpu_t *cpu)
{
    uint32_t exit_ctl = cpu->vc.exit_ctl;
    uint64_t cr0 = vmcs_get(cpu, HOST_CR0), cr4 = vmcs_get(cpu, HOST_CR4);
    CHECK((cr0 & CR0_FIXED0) == CR0_FIXED0 && !(cr0 & ~CR0_FIXED1), HOST_CR0_FIXED);
    CHECK((cr4 & CR4_FIXED0) == CR4_FIXED0 && !(cr4 & ~CR4_FIXED1), HOST_CR4_FIXED);
    CHECK(!(vmcs_get(cpu, HOST_CR3) & PHYS_ADDR_RSVD), HOST_CR3_WIDTH);
    CHECK(!(exit_ctl & EXIT_LOAD_IA32_PAT) || valid_pat(vmcs_get(cpu, HOST_IA32_PAT)), HOST_PAT);
    if (exit_ctl & EXIT_LOAD_IA32_EFER) {
        uint64_t efer = vmcs_get(cpu, HOST_IA32_EFER);
        int wide = (exit_ctl & EXIT_HOST_ADDR_SPACE_SIZE) != 0;
        CHECK(!(efer & ~(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE)), HOST_EFER_RESERVED);
        CHECK(!!(efer & EFER_LMA) == wide && !!(efer & EFER_LME) == wide, HOST_EFER_LMA_LME);
    }
    static const uint32_t sels[] = { HOST_ES_SELECTOR, HOST_CS_SELECTOR, HOST_SS_SELECTOR,
        HOST_DS_SELECTOR, HOST_FS_SELECTOR, HOST_GS_SELECTOR, HOST_TR_SELECTOR };
    for (unsigned k = 0; k < sizeof(sels) / sizeof(sels[0]); k++)
        CHECK(!(vmcs_get(cpu, sels[k]) & 7), HOST_SELECTOR_RPL_TI);
    CHECK(vmcs_get(cpu, HOST_CS_SELECTOR) != 0, HOST_CS_SELECTOR);
    CHECK(vmcs_get(cpu, HOST_TR_SELECTOR) != 0, HOST_TR_SELECTOR);
    CHECK(exit_ctl & EXIT_HOST_ADDR_SPACE_SIZE, HOST_ADDRESS_SPACE_SIZE);
    CHECK(cr4 & CR4_PAE, HOST_CR4_PAE);
    static const uint32_t bases[] = { HOST_FS_BASE, HOST_GS_BASE, HOST_TR_BASE, HOST_GDTR_BASE,
        HOST_IDTR_BASE, HOST_IA32_SYSENTER_ESP, HOST_IA32_SYSENTER_EIP, HOST_RIP };
    for (unsigned k = 0; k < sizeof(bases) / sizeof(bases[0]); k++)
        CHECK(canonical(vmcs_get(cpu, bases[k])), HOST_CANONICAL);
    return 0;
}

/* The state of the guest-state area the checks look at. */
typedef struct {
    int unrestricted, ia32e, v86;
    uint64_t cr0, cr4, rflags;
    uint32_t inject, inject_type, inject_vector;
    seg_t s[8];
    uint32_t raw_ar[8];
} guest_view_t;

#define USABLE(ar) (!((ar) & AR_UNUSABLE))

/* SDM "Checks on Guest Control Registers, Debug Registers, and MSRs". */
static int guest_registers_check(cpu_t *cpu, const guest_view_t *g)
{
    uint32_t entry_ctl = cpu->vc.entry_ctl;
    uint64_t fixed0 = CR0_FIXED0 & ~(g->unrestricted ? (CR0_PE | CR0_PG) : 0);
    CHECK((g->cr0 & fixed0) == fixed0 && !(g->cr0 & ~CR0_FIXED1), GUEST_CR0_FIXED);
    CHECK(!(g->cr0 & CR0_PG) || (g->cr0 & CR0_PE), GUEST_CR0_PG_PE);
    CHECK((g->cr4 & CR4_FIXED0) == CR4_FIXED0 && !(g->cr4 & ~CR4_FIXED1), GUEST_CR4_FIXED);
    if (entry_ctl & ENTRY_LOAD_DEBUG_CONTROLS) {
        CHECK(!(vmcs_get(cpu, GUEST_IA32_DEBUGCTL) & ~0x3ull), GUEST_DEBUGCTL);   /* LBR, BTF */
        CHECK(!(vmcs_get(cpu, GUEST_DR7) >> 32), GUEST_DR7_HIGH);
    }
    CHECK(!g->ia32e || ((g->cr0 & CR0_PG) && (g->cr4 & CR4_PAE)), GUEST_IA32E_PAGING);
    CHECK(g->ia32e || !(g->cr4 & CR4_PCIDE), GUEST_PCIDE);
    CHECK(!(vmcs_get(cpu, GUEST_CR3) & PHYS_ADDR_RSVD), GUEST_CR3_WIDTH);
    CHECK(canonical(vmcs_get(cpu, GUEST_SYSENTER_ESP)) && canonical(vmcs_get(cpu, GUEST_SYSENTER_EIP)),
          GUEST_SYSENTER_CANONICAL);
    CHECK(!(entry_ctl & ENTRY_LOAD_IA32_PAT) || valid_pat(vmcs_get(cpu, GUEST_IA32_PAT)), GUEST_PAT);
    if (entry_ctl & ENTRY_LOAD_IA32_EFER) {
        uint64_t efer = vmcs_get(cpu, GUEST_IA32_EFER);
        CHECK(!(efer & ~(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE)), GUEST_EFER_RESERVED);
        CHECK(!!(efer & EFER_LMA) == g->ia32e, GUEST_EFER_LMA);
        CHECK(!(g->cr0 & CR0_PG) || !!(efer & EFER_LME) == g->ia32e, GUEST_EFER_LME);
    }
    return 0;
}

/* The access rights of CS, SS, DS, ES, FS and GS outside virtual-8086 mode. */
static int guest_code_data_check(const guest_view_t *g)
{
    const seg_t *s = g->s;
    uint32_t cs = s[S_CS].ar, ss = s[S_SS].ar, cs_type = AR_TYPE(cs);
    CHECK(cs_type == 9 || cs_type == 11 || cs_type == 13 || cs_type == 15 || (g->unrestricted && cs_type == 3),
          GUEST_CS_TYPE);
    CHECK(!USABLE(ss) || AR_TYPE(ss) == 3 || AR_TYPE(ss) == 7, GUEST_SS_TYPE);
    static const int data[] = { S_DS, S_ES, S_FS, S_GS };
    for (unsigned k = 0; k < 4; k++) {
        uint32_t ar = s[data[k]].ar;
        CHECK(!USABLE(ar) || ((ar & 1) && (!(ar & 8) || (ar & 2))), GUEST_DATA_TYPE);
    }
    CHECK(cs & AR_S, GUEST_S_BIT);
    for (int k = S_ES; k <= S_GS; k++)
        CHECK(k == S_CS || !USABLE(s[k].ar) || (s[k].ar & AR_S), GUEST_S_BIT);
    if (cs_type == 3)
        CHECK(AR_DPL(cs) == 0, GUEST_CS_DPL);
    else if (cs_type == 9 || cs_type == 11)
        CHECK(AR_DPL(cs) == AR_DPL(ss), GUEST_CS_DPL);
    else
        CHECK(AR_DPL(cs) <= AR_DPL(ss), GUEST_CS_DPL);
    CHECK(g->unrestricted || AR_DPL(ss) == (s[S_SS].sel & 3u), GUEST_SS_DPL);
    CHECK(!(cs_type == 3 || !(g->cr0 & CR0_PE)) || AR_DPL(ss) == 0, GUEST_SS_DPL);
    for (unsigned k = 0; k < 4 && !g->unrestricted; k++) {
        const seg_t *d = &s[data[k]];
        CHECK(!USABLE(d->ar) || AR_TYPE(d->ar) > 11 || AR_DPL(d->ar) >= (d->sel & 3u), GUEST_DATA_DPL);
    }
    for (int k = S_ES; k <= S_GS; k++)
        CHECK((k != S_CS && !USABLE(s[k].ar)) || (s[k].ar & AR_P), GUEST_PRESENT);
    CHECK(!(g->ia32e && (cs & AR_L) && (cs & AR_DB)), GUEST_CS_L_DB);
    return 0;
}

/* SDM "Checks on Guest Segment Registers". */
static int guest_segments_check(const guest_view_t *g)
{
    const seg_t *s = g->s;
    CHECK(!(s[S_TR].sel & 4), GUEST_TR_TI);
    CHECK(!USABLE(s[S_LDTR].ar) || !(s[S_LDTR].sel & 4), GUEST_LDTR_TI);
    CHECK(g->v86 || g->unrestricted || (s[S_SS].sel & 3) == (s[S_CS].sel & 3), GUEST_SS_RPL);
    if (g->v86) {
        for (int k = S_ES; k <= S_GS; k++)
            CHECK(s[k].base == (uint64_t)s[k].sel << 4, GUEST_V86_BASE);
        for (int k = S_ES; k <= S_GS; k++)
            CHECK(s[k].limit == 0xffff, GUEST_V86_LIMIT);
        for (int k = S_ES; k <= S_GS; k++)
            CHECK(g->raw_ar[k] == 0xf3, GUEST_V86_AR);
    }
    CHECK(canonical(s[S_FS].base) && canonical(s[S_GS].base) && canonical(s[S_TR].base) &&
          (!USABLE(s[S_LDTR].ar) || canonical(s[S_LDTR].base)), GUEST_BASE_CANONICAL);
    CHECK(!(s[S_CS].base >> 32), GUEST_BASE_HIGH);
    static const int low[] = { S_SS, S_DS, S_ES };
    for (unsigned k = 0; k < 3; k++)
        CHECK(!USABLE(s[low[k]].ar) || !(s[low[k]].base >> 32), GUEST_BASE_HIGH);
    if (!g->v86) {
        int broken = guest_code_data_check(g);
        if (broken)
            return broken;
    }
    for (int k = 0; k < 8; k++) {
        if (!USABLE(g->raw_ar[k]) || g->v86)
            continue;
        CHECK(!(g->raw_ar[k] & 0xfffe0f00u), GUEST_AR_RESERVED);
        CHECK(!((s[k].limit >> 20) && !(s[k].ar & AR_G)) && !((s[k].limit & 0xfff) != 0xfff && (s[k].ar & AR_G)),
              GUEST_LIMIT_G);
    }
    uint32_t tr = s[S_TR].ar, ldtr = s[S_LDTR].ar;
    CHECK(USABLE(tr) && !(tr & AR_S) && (tr & AR_P) && (AR_TYPE(tr) == 11 || (!g->ia32e && AR_TYPE(tr) == 3)),
          GUEST_TR_AR);
    CHECK(!USABLE(ldtr) || (!(ldtr & AR_S) && (ldtr & AR_P) && AR_TYPE(ldtr) == 2), GUEST_LDTR_AR);
    return 0;
}

/* An event the activity state admits (SDM "Checks on Guest Non-Register State"). */
static int injection_admitted(const guest_view_t *g, uint32_t activity)
{
    uint32_t type = g->inject_type, vector = g->inject_vector;
    if (activity == 1)
        return type == EV_EXT_INT || type == EV_NMI || type == EV_OTHER ||
               (type == EV_HW_EXC && (vector == EXC_DB || vector == EXC_MC));
    if (activity == 2)
        return type == EV_NMI || (type == EV_HW_EXC && vector == EXC_MC);
    return activity == 0;
}

/* SDM "Checks on Guest Descriptor-Table Registers", "... RIP and RFLAGS", "... Non-Register
 * State" and "... PDPTEs". */
static int guest_other_check(cpu_t *cpu, const guest_view_t *g)
{
    CHECK(canonical(vmcs_get(cpu, GUEST_GDTR_BASE)) && canonical(vmcs_get(cpu, GUEST_IDTR_BASE)), GUEST_DTR_BASE);
    CHECK(!(vmcs_get(cpu, GUEST_GDTR_LIMIT) >> 16) && !(vmcs_get(cpu, GUEST_IDTR_LIMIT) >> 16), GUEST_DTR_LIMIT);
    uint64_t rip = vmcs_get(cpu, GUEST_RIP);
    CHECK(g->ia32e && (g->s[S_CS].ar & AR_L) ? canonical(rip) : !(rip >> 32), GUEST_RIP);
    CHECK(!(g->rflags & 0xffffffffffc08028ull) && (g->rflags & 2), GUEST_RFLAGS_RESERVED);
    CHECK(!(g->rflags & F_VM) || (!g->ia32e && (g->cr0 & CR0_PE)), GUEST_RFLAGS_VM);
    int inject_ext = g->inject && g->inject_type == EV_EXT_INT, inject_nmi = g->inject && g->inject_type == EV_NMI;
    CHECK(!inject_ext || (g->rflags & F_IF), GUEST_RFLAGS_IF);
    uint32_t activity = (uint32_t)vmcs_get(cpu, GUEST_ACTIVITY_STATE);
    uint32_t intr = (uint32_t)vmcs_get(cpu, GUEST_INTERRUPTIBILITY_INFO);
    CHECK(activity <= 3, GUEST_ACTIVITY_STATE);
    CHECK(activity != 1 || AR_DPL(g->s[S_SS].ar) == 0, GUEST_HLT_DPL);
    CHECK(activity == 0 || !(intr & 3), GUEST_ACTIVITY_SHADOW);
    CHECK(!g->inject || injection_admitted(g, activity), GUEST_ACTIVITY_INJECTION);
    CHECK(!(intr & ~0xfu), GUEST_INTR_RESERVED);
    CHECK((intr & 3) != 3, GUEST_INTR_STI_MOV_SS);
    CHECK(!(intr & 1) || (g->rflags & F_IF), GUEST_INTR_STI_IF);
    CHECK(!inject_ext || !(intr & 3), GUEST_INTR_EXT_INJECTION);
    CHECK(!inject_nmi || !(intr & 2), GUEST_INTR_NMI_MOV_SS);
    CHECK(!(intr & 4), GUEST_INTR_SMI);
    CHECK(!inject_nmi || !(cpu->vc.pin & PIN_VIRTUAL_NMIS) || !(intr & 8), GUEST_INTR_VIRTUAL_NMI);
    /* pending debug exceptions: B3-B0, enabled breakpoint and BS (no RTM); in a shadow or
     * HLT, BS says whether the single-step trap of the previous instruction is pending */
    uint64_t pending = vmcs_get(cpu, GUEST_PENDING_DBG_EXCEPTIONS);
    CHECK(!(pending & ~(DR6_B_MASK | PENDING_DBG_ENABLED_BP | DR6_BS)), GUEST_PENDING_DBG_RESERVED);
    if ((intr & 3) || activity == 1) {
        uint64_t debugctl = (cpu->vc.entry_ctl & ENTRY_LOAD_DEBUG_CONTROLS) ?
                            vmcs_get(cpu, GUEST_IA32_DEBUGCTL) : cpu->msr_debugctl;
        int single_step = (g->rflags & F_TF) && !(debugctl & 2);   /* TF without BTF */
        CHECK(!!(pending & DR6_BS) == single_step, GUEST_PENDING_DBG_BS);
    }
    int pae_paging = (g->cr0 & CR0_PG) && (g->cr4 & CR4_PAE) && !g->ia32e;
    if (pae_paging && (cpu->vc.proc2 & SEC_ENABLE_EPT)) {
        for (uint32_t k = 0; k < 4; k++) {
            uint64_t e = vmcs_get(cpu, GUEST_PDPTR0 + 2 * k);
            CHECK(!(e & 1) || !(e & (PHYS_ADDR_RSVD | 0x1e6ull)), GUEST_PDPTE);
        }
    }
    CHECK(!inject_nmi || !(intr & 1), GUEST_INTR_STI_NMI);
    uint64_t link = vmcs_get(cpu, VMCS_LINK_POINTER);
    if (link != ~0ull) {
        /* a shadow VMCS (bit 31) would need VMCS shadowing, which the silicon lacks */
        uint8_t *header = aligned_in_width(link, PAGE_SIZE) ? hostmem_ptr(cpu->sil, link) : NULL;
        uint32_t revision = 0;
        if (header)
            memcpy(&revision, header, 4);
        CHECK(header && revision == VMCS_REVISION_ID, GUEST_VMCS_LINK);
    }
    return 0;
}

/* SDM "Checks on the Guest State Area". */
static int guest_state_check(cpu_t *cpu)
{
    guest_view_t g;
    g.unrestricted = (cpu->vc.proc2 & SEC_UNRESTRICTED_GUEST) != 0;
    g.ia32e = (cpu->vc.entry_ctl & ENTRY_IA32E_MODE) != 0;
    g.cr0 = vmcs_get(cpu, GUEST_CR0);
    g.cr4 = vmcs_get(cpu, GUEST_CR4);
    g.rflags = vmcs_get(cpu, GUEST_RFLAGS);
    g.v86 = (g.rflags & F_VM) != 0;
    g.inject = (uint32_t)vmcs_get(cpu, VM_ENTRY_INTR_INFO_FIELD) & INTR_INFO_VALID;
    g.inject_type = ((uint32_t)vmcs_get(cpu, VM_ENTRY_INTR_INFO_FIELD) >> 8) & 7;
    g.inject_vector = (uint32_t)vmcs_get(cpu, VM_ENTRY_INTR_INFO_FIELD) & 0xff;
    for (int k = 0; k < 8; k++) {
        guest_segment_from_vmcs(cpu, k, &g.s[k]);
        g.raw_ar[k] = (uint32_t)vmcs_get(cpu, GUEST_ES_AR_BYTES + 2 * (uint32_t)k);
    }
    int broken = guest_registers_check(cpu, &g);
    if (!broken)
        broken = guest_segments_check(&g);
    if (!broken)
        broken = guest_other_check(cpu, &g);
    return broken;
}

/* PAE paging without EPT: VM entry loads the PDPTEs from the guest's CR3 (a physical
 * address, there being no EPT). */
static int load_guest_pdptes(cpu_t *cpu)
{
    uint64_t base = cpu->cr3 & 0xffffffe0ull, e[4];
    for (int k = 0; k < 4; k++) {
        uint8_t *p = hostmem_ptr(cpu->sil, base + 8 * (uint64_t)k);
        if (!p)
            return ENTRY_CHECK_GUEST_PDPTE_LOAD;
        memcpy(&e[k], p, 8);
        CHECK(!(e[k] & 1) || !(e[k] & (PHYS_ADDR_RSVD | 0x1e6ull)), GUEST_PDPTE_LOAD);
    }
    memcpy(cpu->pdpte, e, sizeof(e));
    return 0;
}

/* A VM-entry failure during or after the guest-state checks: like a VM exit, with the
 * entry-failure bit and the rule's exit qualification (the failing entry's number for
 * MSR loading), and host state loaded (SDM "VM-Entry Failures During or After Loading
 * Guest State"). */
static int entry_failure(cpu_t *cpu, uint32_t reason, int check, uint64_t qual)
{
    cpu->failed_entry_check = check;
    vmcs_set(cpu, VM_EXIT_REASON, reason | EXIT_REASON_FAILED_VMENTRY);
    vmcs_set(cpu, EXIT_QUALIFICATION, qual);
    vmcs_set(cpu, VM_ENTRY_INTR_INFO_FIELD,
             vmcs_get(cpu, VM_ENTRY_INTR_INFO_FIELD) & ~(uint64_t)INTR_INFO_VALID);
    cpu->exit_reason = reason | EXIT_REASON_FAILED_VMENTRY;
    load_host_state(cpu);
    return VMX_EXITED;
}

static int vm_fail_valid(cpu_t *cpu, uint32_t error, int check)
{
    cpu->failed_entry_check = check;
    vmcs_set(cpu, VM_INSTRUCTION_ERROR, error);
    return VMX_FAIL_VALID;
}

/* VM-entry MSR-load list: 0, or the rule the entry numbered *failed (from 1) broke. */
static int load_entry_msrs(cpu_t *cpu, uint32_t *failed)
{
    uint32_t count = (uint32_t)vmcs_get(cpu, VM_ENTRY_MSR_LOAD_COUNT);
    uint64_t addr = vmcs_get(cpu, VM_ENTRY_MSR_LOAD_ADDR);
    for (uint32_t k = 0; k < count; k++) {
        *failed = k + 1;
        uint8_t *p = hostmem_ptr(cpu->sil, addr + (uint64_t)k * 16);
        CHECK(p, MSR_LOAD_UNREADABLE);
        uint32_t index, reserved;
        uint64_t value;
        memcpy(&index, p, 4);
        memcpy(&reserved, p + 4, 4);
        memcpy(&value, p + 8, 8);
        CHECK(!reserved, MSR_LOAD_RESERVED);
        CHECK((index >> 8) != 0x8 && index != 0xc0000100 && index != 0xc0000101, MSR_LOAD_INDEX);
        CHECK(msr_write(cpu, index, value) == 0, MSR_LOAD_VALUE);
    }
    return 0;
}

static int vm_enter(cpu_t *cpu, int launch)
{
    if (!cpu->vmx_on || cpu->current_vmcs == NO_VMCS)
        return VMX_FAIL_INVALID;
    cpu->failed_entry_check = ENTRY_CHECK_NONE;
    uint32_t *state = vmcs_launch_state(cpu);
    if (launch && *state != LAUNCH_CLEAR)
        return vm_fail_valid(cpu, VMXERR_VMLAUNCH_NONCLEAR, ENTRY_CHECK_NONE);
    if (!launch && *state != LAUNCH_LAUNCHED)
        return vm_fail_valid(cpu, VMXERR_VMRESUME_NONLAUNCHED, ENTRY_CHECK_NONE);
    load_vmcs_controls(cpu);
    int broken = controls_check(cpu);
    if (broken)
        return vm_fail_valid(cpu, VMXERR_ENTRY_INVALID_CONTROL, broken);
    broken = host_state_check(cpu);
    if (broken)
        return vm_fail_valid(cpu, VMXERR_ENTRY_INVALID_HOST, broken);
    broken = guest_state_check(cpu);
    if (broken)
        return entry_failure(cpu, EXIT_REASON_INVALID_STATE, broken, entry_checks[broken].qualification);
    load_guest_state(cpu);
    if ((cpu->cr0 & CR0_PG) && (cpu->cr4 & CR4_PAE) && !(cpu->vc.entry_ctl & ENTRY_IA32E_MODE) &&
        !(cpu->vc.proc2 & SEC_ENABLE_EPT)) {
        broken = load_guest_pdptes(cpu);
        if (broken)
            return entry_failure(cpu, EXIT_REASON_INVALID_STATE, broken, entry_checks[broken].qualification);
    }
    uint32_t bad_msr = 0;
    broken = load_entry_msrs(cpu, &bad_msr);
    if (broken)
        return entry_failure(cpu, EXIT_REASON_MSR_LOAD_FAIL, broken, bad_msr);
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
    if ((cpu->inject_info & INTR_INFO_VALID) && ((cpu->inject_info >> 8) & 7) == EV_OTHER) {
        /* "other event": an MTF VM exit pending before the first guest instruction,
         * whatever the monitor trap flag control says */
        cpu->inject_info = 0;
        pend_mtf_exit(cpu);
    }
    if (setjmp(cpu->exit_jmp))
        return VMX_EXITED;
    cpu_run_guest(cpu);
    return VMX_EXITED;   /* not reached: the guest runs until it exits */
}

int vmx_vmlaunch(cpu_t *cpu) { return vm_enter(cpu, 1); }
int vmx_vmresume(cpu_t *cpu) { return vm_enter(cpu, 0); }
