/* Coalesced port I/O (KVM_REGISTER_COALESCED_MMIO with KVM_COALESCED_IO_PIO): an OUT to
 * a registered zone does not exit to userspace; the value goes into the VM's ring and
 * the guest goes on, as in KVM's coalesced_mmio.c.  Userspace drains the ring at its
 * next exit, before it handles that exit, so the device sees the writes in order and
 * before anything the guest does after them that it can observe.  A full ring, an IN
 * and a string OUT exit as usual. */
#include <stdlib.h>
#include "root.h"

static int zone_matches(const struct kvm_coalesced_mmio_zone *a, const struct kvm_coalesced_mmio_zone *b)
{
    return a->pio == b->pio && b->addr >= a->addr && b->addr + b->size <= a->addr + a->size;
}

int root_vm_register_coalesced(root_vm_t *vm, const struct kvm_coalesced_mmio_zone *zone)
{
    if (!zone->pio || zone->size == 0 || zone->addr + zone->size > 0x10000)
        return -1;   /* port zones only: MMIO writes always exit here */
    pthread_mutex_lock(&vm->coalesced_lock);
    int n = vm->n_zones, ok = n < ROOT_MAX_COALESCED_ZONES;
    if (ok)
        vm->zones[n] = *zone;
    __atomic_store_n(&vm->n_zones, n + ok, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&vm->coalesced_lock);
    return ok ? 0 : -1;
}

void root_vm_unregister_coalesced(root_vm_t *vm, const struct kvm_coalesced_mmio_zone *zone)
{
    pthread_mutex_lock(&vm->coalesced_lock);
    int kept = 0;
    for (int k = 0; k < vm->n_zones; k++)
        if (!zone_matches(zone, &vm->zones[k]))
            vm->zones[kept++] = vm->zones[k];
    __atomic_store_n(&vm->n_zones, kept, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&vm->coalesced_lock);
}

struct kvm_coalesced_mmio_ring *root_vm_coalesced_ring(root_vm_t *vm)
{
    return &vm->coalesced_ring;
}

/* An I/O instruction exit: 1 if it was an OUT queued in the ring (the instruction is
 * then complete), 0 for kvm/ to handle. */
int root_coalesced_pio(root_vcpu_t *v)
{
    root_vm_t *vm = v->vm;
    if (!__atomic_load_n(&vm->n_zones, __ATOMIC_ACQUIRE))
        return 0;
    cpu_t *cpu = v->cpu;
    uint64_t qual = root_vmread(cpu, EXIT_QUALIFICATION);
    if (qual & (8 | 16))
        return 0;   /* IN, or INS/OUTS */
    struct kvm_coalesced_mmio_zone access = { .addr = qual >> 16, .size = (uint32_t)(qual & 7) + 1, .pio = 1 };
    struct kvm_coalesced_mmio_ring *ring = &vm->coalesced_ring;
    int queued = 0;
    pthread_mutex_lock(&vm->coalesced_lock);
    for (int k = 0; k < vm->n_zones && !queued; k++) {
        uint32_t last = ring->last, next = (last + 1) % KVM_COALESCED_MMIO_MAX;
        if (!zone_matches(&vm->zones[k], &access) || next == __atomic_load_n(&ring->first, __ATOMIC_ACQUIRE))
            continue;
        struct kvm_coalesced_mmio *e = &ring->coalesced_mmio[last];
        uint64_t gprs[16];
        cpu_get_gprs(cpu, gprs);
        e->phys_addr = access.addr;
        e->len = access.size;
        e->pio = 1;
        memcpy(e->data, &gprs[R_AX], access.size);   /* little-endian host */
        __atomic_store_n(&ring->last, next, __ATOMIC_RELEASE);
        queued = 1;
    }
    pthread_mutex_unlock(&vm->coalesced_lock);
    if (queued)
        root_advance_rip(cpu);
    return queued;
}
