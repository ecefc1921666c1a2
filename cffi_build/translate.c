/* KVM's guest page walker: guest-linear -> guest-physical with the guest's current
 * paging state, in root mode, for the hypervisor's own accesses to guest memory (string
 * I/O) and for KVM_TRANSLATE.  A #PF is reported, not delivered; the guest's
 * paging-structure entries are read through EPT like the processor's own walk. */
#include "core.h"
#include "vmx_state.h"

int cpu_translate(cpu_t *cpu, uint64_t gla, int access, uint64_t *gpa, uint32_t *pf_error)
{
    if (!cpu->vmx_on || cpu->current_vmcs == NO_VMCS)
        return -1;
    /* an emulation with no MMIO page: an EPT violation of the walk is reported in it */
    struct mmio_emulation probe = { .gpa = ~0ull };
    int acc = (access & TRANSLATE_WRITE) ? ACC_WRITE : (access & TRANSLATE_EXEC) ? ACC_EXEC : ACC_READ;
    volatile int rc = TRANSLATE_OK;   /* assigned on both sides of the setjmp */
    uint64_t host_rsp = guest_context_enter(cpu);
    cpu->emul = &probe;
    if (setjmp(cpu->exit_jmp) == 0) {
        walk_t w;
        if (!(cpu->cr0 & CR0_PG)) {
            *gpa = gla & 0xffffffffull;
        } else if (paging_walk(cpu, gla, acc, (access & TRANSLATE_USER) != 0,
                               !(access & TRANSLATE_PROBE), &w)) {
            *gpa = w.gpa;
        } else {
            *pf_error = w.error;
            rc = TRANSLATE_PAGE_FAULT;
        }
    } else {
        *gpa = probe.access_gpa;
        rc = TRANSLATE_EPT_FAULT;
    }
    guest_context_leave(cpu, host_rsp);
    return rc;
}
