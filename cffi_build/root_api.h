/* kvm/'s compiled half: root-mode software, not part of the silicon.  The exits that
 * never need Python (CPUID, EPT population from memslots, XSETBV, the kvmclock MSRs)
 * are handled here and the guest is entered again at once, as KVM's vmx.c handles
 * them in the kernel; kvm/ (Python) owns the policy and configures the tables these
 * handlers read.  cffi reads this file as a cdef too: plain declarations only. */

typedef struct root_pool root_pool_t;
typedef struct root_vm root_vm_t;
typedef struct root_vcpu root_vcpu_t;

/* ---- the hypervisor's pool of host-physical pages (VMCS, bitmaps, EPT tables) ---- */
root_pool_t *root_pool_new(silicon_t *sil, uint64_t base, uint64_t size);
void root_pool_free(root_pool_t *pool);
/* A zeroed page, or 0 when the pool is exhausted. */
uint64_t root_pool_alloc(root_pool_t *pool);
void root_pool_release(root_pool_t *pool, uint64_t hpa);

/* ---- a VM: memslots and the EPT built from them on demand ---- */
root_vm_t *root_vm_new(root_pool_t *pool);
void root_vm_free(root_vm_t *vm);
/* The EPT PML4 table (host-physical), or 0 if no page was left for it. */
uint64_t root_vm_ept_root(root_vm_t *vm);
/* KVM_SET_USER_MEMORY_REGION after kvm/'s checks: slot `slot` maps [gpa, gpa + size) to
 * host-physical hpa (flags KVM_MEM_*); size 0 deletes it.  The slot's old range leaves
 * EPT (the caller flushes TLBs).  Returns 0, or -1 without memory for the dirty bitmap. */
int root_vm_set_memslot(root_vm_t *vm, int slot, uint64_t gpa, uint64_t size, uint64_t hpa, uint32_t flags);
/* Write the 4 KiB EPT leaf entry for gpa, building the tables above it.  0, or -1 when
 * the pool is exhausted. */
int root_ept_set_leaf(root_vm_t *vm, uint64_t gpa, uint64_t entry);
/* An EPT violation at gpa: map the page from its memslot (read-only for a read-only
 * slot) and return 1; 0 when the access is MMIO (no slot, or a write to a read-only
 * slot); -1 when the pool has no page left for an EPT table. */
int root_ept_fault_in(root_vm_t *vm, uint64_t gpa, int write);
/* The hypervisor wrote guest memory: for the dirty log of the slot it belongs to. */
void root_vm_mark_dirty(root_vm_t *vm, uint64_t gpa, uint64_t size);
/* OR the pages of `slot` the hypervisor wrote since the last call into `bitmap` (bit i:
 * page i of the slot) and forget them. */
void root_vm_take_hypervisor_dirty(root_vm_t *vm, int slot, uint8_t *bitmap, uint64_t nbytes);

/* ---- coalesced port writes (KVM_REGISTER_COALESCED_MMIO, KVM_COALESCED_IO_PIO):
 * root_coalesced.c.  An OUT to a registered port zone goes into the VM's ring (KVM's
 * page of struct kvm_coalesced_mmio) instead of exiting; userspace drains the ring
 * from `first` to `last` at its exits. ---- */
struct kvm_coalesced_mmio_zone {
    uint64_t addr;
    uint32_t size;
    uint32_t pio;        /* 1: ports (the only zones here) */
};
struct kvm_coalesced_mmio {
    uint64_t phys_addr;  /* the port */
    uint32_t len;
    uint32_t pio;
    uint8_t data[8];
};
enum { KVM_COALESCED_MMIO_MAX = 170 };   /* as many as fit in a page after the indices */
struct kvm_coalesced_mmio_ring {
    uint32_t first, last;
    struct kvm_coalesced_mmio coalesced_mmio[170];
};
/* 0, or -1 for a zone that is not of ports or when there is no room (KVM: ENOBUFS). */
int root_vm_register_coalesced(root_vm_t *vm, const struct kvm_coalesced_mmio_zone *zone);
/* Every registered zone inside `zone` is removed. */
void root_vm_unregister_coalesced(root_vm_t *vm, const struct kvm_coalesced_mmio_zone *zone);
struct kvm_coalesced_mmio_ring *root_vm_coalesced_ring(root_vm_t *vm);

