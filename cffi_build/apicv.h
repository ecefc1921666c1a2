/* APIC virtualization (SDM Vol. 3 Chapter "APIC Virtualization and Virtual Interrupts"):
 * the virtual-APIC page and virtual interrupts (apicv.c), and the APIC-access page,
 * whose accesses are virtualized or VM-exit (apic_access.c). */
#ifndef PYHV_APICV_H
#define PYHV_APICV_H
#include "core.h"

/* Virtual-APIC page offsets (the local APIC's register layout) */
enum {
    VAPIC_ID = 0x020, VAPIC_VERSION = 0x030, VAPIC_TPR = 0x080, VAPIC_PPR = 0x0a0,
    VAPIC_EOI = 0x0b0, VAPIC_ISR = 0x100, VAPIC_TMR = 0x180, VAPIC_IRR = 0x200,
    VAPIC_ICR_LO = 0x300, VAPIC_ICR_HI = 0x310, VAPIC_SELF_IPI = 0x3f0,
};

/* APIC-access exit qualification, bits 15:12: the kind of access */
enum {
    APIC_ACCESS_LINEAR_READ = 0, APIC_ACCESS_LINEAR_WRITE = 1, APIC_ACCESS_LINEAR_FETCH = 2,
    APIC_ACCESS_LINEAR_EVENT = 3, APIC_ACCESS_GUEST_PHYSICAL_EVENT = 10,
    APIC_ACCESS_GUEST_PHYSICAL = 15,
};

static inline uint32_t vapic_read32(cpu_t *cpu, unsigned offset)
{
    return __atomic_load_n((uint32_t *)(cpu->vc.virtual_apic + offset), __ATOMIC_RELAXED);
}

static inline void vapic_write32(cpu_t *cpu, unsigned offset, uint32_t v)
{
    __atomic_store_n((uint32_t *)(cpu->vc.virtual_apic + offset), v, __ATOMIC_RELAXED);
}

/* ---- apicv.c ---- */

/* The APIC-virtualization fields of the VMCS, with the other controls. */
void apicv_load_controls(cpu_t *cpu);
/* VM entry, after guest state is loaded: RVI and SVI, PPR virtualization, evaluation of
 * pending virtual interrupts, the TPR-threshold check; VM exit: RVI and SVI saved. */
void apicv_vm_entry(cpu_t *cpu);
void apicv_vm_exit(cpu_t *cpu);
/* The virtualizations that APIC-write emulation and the instructions perform.  Their VM
 * exits are trap-like: an instruction moves RIP past itself before it calls them. */
void apicv_tpr_virtualization(cpu_t *cpu);
void apicv_eoi_virtualization(cpu_t *cpu);
void apicv_self_ipi_virtualization(cpu_t *cpu, uint8_t vector);
/* The posted-interrupt notification vector has arrived ("process posted interrupts"). */
void apicv_posted_interrupt(cpu_t *cpu);
/* Delivery of the recognized virtual interrupt through the IDT (an instruction boundary
 * with RFLAGS.IF = 1 and no STI or MOV SS blocking). */
void apicv_deliver(cpu_t *cpu);
/* MOV from/to CR8 with "use TPR shadow"; RDMSR/WRMSR of 800H-8FFH with "virtualize
 * x2APIC mode": return 1 when virtualized, 0 when the instruction operates normally. */
uint64_t apicv_read_cr8(cpu_t *cpu);
void apicv_write_cr8(cpu_t *cpu, uint64_t v);
int apicv_rdmsr(cpu_t *cpu, uint32_t msr, uint64_t *v);
int apicv_wrmsr(cpu_t *cpu, uint32_t msr, uint64_t v);
/* What is owed at the boundary after an operation (BOUNDARY_APIC_TRAP): APIC-write
 * emulation after a virtualized write, the TPR-threshold check after VM entry. */
void apicv_trap(cpu_t *cpu);

/* ---- apic_access.c ---- */

static inline int is_apic_access_page(cpu_t *cpu, uint64_t hpa_page)
{
    return (cpu->vc.proc2 & SEC_VIRTUALIZE_APIC_ACCESSES) && hpa_page == cpu->vc.apic_access_addr;
}
/* A linear access translated to the APIC-access page (from tlb_fill, which caches no
 * translation for it): an instruction fetch VM-exits; a data access is marked for the
 * caller (cpu->emul_hit_gpa), which then calls apic_access_read/write. */
void apic_access_translated(cpu_t *cpu, uint64_t lin, uint64_t gpa, int acc);
uint64_t apic_access_read(cpu_t *cpu, uint64_t lin, int size);
void apic_access_write(cpu_t *cpu, uint64_t lin, int size, uint64_t v);
/* A guest-physical access (a paging-structure access through EPT) to the page VM-exits. */
__attribute__((noreturn)) void apic_access_guest_physical(cpu_t *cpu, uint64_t gpa);
/* APIC-write emulation for the virtualized write of the operation just completed. */
void apic_write_emulation(cpu_t *cpu);
/* Translations to a page that has just become the APIC-access page must go. */
void apic_access_tlb_check(cpu_t *cpu);

#endif
