/* KVM_RUN's inner loop in root mode: enter the guest, and handle the exits that need
 * nothing from Python here, entering again at once (KVM's vmx_handle_exit for the
 * reasons it never takes to userspace).  Every exit handled here is counted with its
 * handling time in the vCPU's statistics, which kvm/ reads and extends. */
#include <stdlib.h>
#include <time.h>
#include "root.h"

enum { MSR_READ = 0, MSR_WRITE = 1 };

root_vcpu_t *root_vcpu_new(root_vm_t *vm, cpu_t *cpu, uint32_t apic_id)
{
    root_vcpu_t *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->vm = vm;
    v->cpu = cpu;
    v->apic_id = apic_id;
    return v;
}

void root_vcpu_free(root_vcpu_t *v)
{
    if (!v)
        return;
    free(v->cpuid);
    free(v);
}

struct kvm_exit_stats *root_vcpu_stats(root_vcpu_t *v) { return &v->stats; }
void root_vcpu_set_xcr0_supported(root_vcpu_t *v, uint64_t mask) { v->xcr0_supported = mask; }

void root_raise_exception(root_vcpu_t *v, uint32_t vector, int32_t error_code)
{
    v->exception_pending = 1;
    v->exception_vector = vector;
    v->exception_error = error_code;
}

int root_vcpu_take_exception(root_vcpu_t *v, uint32_t *vector, int32_t *error_code)
{
    if (!v->exception_pending)
        return 0;
    v->exception_pending = 0;
    *vector = v->exception_vector;
    *error_code = v->exception_error;
    return 1;
}

void root_advance_rip(cpu_t *cpu)
{
    uint64_t rip = root_vmread(cpu, GUEST_RIP) + root_vmread(cpu, VM_EXIT_INSTRUCTION_LEN);
    if (rip >> 32) {   /* past 4 GiB: only 64-bit code keeps the high half */
        int code64 = (root_vmread(cpu, GUEST_IA32_EFER) & EFER_LMA) &&
                     (root_vmread(cpu, GUEST_CS_AR_BYTES) & AR_L);
        if (!code64)
            rip &= 0xffffffffull;
    }
    root_vmwrite(cpu, GUEST_RIP, rip);
    uint64_t intr = root_vmread(cpu, GUEST_INTERRUPTIBILITY_INFO);
    if (intr & 3)
        root_vmwrite(cpu, GUEST_INTERRUPTIBILITY_INFO, intr & ~3ull);
}

/* XSETBV exits unconditionally: load XCR0 as the instruction would (SDM Vol. 2). */
static int handle_xsetbv(root_vcpu_t *v)
{
    cpu_t *cpu = v->cpu;
    if (!(root_guest_cr4(cpu) & CR4_OSXSAVE)) {
        root_raise_exception(v, EXC_UD, -1);
        return 1;
    }
    uint64_t gprs[16];
    cpu_get_gprs(cpu, gprs);
    uint64_t value = (gprs[R_AX] & 0xffffffffull) | ((gprs[R_DX] & 0xffffffffull) << 32);
    int cpl = (int)AR_DPL(root_vmread(cpu, GUEST_SS_AR_BYTES));
    if (cpl || (uint32_t)gprs[R_CX] || (value & ~v->xcr0_supported) || !(value & 1)) {
        root_raise_exception(v, EXC_GP, 0);
        return 1;
    }
    cpu_set_xcr0(cpu, value);
    root_advance_rip(cpu);
    return 1;
}

/* RDMSR/WRMSR of an MSR implemented here; the others are kvm/'s (Python) to decide. */
static int handle_msr(root_vcpu_t *v, int write)
{
    cpu_t *cpu = v->cpu;
    uint64_t gprs[16];
    cpu_get_gprs(cpu, gprs);
    uint32_t index = (uint32_t)gprs[R_CX];
    if (!root_kvmclock_msr(index))
        return 0;
    if (write) {
        root_msr_set(v, index, (gprs[R_AX] & 0xffffffffull) | ((gprs[R_DX] & 0xffffffffull) << 32));
    } else {
        uint64_t value = 0;
        root_msr_get(v, index, &value);
        gprs[R_AX] = value & 0xffffffffull;
        gprs[R_DX] = value >> 32;
        cpu_set_gprs(cpu, gprs);
    }
    root_advance_rip(cpu);
    return 1;
}