/* ---- the VM's clock (KVM_GET_CLOCK / KVM_SET_CLOCK, struct kvm_clock_data) ---- */
struct kvm_clock_data {
    uint64_t clock;      /* kvmclock nanoseconds */
    uint32_t flags;      /* KVM_CLOCK_* */
    uint64_t realtime;   /* host CLOCK_REALTIME ns at the same instant (KVM_CLOCK_REALTIME) */
    uint64_t host_tsc;   /* host TSC at the same instant (KVM_CLOCK_HOST_TSC) */
};
void root_vm_get_clock(root_vm_t *vm, struct kvm_clock_data *data);
void root_vm_set_clock(root_vm_t *vm, const struct kvm_clock_data *data);

/* ---- a vCPU ---- */
/* Exits counted by reason, with the nanoseconds spent handling them: slot = basic exit
 * reason, + 128 for a failed VM entry. */
struct kvm_exit_stats {
    uint64_t count[256];
    uint64_t time_ns[256];
};

struct kvm_cpuid_entry2 {
    uint32_t function, index, flags, eax, ebx, ecx, edx;
};

root_vcpu_t *root_vcpu_new(root_vm_t *vm, cpu_t *cpu, uint32_t apic_id);
void root_vcpu_free(root_vcpu_t *vcpu);
struct kvm_exit_stats *root_vcpu_stats(root_vcpu_t *vcpu);
/* KVM_SET_CPUID2: the table the CPUID exit answers from.  0, or -1 without memory. */
int root_vcpu_set_cpuid(root_vcpu_t *vcpu, const struct kvm_cpuid_entry2 *entries, int n);
/* IA32_APIC_BASE's global enable bit, which CPUID.1:EDX.APIC reflects. */
void root_vcpu_set_apic_enabled(root_vcpu_t *vcpu, int enabled);
/* The XCR0 bits XSETBV may set. */
void root_vcpu_set_xcr0_supported(root_vcpu_t *vcpu, uint64_t mask);

/* KVM_RUN's inner loop: VMLAUNCH/VMRESUME the vCPU's VMCS and handle exits here until
 * one needs kvm/'s Python handlers (VMX_EXITED: the exit is in the VMCS), the entry
 * fails (VMX_FAIL_*: VM-instruction error in the VMCS), or an exit handled here asks
 * kvm/ to look at its event queue before the next entry (ROOT_RUN_HANDLED: an exception
 * to queue, see root_vcpu_take_exception, or pending interrupt/NMI windows). */
enum { ROOT_RUN_HANDLED = 16, ROOT_RUN_REPORTED = 17 };
int root_vcpu_run(root_vcpu_t *vcpu);
/* Report every exit handled here (ROOT_RUN_REPORTED: for tracing; single-stepped
 * instructions are reported anyway), and what the last report was. */
void root_vcpu_set_report_exits(root_vcpu_t *vcpu, int enabled);
void root_vcpu_reported(root_vcpu_t *vcpu, uint32_t *reason, uint64_t *rip, int *completed);
/* The exception an exit handled here raised for the guest (#GP, #UD): 1 and its vector
 * and error code (-1: none) once, else 0. */
int root_vcpu_take_exception(root_vcpu_t *vcpu, uint32_t *vector, int32_t *error_code);

/* Skip the instruction that VM-exited, ending an STI/MOV-SS shadow (KVM's
 * kvm_skip_emulated_instruction). */
void root_advance_rip(cpu_t *cpu);

/* The MSRs kvm/'s compiled half implements (kvmclock), for KVM_GET/SET_MSRS.  0; -1 for
 * a #GP; 1 when the index is not one of them. */
int root_msr_get(root_vcpu_t *vcpu, uint32_t index, uint64_t *value);
int root_msr_set(root_vcpu_t *vcpu, uint32_t index, uint64_t value);
