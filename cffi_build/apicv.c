/* The virtual-APIC page and virtual interrupts (SDM Vol. 3 "APIC Virtualization and
 * Virtual Interrupts"): TPR, PPR, EOI and self-IPI virtualization, the evaluation and
 * delivery of virtual interrupts, posted-interrupt processing, and the instructions
 * virtualized without the APIC-access page: MOV CR8 ("use TPR shadow") and RDMSR/WRMSR
 * of the x2APIC MSRs ("virtualize x2APIC mode"). */
#include "apicv.h"

/* The virtual-APIC page where there is none (no TPR shadow, or an address that names no
 * RAM): what is stored there is lost. */
static uint8_t unbacked_page[PAGE_SIZE] __attribute__((aligned(64)));

/* VIRR and VISR bits are updated atomically: root-mode software (another thread)
 * may set VIRR bits in the page while the guest runs. */
static void set_vector_bit(cpu_t *cpu, unsigned base, unsigned vector, int value)
{
    uint32_t *word = (uint32_t *)(cpu->vc.virtual_apic + base + ((vector & 0xe0) >> 1));
    uint32_t bit = 1u << (vector & 31);
    if (value)
        __atomic_fetch_or(word, bit, __ATOMIC_ACQ_REL);
    else
        __atomic_fetch_and(word, ~bit, __ATOMIC_ACQ_REL);
}

/* The highest vector set in VIRR or VISR, or 0 when none. */
static uint8_t highest_vector(cpu_t *cpu, unsigned base)
{
    for (int k = 7; k >= 0; k--) {
        uint32_t w = vapic_read32(cpu, base + 16 * (unsigned)k);
        if (w)
            return (uint8_t)(k * 32 + 31 - __builtin_clz(w));
    }
    return 0;
}

static void ppr_virtualization(cpu_t *cpu)
{
    uint32_t vtpr = vapic_read32(cpu, VAPIC_TPR) & 0xff;
    vapic_write32(cpu, VAPIC_PPR, (vtpr >> 4) >= (uint32_t)(cpu->svi >> 4) ? vtpr : (cpu->svi & 0xf0u));
}

/* Recognize a pending virtual interrupt, to be delivered at an instruction boundary. */
static void evaluate_pending(cpu_t *cpu)
{
    uint32_t vppr = vapic_read32(cpu, VAPIC_PPR) & 0xff;
    if (!(cpu->vc.proc & CPU_INTR_WINDOW_EXITING) && (cpu->rvi >> 4) > (vppr >> 4)) {
        cpu->boundary_controls |= BOUNDARY_VIRTUAL_INTR;
        cpu->stop_block = 1;
    } else {
        cpu->boundary_controls &= ~BOUNDARY_VIRTUAL_INTR;
    }
}

/* The VM exits of the virtualizations are trap-like: inside an instruction the caller
 * has already moved RIP past it; at a boundary it is there. */
void apicv_tpr_virtualization(cpu_t *cpu)
{
    if (!(cpu->vc.proc2 & SEC_VIRTUAL_INTR_DELIVERY)) {
        if (((vapic_read32(cpu, VAPIC_TPR) >> 4) & 0xf) < (cpu->vc.tpr_threshold & 0xf))
            vm_exit_simple(cpu, EXIT_REASON_TPR_BELOW_THRESHOLD, 0);
        return;
    }
    ppr_virtualization(cpu);
    evaluate_pending(cpu);
}

void apicv_eoi_virtualization(cpu_t *cpu)
{
    uint8_t vector = cpu->svi;
    set_vector_bit(cpu, VAPIC_ISR, vector, 0);
    cpu->svi = highest_vector(cpu, VAPIC_ISR);
    ppr_virtualization(cpu);
    if ((cpu->vc.eoi_exit_bitmap[vector >> 6] >> (vector & 63)) & 1)
        vm_exit_simple(cpu, EXIT_REASON_EOI_INDUCED, vector);
    evaluate_pending(cpu);
}

