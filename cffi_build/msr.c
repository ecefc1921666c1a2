/* Model-specific registers that the processor itself implements: what RDMSR/WRMSR
 * reach when the MSR bitmap lets the guest through, and what root mode reads. */
#include "core.h"
#include "vmx_caps.h"

enum {
    MSR_IA32_TSC = 0x10, MSR_IA32_APIC_BASE = 0x1b, MSR_IA32_FEATURE_CONTROL = 0x3a,
    MSR_IA32_TSC_ADJUST = 0x3b, MSR_MTRRCAP = 0xfe, MSR_IA32_SYSENTER_CS = 0x174,
    MSR_IA32_SYSENTER_ESP = 0x175, MSR_IA32_SYSENTER_EIP = 0x176, MSR_IA32_MISC_ENABLE = 0x1a0,
    MSR_IA32_DEBUGCTL = 0x1d9, MSR_MTRR_PHYS_FIRST = 0x200, MSR_MTRR_PHYS_LAST = 0x20f,
    MSR_MTRR_FIX64K = 0x250, MSR_MTRR_FIX16K_80000 = 0x258, MSR_MTRR_FIX16K_A0000 = 0x259,
    MSR_MTRR_FIX4K_FIRST = 0x268, MSR_MTRR_FIX4K_LAST = 0x26f, MSR_IA32_PAT = 0x277,
    MSR_MTRR_DEF_TYPE = 0x2ff,
    MSR_EFER = 0xc0000080, MSR_STAR = 0xc0000081, MSR_LSTAR = 0xc0000082, MSR_CSTAR = 0xc0000083,
    MSR_SYSCALL_MASK = 0xc0000084, MSR_FS_BASE = 0xc0000100, MSR_GS_BASE = 0xc0000101,
    MSR_KERNEL_GS_BASE = 0xc0000102, MSR_TSC_AUX = 0xc0000103,
};

/* MTRRs kept in one array: 16 variable-range MSRs, 11 fixed-range MSRs, the default type */
static int mtrr_slot(uint32_t idx)
{
    if (idx >= MSR_MTRR_PHYS_FIRST && idx <= MSR_MTRR_PHYS_LAST)
        return (int)(idx - MSR_MTRR_PHYS_FIRST);
    if (idx == MSR_MTRR_FIX64K) return 16;
    if (idx == MSR_MTRR_FIX16K_80000) return 17;
    if (idx == MSR_MTRR_FIX16K_A0000) return 18;
    if (idx >= MSR_MTRR_FIX4K_FIRST && idx <= MSR_MTRR_FIX4K_LAST)
        return 19 + (int)(idx - MSR_MTRR_FIX4K_FIRST);
    if (idx == MSR_MTRR_DEF_TYPE) return 27;
    return -1;
}

static int canonical(uint64_t v)
{
    return (uint64_t)(((int64_t)(v << 16)) >> 16) == v;
}

int msr_read(cpu_t *cpu, uint32_t idx, uint64_t *v)
{
    int slot = mtrr_slot(idx);
    if (slot >= 0) {
        *v = cpu->mtrr[slot];
        return 0;
    }
    switch (idx) {
    case MSR_IA32_TSC: *v = guest_tsc(cpu); return 0;
    case MSR_IA32_TSC_ADJUST: *v = cpu->tsc_adjust; return 0;
    case MSR_IA32_APIC_BASE: *v = cpu->msr_apic_base; return 0;
    case MSR_IA32_FEATURE_CONTROL: *v = cpu->msr_feature_control; return 0;
    case MSR_MTRRCAP: *v = 0x508; return 0;   /* 8 variable ranges, fixed ranges, WC */
    case MSR_IA32_SYSENTER_CS: *v = cpu->msr_sysenter_cs; return 0;
    case MSR_IA32_SYSENTER_ESP: *v = cpu->msr_sysenter_esp; return 0;
    case MSR_IA32_SYSENTER_EIP: *v = cpu->msr_sysenter_eip; return 0;
    case MSR_IA32_MISC_ENABLE: *v = cpu->msr_misc_enable; return 0;
    case MSR_IA32_DEBUGCTL: *v = cpu->msr_debugctl; return 0;
    case MSR_IA32_PAT: *v = cpu->msr_pat; return 0;
    case MSR_EFER: *v = cpu->efer; return 0;
    case MSR_STAR: *v = cpu->msr_star; return 0;
    case MSR_LSTAR: *v = cpu->msr_lstar; return 0;
    case MSR_CSTAR: *v = cpu->msr_cstar; return 0;
    case MSR_SYSCALL_MASK: *v = cpu->msr_sfmask; return 0;
    case MSR_FS_BASE: *v = cpu->seg[S_FS].base; return 0;
    case MSR_GS_BASE: *v = cpu->seg[S_GS].base; return 0;
    case MSR_KERNEL_GS_BASE: *v = cpu->msr_kernel_gs_base; return 0;
    case MSR_TSC_AUX: *v = cpu->msr_tsc_aux; return 0;
    }
    return vmx_capability_msr(idx, v);
}

