/* kvm/'s compiled half (root_api.h): its VM and vCPU state and the pieces its files
 * share.  Root-mode software uses the silicon through its interface (VMREAD/VMWRITE,
 * the GPRs, RDMSR) and reaches host-physical memory through the host map. */
#ifndef PYHV_ROOT_H
#define PYHV_ROOT_H

#include "core.h"
#include "root_api.h"

#define ROOT_MAX_SLOTS 64
#define ROOT_MAX_COALESCED_ZONES 16

typedef struct root_memslot {
    uint64_t gpa, size, hpa;
    uint32_t flags;              /* KVM_MEM_* */
    int used;
    uint64_t *hypervisor_dirty;  /* pages the hypervisor wrote (dirty-logging slots) */
} root_memslot_t;

enum { KVM_MEM_LOG_DIRTY_PAGES = 1, KVM_MEM_READONLY = 2 };

struct root_vm {
    root_pool_t *pool;
    silicon_t *sil;
    pthread_mutex_t lock;        /* memslots, EPT tables, the vCPU list */
    root_memslot_t slots[ROOT_MAX_SLOTS];
    uint8_t used_slots[ROOT_MAX_SLOTS];   /* the numbers of the slots in use */
    int n_used;
    uint64_t ept_root;
    uint64_t *ept_tables;        /* every EPT table page, to give back to the pool */
    size_t n_ept_tables, cap_ept_tables;
    /* kvmclock: ns = base_ns + (host TSC - base_tsc) scaled; set_clock moves the base */
    uint64_t clock_base_tsc;
    uint64_t clock_base_ns;
    uint32_t clock_generation;   /* bumped by set_clock: vCPUs rewrite their pvclock */
    uint64_t wall_clock_msr;
    /* coalesced port writes (root_coalesced.c) */
    pthread_mutex_t coalesced_lock;
    int n_zones;
    struct kvm_coalesced_mmio_zone zones[ROOT_MAX_COALESCED_ZONES];
    struct kvm_coalesced_mmio_ring coalesced_ring;
};

struct root_vcpu {
    root_vm_t *vm;
    cpu_t *cpu;
    uint32_t apic_id;
    int apic_disabled;
    int report_exits;            /* return ROOT_RUN_REPORTED after each exit handled here */
    uint32_t reported_reason;    /* that exit: its reason, the RIP it exited at, and */
    uint64_t reported_rip;
    int reported_completed;      /* whether it completed the instruction */           /* IA32_APIC_BASE's global enable is clear: CPUID hides the APIC */
    int launched;
    struct kvm_cpuid_entry2 *cpuid;
    int ncpuid;
    uint32_t cpuid_max_basic;
    uint64_t xcr0_supported;
    int exception_pending;       /* raised by an exit handled here, for kvm/ to queue */
    uint32_t exception_vector;
    int32_t exception_error;
    uint64_t system_time_msr;    /* MSR_KVM_SYSTEM_TIME_NEW */
    uint32_t pvclock_generation; /* what the guest's pvclock was last written from */
    uint64_t pvclock_tsc_offset;
    struct kvm_exit_stats stats;
};

/* VMREAD/VMWRITE of the current VMCS (the fields used here always exist). */
static inline uint64_t root_vmread(cpu_t *cpu, uint32_t field)
{
    uint64_t v = 0;
    vmx_vmread(cpu, field, &v);
    return v;
}

static inline void root_vmwrite(cpu_t *cpu, uint32_t field, uint64_t value)
{
    vmx_vmwrite(cpu, field, value);
}

/* CR4 as the guest sees it: host-owned bits come from the read shadow. */
static inline uint64_t root_guest_cr4(cpu_t *cpu)
{
    uint64_t mask = root_vmread(cpu, CR4_GUEST_HOST_MASK);
    return (root_vmread(cpu, GUEST_CR4) & ~mask) | (root_vmread(cpu, CR4_READ_SHADOW) & mask);
}

void root_raise_exception(root_vcpu_t *v, uint32_t vector, int32_t error_code);

/* root_mmu.c: write guest-physical memory as the hypervisor (within one page of RAM);
 * 0, or -1 where there is no writable RAM. */
int root_write_guest(root_vm_t *vm, uint64_t gpa, const void *data, uint32_t size);
int root_read_guest(root_vm_t *vm, uint64_t gpa, void *data, uint32_t size);

/* root_cpuid.c */
void root_handle_cpuid(root_vcpu_t *v);
/* root_kvmclock.c: the kvmclock MSRs and the pvclock page */
int root_kvmclock_msr(uint32_t index);
void root_kvmclock_init(root_vm_t *vm);
void root_kvmclock_refresh(root_vcpu_t *v);
/* root_coalesced.c: an I/O exit queued in the coalesced ring (1) or not (0) */
int root_coalesced_pio(root_vcpu_t *v);

#endif