void apicv_self_ipi_virtualization(cpu_t *cpu, uint8_t vector)
{
    set_vector_bit(cpu, VAPIC_IRR, vector, 1);
    if (vector > cpu->rvi)
        cpu->rvi = vector;
    evaluate_pending(cpu);
}

void apicv_deliver(cpu_t *cpu)
{
    uint8_t vector = cpu->rvi;
    set_vector_bit(cpu, VAPIC_ISR, vector, 1);
    cpu->svi = vector;
    vapic_write32(cpu, VAPIC_PPR, vector & 0xf0u);
    set_vector_bit(cpu, VAPIC_IRR, vector, 0);
    cpu->rvi = highest_vector(cpu, VAPIC_IRR);
    cpu->boundary_controls &= ~BOUNDARY_VIRTUAL_INTR;
    cpu->activity = 0;
    cpu->next_rip = cpu->rip;
    deliver_event(cpu, EV_EXT_INT, vector, 0, 0, cpu->rip);
}

/* Posted-interrupt processing, for the notification vector arriving in the guest: the
 * descriptor's requests (PIR, bits 255:0) move to VIRR, its outstanding-notification
 * bit (256) is cleared, and the new RVI is evaluated. */
void apicv_posted_interrupt(cpu_t *cpu)
{
    uint8_t *desc = hostmem_ptr(cpu->sil, cpu->vc.posted_intr_desc);
    if (!desc)
        return;
    __atomic_fetch_and(desc + 32, (uint8_t)~1u, __ATOMIC_SEQ_CST);
    for (int k = 7; k >= 0; k--) {
        uint32_t requests = __atomic_exchange_n((uint32_t *)(desc + 4 * k), 0, __ATOMIC_SEQ_CST);
        if (!requests)
            continue;
        __atomic_fetch_or((uint32_t *)(cpu->vc.virtual_apic + VAPIC_IRR + 16 * (unsigned)k),
                          requests, __ATOMIC_ACQ_REL);
        uint8_t highest = (uint8_t)(k * 32 + 31 - __builtin_clz(requests));
        if (highest > cpu->rvi)
            cpu->rvi = highest;
    }
    evaluate_pending(cpu);
}

void apicv_trap(cpu_t *cpu)
{
    cpu->boundary_controls &= ~BOUNDARY_APIC_TRAP;
    if (cpu->tpr_check_owed) {
        cpu->tpr_check_owed = 0;
        apicv_tpr_virtualization(cpu);
    }
    if (cpu->apic_write_offset >= 0)
        apic_write_emulation(cpu);
}

void apicv_load_controls(cpu_t *cpu)
{
    vmcs_cache_t *vc = &cpu->vc;
    vc->virtual_apic_addr = vmcs_get(cpu, VIRTUAL_APIC_PAGE_ADDR);
    vc->apic_access_addr = vmcs_get(cpu, APIC_ACCESS_ADDR);
    vc->tpr_threshold = (uint32_t)vmcs_get(cpu, TPR_THRESHOLD);
    for (int k = 0; k < 4; k++)
        vc->eoi_exit_bitmap[k] = vmcs_get(cpu, EOI_EXIT_BITMAP0 + 2 * (uint32_t)k);
    vc->posted_intr_nv = (uint16_t)vmcs_get(cpu, POSTED_INTR_NV);
    vc->posted_intr_desc = vmcs_get(cpu, POSTED_INTR_DESC_ADDR);
    uint8_t *page = (vc->proc & CPU_TPR_SHADOW) ? hostmem_ptr(cpu->sil, vc->virtual_apic_addr) : NULL;
    vc->virtual_apic = page ? page : unbacked_page;
}