/* Guest RAM that EPT does not map yet; anything else is MMIO, emulated by kvm/. */
static int handle_ept_violation(root_vcpu_t *v)
{
    uint64_t gpa = root_vmread(v->cpu, GUEST_PHYSICAL_ADDRESS);
    int write = (root_vmread(v->cpu, EXIT_QUALIFICATION) & 2) != 0;
    return root_ept_fault_in(v->vm, gpa, write) > 0;
}

/* 1 when the exit was handled here and the guest may be entered again. */
static int handle_exit(root_vcpu_t *v, uint32_t basic)
{
    switch (basic) {
    case EXIT_REASON_CPUID: root_handle_cpuid(v); return 1;
    case EXIT_REASON_XSETBV: return handle_xsetbv(v);
    case EXIT_REASON_MSR_READ: return handle_msr(v, MSR_READ);
    case EXIT_REASON_MSR_WRITE: return handle_msr(v, MSR_WRITE);
    case EXIT_REASON_EPT_VIOLATION: return handle_ept_violation(v);
    case EXIT_REASON_IO_INSTRUCTION: return root_coalesced_pio(v);
    }
    return 0;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void root_vcpu_set_report_exits(root_vcpu_t *v, int enabled)
{
    v->report_exits = enabled;
}

void root_vcpu_reported(root_vcpu_t *v, uint32_t *reason, uint64_t *rip, int *completed)
{
    *reason = v->reported_reason;
    *rip = v->reported_rip;
    *completed = v->reported_completed;
}

int root_vcpu_run(root_vcpu_t *v)
{
    cpu_t *cpu = v->cpu;
    for (;;) {
        root_kvmclock_refresh(v);
        int rc = v->launched ? vmx_vmresume(cpu) : vmx_vmlaunch(cpu);
        if (rc != VMX_EXITED)
            return rc;
        uint32_t reason = (uint32_t)root_vmread(cpu, VM_EXIT_REASON);
        if (reason & EXIT_REASON_FAILED_VMENTRY)
            return rc;
        v->launched = 1;
        uint64_t start = now_ns();
        /* an event whose delivery the exit cut short: kvm/ injects it again */
        if (root_vmread(cpu, IDT_VECTORING_INFO_FIELD) & INTR_INFO_VALID)
            return rc;
        uint32_t basic = reason & 0xffff;
        uint64_t proc = root_vmread(cpu, CPU_BASED_VM_EXEC_CONTROL);
        /* kvm/ traces exits, and owes a single-stepped instruction completed here its
         * step (kvm_skip_emulated_instruction): only then is the exit reported */
        int stepping = (proc & CPU_MONITOR_TRAP_FLAG) || (root_vmread(cpu, GUEST_RFLAGS) & F_TF);
        int watched = v->report_exits || stepping;
        uint64_t rip = watched ? root_vmread(cpu, GUEST_RIP) : 0;
        if (basic >= 128 || !handle_exit(v, basic))
            return rc;
        v->stats.count[basic]++;
        v->stats.time_ns[basic] += now_ns() - start;
        if (watched) {
            int completed = root_vmread(cpu, GUEST_RIP) != rip;
            if (v->report_exits || completed) {
                v->reported_reason = reason;
                v->reported_rip = rip;
                v->reported_completed = completed;
                return ROOT_RUN_REPORTED;
            }
        }
        /* kvm/ injects what is queued and watches for the windows it asked for */
        if (v->exception_pending || (proc & (CPU_INTR_WINDOW_EXITING | CPU_NMI_WINDOW_EXITING)))
            return ROOT_RUN_HANDLED;
    }
}
