/* kvmclock, the paravirtual clock Linux's arch/x86/kernel/kvmclock.c reads: the VM's
 * clock in nanoseconds is one linear function of the host TSC (so every vCPU and every
 * update agree), published to the guest by each vCPU in a pvclock_vcpu_time_info at the
 * address written to MSR_KVM_SYSTEM_TIME_NEW, with the wall-clock time at kvmclock 0 in
 * a pvclock_wall_clock written on MSR_KVM_WALL_CLOCK_NEW (KVM's x86.c). */
#include <time.h>
#include "root.h"

enum { MSR_KVM_WALL_CLOCK_NEW = 0x4b564d00, MSR_KVM_SYSTEM_TIME_NEW = 0x4b564d01,
       MSR_IA32_TSC_ADJUST = 0x3b };
#define KVM_MSR_ENABLED 1ull
#define PVCLOCK_TSC_STABLE_BIT 1u
/* struct kvm_clock_data flags */
#define KVM_CLOCK_TSC_STABLE 2u
#define KVM_CLOCK_REALTIME (1u << 2)
#define KVM_CLOCK_HOST_TSC (1u << 3)
#define NSEC_PER_SEC 1000000000ull

struct pvclock_vcpu_time_info {
    uint32_t version;
    uint32_t pad0;
    uint64_t tsc_timestamp;
    uint64_t system_time;
    uint32_t tsc_to_system_mul;
    int8_t tsc_shift;
    uint8_t flags;
    uint8_t pad[2];
} __attribute__((packed));

struct pvclock_wall_clock {
    uint32_t version;
    uint32_t sec;
    uint32_t nsec;
} __attribute__((packed));

/* ---- the TSC's rate as a pvclock scale: ns = ((ticks << shift) * mul) >> 32 ---- */

static struct { uint32_t mul; int8_t shift; } tsc_scale;
static pthread_once_t tsc_scale_once = PTHREAD_ONCE_INIT;

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* A (TSC, monotonic ns) pair read as close together as a few tries allow. */
static void tsc_and_ns(uint64_t *tsc, uint64_t *ns)
{
    uint64_t best = ~0ull;
    *tsc = *ns = 0;
    for (int k = 0; k < 5; k++) {
        uint64_t t0 = host_tsc(), n = clock_ns(CLOCK_MONOTONIC), t1 = host_tsc();
        if (t1 - t0 < best) {
            best = t1 - t0;
            *tsc = t0 + (t1 - t0) / 2;
            *ns = n;
        }
    }
}

/* KVM's kvm_get_time_scale(NSEC_PER_SEC, tsc_hz, ...) */
static void time_scale(uint64_t scaled_hz, uint64_t base_hz, int8_t *pshift, uint32_t *pmul)
{
    uint64_t tps64 = base_hz, scaled64 = scaled_hz;
    int32_t shift = 0;
    while (tps64 > scaled64 * 2 || (tps64 & 0xffffffff00000000ull)) {
        tps64 >>= 1;
        shift--;
    }
    uint32_t tps32 = (uint32_t)tps64;
    while (tps32 <= scaled64 || (scaled64 & 0xffffffff00000000ull)) {
        if ((scaled64 & 0xffffffff00000000ull) || (tps32 & 0x80000000u))
            scaled64 >>= 1;
        else
            tps32 <<= 1;
        shift++;
    }
    *pshift = (int8_t)shift;
    *pmul = (uint32_t)((scaled64 << 32) / tps32);
}

static void calibrate(void)
{
    uint64_t t0, n0, t1, n1;
    struct timespec pause = { 0, 20000000 };
    tsc_and_ns(&t0, &n0);
    nanosleep(&pause, NULL);
    tsc_and_ns(&t1, &n1);
    uint64_t hz = (uint64_t)((double)(t1 - t0) * 1e9 / (double)(n1 - n0));
    time_scale(NSEC_PER_SEC, hz ? hz : 1, &tsc_scale.shift, &tsc_scale.mul);
}

/* pvclock_scale_delta, without overflow for the VM's whole lifetime (after
 * need_scale(), called before taking locks: the calibration sleeps) */
static void need_scale(void)
{
    pthread_once(&tsc_scale_once, calibrate);
}

static uint64_t scale_ticks(uint64_t ticks)
{
    unsigned __int128 t = ticks;
    t = tsc_scale.shift < 0 ? t >> -tsc_scale.shift : t << tsc_scale.shift;
    return (uint64_t)((t * tsc_scale.mul) >> 32);
}

/* ---- the VM's clock ---- */

void root_kvmclock_init(root_vm_t *vm)
{
    vm->clock_base_tsc = host_tsc();
    vm->clock_base_ns = 0;       /* kvmclock starts at 0 when the VM is created */
    vm->clock_generation = 1;
}

static uint64_t kvmclock_at_locked(root_vm_t *vm, uint64_t tsc)
{
    return vm->clock_base_ns + scale_ticks(tsc - vm->clock_base_tsc);
}