void apicv_vm_entry(cpu_t *cpu)
{
    vmcs_cache_t *vc = &cpu->vc;
    apic_access_tlb_check(cpu);
    cpu->apic_write_offset = -1;
    cpu->tpr_check_owed = 0;
    if (!(vc->proc & CPU_TPR_SHADOW))
        return;
    if (vc->proc2 & SEC_VIRTUAL_INTR_DELIVERY) {
        uint64_t status = vmcs_get(cpu, GUEST_INTR_STATUS);
        cpu->rvi = (uint8_t)status;
        cpu->svi = (uint8_t)(status >> 8);
        ppr_virtualization(cpu);
        evaluate_pending(cpu);
    } else if ((vc->proc2 & SEC_VIRTUALIZE_APIC_ACCESSES) &&
               ((vapic_read32(cpu, VAPIC_TPR) >> 4) & 0xf) < (vc->tpr_threshold & 0xf)) {
        /* a VM exit right after VM entry, after any event injection */
        cpu->tpr_check_owed = 1;
        cpu->boundary_controls |= BOUNDARY_APIC_TRAP;
    }
}

void apicv_vm_exit(cpu_t *cpu)
{
    if ((cpu->vc.proc & CPU_TPR_SHADOW) && (cpu->vc.proc2 & SEC_VIRTUAL_INTR_DELIVERY))
        vmcs_set(cpu, GUEST_INTR_STATUS, cpu->rvi | ((uint64_t)cpu->svi << 8));
    cpu->apic_write_offset = -1;
}

/* ---- MOV CR8 with "use TPR shadow" ---- */

uint64_t apicv_read_cr8(cpu_t *cpu)
{
    return (vapic_read32(cpu, VAPIC_TPR) >> 4) & 0xf;
}

void apicv_write_cr8(cpu_t *cpu, uint64_t v)
{
    vapic_write32(cpu, VAPIC_TPR, (uint32_t)(v & 0xf) << 4);
    cpu->rip = cpu->next_rip;
    apicv_tpr_virtualization(cpu);
}

/* ---- RDMSR/WRMSR of 800H-8FFH with "virtualize x2APIC mode" ---- */

enum { X2APIC_TPR = 0x808, X2APIC_EOI = 0x80b, X2APIC_SELF_IPI = 0x83f };

static uint64_t vapic_read64(cpu_t *cpu, unsigned offset)
{
    return vapic_read32(cpu, offset) | ((uint64_t)vapic_read32(cpu, offset + 4) << 32);
}

int apicv_rdmsr(cpu_t *cpu, uint32_t msr, uint64_t *v)
{
    if (!(cpu->vc.proc2 & SEC_APIC_REGISTER_VIRT) && msr != X2APIC_TPR)
        return 0;
    *v = vapic_read64(cpu, (msr & 0xff) << 4);
    return 1;
}

int apicv_wrmsr(cpu_t *cpu, uint32_t msr, uint64_t v)
{
    int vid = (cpu->vc.proc2 & SEC_VIRTUAL_INTR_DELIVERY) != 0;
    switch (msr) {
    case X2APIC_TPR:
        if (v >> 8)
            FAULT_ERR(cpu, EXC_GP, 0);
        vapic_write32(cpu, VAPIC_TPR, (uint32_t)v);
        vapic_write32(cpu, VAPIC_TPR + 4, 0);
        cpu->rip = cpu->next_rip;
        apicv_tpr_virtualization(cpu);
        return 1;
    case X2APIC_EOI:
        if (!vid)
            return 0;
        if (v)
            FAULT_ERR(cpu, EXC_GP, 0);
        cpu->rip = cpu->next_rip;
        apicv_eoi_virtualization(cpu);
        return 1;
    case X2APIC_SELF_IPI:
        if (!vid)
            return 0;
        if (v >> 8)
            FAULT_ERR(cpu, EXC_GP, 0);
        cpu->rip = cpu->next_rip;
        if (!(v & 0xf0)) {
            /* an illegal vector: the VMM completes it (it sets the error status) */
            vapic_write32(cpu, VAPIC_SELF_IPI, (uint32_t)v);
            vm_exit_simple(cpu, EXIT_REASON_APIC_WRITE, VAPIC_SELF_IPI);
        }
        apicv_self_ipi_virtualization(cpu, (uint8_t)v);
        return 1;
    }
    return 0;
}