int valid_pat(uint64_t v)
{
    for (int k = 0; k < 8; k++) {
        uint64_t t = (v >> (k * 8)) & 0xff;
        if (t == 2 || t == 3 || t > 7)
            return 0;
    }
    return 1;
}

int msr_write(cpu_t *cpu, uint32_t idx, uint64_t v)
{
    int slot = mtrr_slot(idx);
    if (slot >= 0) {
        cpu->mtrr[slot] = v;
        return 0;
    }
    switch (idx) {
    case MSR_IA32_TSC: cpu->tsc_adjust = v - host_tsc() -
                       ((cpu->in_guest && (cpu->vc.proc & CPU_USE_TSC_OFFSETTING)) ? cpu->vc.tsc_offset : 0);
        return 0;
    case MSR_IA32_TSC_ADJUST: cpu->tsc_adjust = v; return 0;
    case MSR_IA32_APIC_BASE: cpu->msr_apic_base = v; return 0;
    case MSR_IA32_FEATURE_CONTROL:
        if (cpu->msr_feature_control & 1)
            return -1;   /* locked */
        cpu->msr_feature_control = v;
        return 0;
    case MSR_IA32_SYSENTER_CS: cpu->msr_sysenter_cs = v & 0xffff; return 0;
    case MSR_IA32_SYSENTER_ESP: if (!canonical(v)) return -1; cpu->msr_sysenter_esp = v; return 0;
    case MSR_IA32_SYSENTER_EIP: if (!canonical(v)) return -1; cpu->msr_sysenter_eip = v; return 0;
    case MSR_IA32_MISC_ENABLE: cpu->msr_misc_enable = v; return 0;
    case MSR_IA32_DEBUGCTL: if (v & ~0x3ull) return -1; cpu->msr_debugctl = v; return 0;
    case MSR_IA32_PAT: if (!valid_pat(v)) return -1; cpu->msr_pat = v; return 0;
    case MSR_EFER: {
        if (v & ~(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE))
            return -1;
        if ((cpu->cr0 & CR0_PG) && ((v ^ cpu->efer) & EFER_LME))
            return -1;
        uint64_t lma = cpu->efer & EFER_LMA;
        cpu->efer = (v & ~EFER_LMA) | lma;
        tlb_flush_all(cpu, 0);
        cpu_update_mode(cpu);
        return 0;
    }
    case MSR_STAR: cpu->msr_star = v; return 0;
    case MSR_LSTAR: if (!canonical(v)) return -1; cpu->msr_lstar = v; return 0;
    case MSR_CSTAR: if (!canonical(v)) return -1; cpu->msr_cstar = v; return 0;
    case MSR_SYSCALL_MASK: cpu->msr_sfmask = v & 0xffffffffull; return 0;
    case MSR_FS_BASE:
    case MSR_GS_BASE:
        if (!canonical(v))
            return -1;
        cpu->seg[idx == MSR_FS_BASE ? S_FS : S_GS].base = v;
        cpu_update_segment_cache(cpu);
        return 0;
    case MSR_KERNEL_GS_BASE: if (!canonical(v)) return -1; cpu->msr_kernel_gs_base = v; return 0;
    case MSR_TSC_AUX: if (v >> 32) return -1; cpu->msr_tsc_aux = v; return 0;
    }
    return -1;
}

int cpu_rdmsr(cpu_t *cpu, uint32_t index, uint64_t *value)
{
    return msr_read(cpu, index, value);
}

int cpu_wrmsr(cpu_t *cpu, uint32_t index, uint64_t value)
{
    return msr_write(cpu, index, value);
}
