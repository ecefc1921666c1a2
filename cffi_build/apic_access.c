/* The APIC-access page (SDM Vol. 3 "Virtualizing Memory-Mapped APIC Accesses"): a
 * linear access whose translation (through EPT) reaches the page is virtualized -- served
 * from or stored to the virtual-APIC page -- or causes a fault-like APIC-access VM exit.
 * A virtualized write is followed, once its operation completes, by APIC-write emulation,
 * which may end in a trap-like APIC-write VM exit.  The TLB never holds a translation to
 * the page, so every access to it comes here. */
#include "apicv.h"

#define SLOT(offset) (1ull << ((offset) >> 4))
#define SLOTS(first, last) ((SLOT(last) << 1) - SLOT(first))

/* The 16-byte register slots (offset bits 9:4) that "APIC-register virtualization"
 * lets a read or a write reach. */
static const uint64_t readable_slots =
    SLOT(0x020) | SLOT(0x030) | SLOT(0x080) | SLOT(0x0b0) | SLOT(0x0d0) | SLOT(0x0e0) |
    SLOT(0x0f0) | SLOTS(0x100, 0x270) | SLOT(0x280) | SLOTS(0x300, 0x380) | SLOT(0x3e0);
static const uint64_t writable_slots =
    SLOT(0x020) | SLOT(0x080) | SLOT(0x0b0) | SLOT(0x0d0) | SLOT(0x0e0) | SLOT(0x0f0) |
    SLOT(0x280) | SLOTS(0x300, 0x380) | SLOT(0x3e0);

__attribute__((noreturn)) static void apic_access_exit(cpu_t *cpu, unsigned offset, int type)
{
    exit_info_t ei = {0};
    ei.reason = EXIT_REASON_APIC_ACCESS;
    ei.qual = offset | ((uint64_t)type << 12);
    vm_exit(cpu, &ei);
}

static int linear_type(cpu_t *cpu, int acc)
{
    if (cpu->delivering)
        return APIC_ACCESS_LINEAR_EVENT;
    return acc == ACC_WRITE ? APIC_ACCESS_LINEAR_WRITE : APIC_ACCESS_LINEAR_READ;
}

/* Is this data access virtualized, rather than an APIC-access VM exit? */
static int virtualized(cpu_t *cpu, unsigned offset, int size, int write)
{
    const vmcs_cache_t *vc = &cpu->vc;
    if (!(vc->proc & CPU_TPR_SHADOW) || size > 4 || (offset & 0xf) + (unsigned)size > 4)
        return 0;
    /* one operation virtualizes one write (repeated at most with the same offset and
     * size) and no read after it */
    if (cpu->apic_write_offset >= 0 &&
        (!write || (int)offset != cpu->apic_write_offset || size != cpu->apic_write_size))
        return 0;
    if (!(vc->proc2 & SEC_APIC_REGISTER_VIRT)) {
        if (offset == VAPIC_TPR)
            return 1;
        return (vc->proc2 & SEC_VIRTUAL_INTR_DELIVERY) && (offset == VAPIC_EOI || offset == VAPIC_ICR_LO);
    }
    return offset < 0x400 && (((write ? writable_slots : readable_slots) >> (offset >> 4)) & 1);
}

void apic_access_translated(cpu_t *cpu, uint64_t lin, uint64_t gpa, int acc)
{
    if (acc == ACC_EXEC)
        apic_access_exit(cpu, lin & 0xfff, APIC_ACCESS_LINEAR_FETCH);
    cpu->emul_hit_gpa = gpa;
}

uint64_t apic_access_read(cpu_t *cpu, uint64_t lin, int size)
{
    unsigned offset = lin & 0xfff;
    if (!virtualized(cpu, offset, size, 0))
        apic_access_exit(cpu, offset, linear_type(cpu, ACC_READ));
    return load_host(cpu->vc.virtual_apic + offset, size);
}

void apic_access_write(cpu_t *cpu, uint64_t lin, int size, uint64_t v)
{
    unsigned offset = lin & 0xfff;
    if (!virtualized(cpu, offset, size, 1))
        apic_access_exit(cpu, offset, linear_type(cpu, ACC_WRITE));
    store_host(cpu->vc.virtual_apic + offset, size, v);
    cpu->apic_write_offset = (int)offset;
    cpu->apic_write_size = size;
    cpu->boundary_controls |= BOUNDARY_APIC_TRAP;
    cpu->stop_block = 1;
}

__attribute__((noreturn)) void apic_access_guest_physical(cpu_t *cpu, uint64_t gpa)
{
    exit_info_t ei = {0};
    ei.reason = EXIT_REASON_APIC_ACCESS;
    ei.qual = (uint64_t)(cpu->delivering ? APIC_ACCESS_GUEST_PHYSICAL_EVENT : APIC_ACCESS_GUEST_PHYSICAL) << 12;
    ei.gpa = gpa;
    vm_exit(cpu, &ei);
}

/* A self-IPI that virtual-interrupt delivery completes without the VMM: fixed delivery,
 * edge-triggered, shorthand "self", a vector of 16 or above, reserved bits clear. */
static int is_virtual_self_ipi(uint32_t icr)
{
    return !(icr & 0xfff3b700u) && ((icr >> 18) & 3) == 1 && (icr & 0xf0);
}

void apic_write_emulation(cpu_t *cpu)
{
    unsigned offset = (unsigned)cpu->apic_write_offset;
    int vid = (cpu->vc.proc2 & SEC_VIRTUAL_INTR_DELIVERY) != 0;
    cpu->apic_write_offset = -1;
    switch (offset) {
    case VAPIC_TPR:
        vapic_write32(cpu, VAPIC_TPR, vapic_read32(cpu, VAPIC_TPR) & 0xff);
        apicv_tpr_virtualization(cpu);
        return;
    case VAPIC_EOI:
        if (!vid)
            break;
        vapic_write32(cpu, VAPIC_EOI, 0);
        apicv_eoi_virtualization(cpu);
        return;
    case VAPIC_ICR_LO: {
        uint32_t icr = vapic_read32(cpu, VAPIC_ICR_LO);
        if (!vid || !is_virtual_self_ipi(icr))
            break;
        apicv_self_ipi_virtualization(cpu, (uint8_t)icr);
        return;
    }
    case VAPIC_ICR_HI: case VAPIC_ICR_HI + 1: case VAPIC_ICR_HI + 2: case VAPIC_ICR_HI + 3:
        vapic_write32(cpu, VAPIC_ICR_HI, vapic_read32(cpu, VAPIC_ICR_HI) & 0xff000000u);
        return;
    }
    vm_exit_simple(cpu, EXIT_REASON_APIC_WRITE, offset);
}

/* Accesses to the APIC-access page must never use a translation cached before the page
 * became it (the SDM leaves that to INVVPID/INVEPT; here it is never left to chance). */
void apic_access_tlb_check(cpu_t *cpu)
{
    uint64_t page = (cpu->vc.proc2 & SEC_VIRTUALIZE_APIC_ACCESSES) ? cpu->vc.apic_access_addr : ~0ull;
    if (page != ~0ull && page != cpu->tlb_apic_access_page)
        tlb_flush_all(cpu, 0);
    cpu->tlb_apic_access_page = page;
}
