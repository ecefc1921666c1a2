/* The CPUID exit: the guest sees the table kvm/ set with KVM_SET_CPUID2, looked up by
 * Intel's rules (SDM Vol. 2 CPUID: a leaf beyond the basic maximum reads as the top
 * basic leaf), with the fields that follow the vCPU's state filled in (APIC ID,
 * OSXSAVE, the APIC bit that follows IA32_APIC_BASE's enable bit). */
#include <stdlib.h>
#include "root.h"

#define KVM_CPUID_FLAG_SIGNIFCANT_INDEX 1u
#define HYPERVISOR_LEAVES 0x40000000u
#define LEAF1_ECX_OSXSAVE (1u << 27)
#define LEAF1_EDX_APIC (1u << 9)

void root_vcpu_set_apic_enabled(root_vcpu_t *v, int enabled)
{
    v->apic_disabled = !enabled;
}

int root_vcpu_set_cpuid(root_vcpu_t *v, const struct kvm_cpuid_entry2 *entries, int n)
{
    struct kvm_cpuid_entry2 *copy = NULL;
    if (n > 0) {
        copy = malloc((size_t)n * sizeof(*copy));
        if (!copy)
            return -1;
        memcpy(copy, entries, (size_t)n * sizeof(*copy));
    }
    uint32_t max_basic = 0;
    for (int k = 0; k < n; k++)
        if (copy[k].function < HYPERVISOR_LEAVES && copy[k].function > max_basic)
            max_basic = copy[k].function;
    free(v->cpuid);
    v->cpuid = copy;
    v->ncpuid = n;
    v->cpuid_max_basic = max_basic;
    return 0;
}

/* The entry for (function, index) (the last one set wins), else the function's entry
 * for index 0; NULL and *beyond for a missing sub-leaf of a leaf whose index counts. */
static const struct kvm_cpuid_entry2 *find(const root_vcpu_t *v, uint32_t function, uint32_t index, int *beyond)
{
    const struct kvm_cpuid_entry2 *exact = NULL, *leaf0 = NULL;
    *beyond = 0;
    for (int k = 0; k < v->ncpuid; k++) {
        const struct kvm_cpuid_entry2 *e = &v->cpuid[k];
        if (e->function != function)
            continue;
        uint32_t key = (e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ? e->index : 0;
        if (key == index)
            exact = e;
        if (key == 0)
            leaf0 = e;
    }
    if (exact)
        return exact;
    if (leaf0 && (leaf0->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX)) {
        *beyond = 1;             /* a sub-leaf beyond those that exist: all zero */
        return NULL;
    }
    return leaf0;
}

void root_handle_cpuid(root_vcpu_t *v)
{
    cpu_t *cpu = v->cpu;
    uint64_t gprs[16];
    cpu_get_gprs(cpu, gprs);
    uint32_t function = (uint32_t)gprs[R_AX], index = (uint32_t)gprs[R_CX];
    int beyond;
    const struct kvm_cpuid_entry2 *e = find(v, function, index, &beyond);
    if (!e && !beyond && v->cpuid_max_basic < function && function < HYPERVISOR_LEAVES)
        e = find(v, v->cpuid_max_basic, 0, &beyond);
    uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (e) {
        eax = e->eax, ebx = e->ebx, ecx = e->ecx, edx = e->edx;
        if (function == 1)
            ebx = (ebx & 0x00ffffffu) | (v->apic_id << 24);
    }
    if (function == 1 && (root_guest_cr4(cpu) & CR4_OSXSAVE))
        ecx |= LEAF1_ECX_OSXSAVE;
    if (function == 1 && v->apic_disabled)
        edx &= ~LEAF1_EDX_APIC;
    gprs[R_AX] = eax, gprs[R_BX] = ebx, gprs[R_CX] = ecx, gprs[R_DX] = edx;
    cpu_set_gprs(cpu, gprs);
    root_advance_rip(cpu);
}