void root_vm_get_clock(root_vm_t *vm, struct kvm_clock_data *data)
{
    need_scale();
    pthread_mutex_lock(&vm->lock);
    uint64_t tsc = host_tsc();
    data->realtime = clock_ns(CLOCK_REALTIME);
    data->clock = kvmclock_at_locked(vm, tsc);
    pthread_mutex_unlock(&vm->lock);
    data->host_tsc = tsc;
    data->flags = KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC;
}

void root_vm_set_clock(root_vm_t *vm, const struct kvm_clock_data *data)
{
    pthread_mutex_lock(&vm->lock);
    uint64_t clock = data->clock;
    uint64_t tsc = host_tsc();
    if (data->flags & KVM_CLOCK_REALTIME) {
        uint64_t now = clock_ns(CLOCK_REALTIME);
        if (now > data->realtime)
            clock += now - data->realtime;   /* the time that passed since it was read */
    }
    vm->clock_base_tsc = tsc;
    vm->clock_base_ns = clock;
    __atomic_add_fetch(&vm->clock_generation, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&vm->lock);
}

/* ---- what the guest reads ---- */

/* The version protocol of pvclock: odd while the fields change. */
static void write_versioned(root_vm_t *vm, uint64_t gpa, void *body, uint32_t size)
{
    uint32_t version = 0;
    root_read_guest(vm, gpa, &version, 4);
    version = (version + 1) | 1;
    if (root_write_guest(vm, gpa, &version, 4) < 0)
        return;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    root_write_guest(vm, gpa + 4, (uint8_t *)body + 4, size - 4);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    version++;
    root_write_guest(vm, gpa, &version, 4);
}

static void write_wall_clock(root_vm_t *vm, uint64_t gpa)
{
    need_scale();
    pthread_mutex_lock(&vm->lock);
    uint64_t tsc = host_tsc();
    uint64_t wall = clock_ns(CLOCK_REALTIME) - kvmclock_at_locked(vm, tsc);   /* at kvmclock 0 */
    pthread_mutex_unlock(&vm->lock);
    struct pvclock_wall_clock wc = { 0, (uint32_t)(wall / NSEC_PER_SEC), (uint32_t)(wall % NSEC_PER_SEC) };
    write_versioned(vm, gpa, &wc, sizeof(wc));
}

/* Rewrite the vCPU's pvclock_vcpu_time_info if what it derives from changed: the VM
 * clock (set_clock), the guest TSC offset, or the MSR. */
void root_kvmclock_refresh(root_vcpu_t *v)
{
    if (!(v->system_time_msr & KVM_MSR_ENABLED))
        return;
    root_vm_t *vm = v->vm;
    uint32_t generation = __atomic_load_n(&vm->clock_generation, __ATOMIC_ACQUIRE);
    uint64_t offset = root_vmread(v->cpu, TSC_OFFSET);
    if (generation == v->pvclock_generation && offset == v->pvclock_tsc_offset)
        return;
    need_scale();
    uint64_t adjust = 0;
    cpu_rdmsr(v->cpu, MSR_IA32_TSC_ADJUST, &adjust);
    struct pvclock_vcpu_time_info t = { 0 };
    pthread_mutex_lock(&vm->lock);
    uint64_t tsc = host_tsc();
    t.system_time = kvmclock_at_locked(vm, tsc);
    generation = vm->clock_generation;
    pthread_mutex_unlock(&vm->lock);
    t.tsc_timestamp = tsc + adjust + offset;   /* the guest's TSC at that instant */
    t.tsc_to_system_mul = tsc_scale.mul;
    t.tsc_shift = tsc_scale.shift;
    t.flags = PVCLOCK_TSC_STABLE_BIT;          /* one function of one TSC for every vCPU */
    write_versioned(vm, v->system_time_msr & ~KVM_MSR_ENABLED, &t, sizeof(t));
    v->pvclock_generation = generation;
    v->pvclock_tsc_offset = offset;
}

int root_kvmclock_msr(uint32_t index)
{
    return index == MSR_KVM_WALL_CLOCK_NEW || index == MSR_KVM_SYSTEM_TIME_NEW;
}

int root_msr_get(root_vcpu_t *v, uint32_t index, uint64_t *value)
{
    switch (index) {
    case MSR_KVM_WALL_CLOCK_NEW: *value = v->vm->wall_clock_msr; return 0;
    case MSR_KVM_SYSTEM_TIME_NEW: *value = v->system_time_msr; return 0;
    }
    return 1;
}

int root_msr_set(root_vcpu_t *v, uint32_t index, uint64_t value)
{
    switch (index) {
    case MSR_KVM_WALL_CLOCK_NEW:
        v->vm->wall_clock_msr = value;
        write_wall_clock(v->vm, value);
        return 0;
    case MSR_KVM_SYSTEM_TIME_NEW:
        v->system_time_msr = value;
        v->pvclock_generation = 0;   /* never a VM's generation: rewrite before the next entry */
        root_kvmclock_refresh(v);
        return 0;
    }
    return 1;
}
