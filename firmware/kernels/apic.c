/*
 * Local APIC test kernel (one CPU): the registers as the firmware leaves them, task and
 * processor priority, self-IPIs taken in priority order, an NMI IPI to itself, and the
 * timer in periodic and one-shot modes with the divide configuration. Prints the same
 * lines under QEMU and pyhv.
 *
 * With "tsc-deadline" on the command line it also runs the TSC-deadline timer, and with
 * "x2apic" the x2APIC MSR interface with its #GP rules: QEMU's TCG offers neither, so
 * those lines are pyhv's alone.
 */
#include <stdint.h>

#include "apic.h"
#include "cpu.h"
#include "debug_exit.h"
#include "desc.h"
#include "multiboot.h"
#include "pic.h"
#include "serial.h"
#include "string.h"
#include "trap.h"

#define VEC_TIMER    0x40
#define VEC_ONESHOT  0x41
#define VEC_DEADLINE 0x42
#define VEC_SPURIOUS 0xff
#define WAIT_CYCLES  30000000000ull     /* TSC cycles to wait for an interrupt: seconds */

static volatile uint32_t count[256];
static volatile uint32_t order[8], norder;
static volatile uint32_t isr_seen, ppr_seen, tmr_seen;
static volatile uint64_t tsc_at_interrupt;
static int x2apic_mode;

static void eoi(void)
{
    if (x2apic_mode)
        wrmsr(MSR_X2APIC(LAPIC_EOI), 0);
    else
        lapic_eoi();
}

static void on_interrupt(struct trap_frame *f)
{
    count[f->vector]++;
    if (norder < 8)
        order[norder++] = f->vector;
    if (f->vector == 0x50) {
        isr_seen = lapic_read(LAPIC_ISR + 0x20);
        ppr_seen = lapic_read(LAPIC_PPR);
        tmr_seen = lapic_read(LAPIC_TMR + 0x20);
    }
    if (f->vector == VEC_DEADLINE)
        tsc_at_interrupt = rdtsc();
    if (f->vector != 2 && f->vector != VEC_SPURIOUS)
        eoi();
}

/* Wait (interrupts on) until count[VECTOR] reaches N; 0 on a timeout. */
static int wait_count(int vector, uint32_t n)
{
    for (uint64_t start = rdtsc(); rdtsc() - start < WAIT_CYCLES; cpu_relax())
        if (count[vector] >= n)
            return 1;
    return 0;
}

static void registers(void)
{
    printf("cpuid apic: %s\n", cpuid(1, 0).edx & (1u << 9) ? "yes" : "no");
    printf("apic base: 0x%08x\n", (uint32_t)rdmsr(MSR_IA32_APIC_BASE));
    printf("id: 0x%08x version: 0x%08x\n", lapic_read(LAPIC_ID), lapic_read(LAPIC_VERSION));
    printf("svr: 0x%08x lint0: 0x%08x lint1: 0x%08x\n", lapic_read(LAPIC_SVR),
           lapic_read(LAPIC_LVT_LINT0), lapic_read(LAPIC_LVT_LINT1));
    printf("tpr: 0x%02x ppr: 0x%02x ldr: 0x%08x dfr: 0x%08x\n", lapic_read(LAPIC_TPR),
           lapic_read(LAPIC_PPR), lapic_read(LAPIC_LDR), lapic_read(LAPIC_DFR));
    printf("lvt timer: 0x%08x error: 0x%08x\n", lapic_read(LAPIC_LVT_TIMER), lapic_read(LAPIC_LVT_ERROR));
    lapic_write(LAPIC_LDR, 0x5a000000);
    lapic_write(LAPIC_DFR, 0x0fffffff);
    printf("ldr: 0x%08x dfr (cluster): 0x%08x\n", lapic_read(LAPIC_LDR), lapic_read(LAPIC_DFR));
    lapic_write(LAPIC_DFR, 0xffffffff);
    lapic_write(LAPIC_LDR, 0);
}

static void priorities(void)
{
    lapic_write(LAPIC_TPR, 0x60);
    printf("tpr 0x60: ppr 0x%02x\n", lapic_read(LAPIC_PPR));
    lapic_write(LAPIC_ICR, APIC_DEST_SELF | 0x50);
    printf("self ipi below tpr: taken %u, irr 0x%08x\n", count[0x50], lapic_read(LAPIC_IRR + 0x20));
    lapic_write(LAPIC_TPR, 0);
    int ok = wait_count(0x50, 1);
    printf("self ipi after tpr 0: taken %u%s\n", count[0x50], ok ? "" : " (timeout)");
    printf("in the handler: isr 0x%08x ppr 0x%02x tmr 0x%08x\n", isr_seen, ppr_seen, tmr_seen);

    __asm__ volatile("cli");
    norder = 0;
    lapic_write(LAPIC_ICR, APIC_DEST_SELF | 0x51);
    lapic_write(LAPIC_ICR, APIC_DEST_SELF | 0x62);
    lapic_write(LAPIC_ICR, APIC_DEST_SELF | 0x55);
    printf("pending: irr 0x%08x 0x%08x\n", lapic_read(LAPIC_IRR + 0x20), lapic_read(LAPIC_IRR + 0x30));
    __asm__ volatile("sti");
    wait_count(0x51, 1);
    printf("taken in order: 0x%02x 0x%02x 0x%02x\n", order[0], order[1], order[2]);
    printf("isr after eoi: 0x%08x\n", lapic_read(LAPIC_ISR + 0x20) | lapic_read(LAPIC_ISR + 0x30));

    lapic_ipi(lapic_id(), APIC_DM_NMI | APIC_LEVEL_ASSERT);
    int nmi = wait_count(2, 1);
    printf("nmi ipi to itself: %u%s\n", count[2], nmi ? "" : " (timeout)");
}

static void timer(void)
{
    lapic_write(LAPIC_TIMER_DCR, 0x3);                      /* divide by 16 */
    printf("dcr: 0x%x\n", lapic_read(LAPIC_TIMER_DCR));
    lapic_write(LAPIC_LVT_TIMER, APIC_TIMER_PERIODIC | VEC_TIMER);
    lapic_write(LAPIC_TIMER_ICR, 62500);                    /* 1 ms at 1 GHz / 16 */
    uint32_t c1 = lapic_read(LAPIC_TIMER_CCR), c2 = lapic_read(LAPIC_TIMER_CCR);
    printf("current count counts down within the initial count: %s\n",
           c1 <= 62500 && c2 <= c1 ? "yes" : "no");
    while (count[VEC_TIMER] < 20)
        __asm__ volatile("hlt");
    lapic_write(LAPIC_LVT_TIMER, APIC_LVT_MASKED | APIC_TIMER_PERIODIC | VEC_TIMER);
    printf("periodic: 20 or more ticks\n");
    lapic_write(LAPIC_TIMER_ICR, 0);
    printf("stopped: current count %u\n", lapic_read(LAPIC_TIMER_CCR));

    lapic_write(LAPIC_TIMER_DCR, 0xb);                      /* divide by 1 */
    lapic_write(LAPIC_LVT_TIMER, VEC_ONESHOT);
    lapic_write(LAPIC_TIMER_ICR, 2000000);                  /* 2 ms */
    while (count[VEC_ONESHOT] < 1)
        __asm__ volatile("hlt");
    pit_delay_us(10000);
    printf("one-shot: %u tick, current count %u\n", count[VEC_ONESHOT], lapic_read(LAPIC_TIMER_CCR));
    lapic_write(LAPIC_LVT_TIMER, APIC_LVT_MASKED | VEC_ONESHOT);
    lapic_write(LAPIC_TIMER_ICR, 1000000);
    pit_delay_us(5000);
    printf("one-shot while masked: %u tick\n", count[VEC_ONESHOT]);
    lapic_write(LAPIC_TIMER_ICR, 0);
}

static void tsc_deadline(void)
{
    printf("cpuid tsc-deadline: %s\n", cpuid(1, 0).ecx & (1u << 24) ? "yes" : "no");
    lapic_write(LAPIC_LVT_TIMER, APIC_TIMER_TSC_DEADLINE | VEC_DEADLINE);
    lapic_write(LAPIC_TIMER_ICR, 12345);
    printf("initial count in tsc-deadline mode: %u\n", lapic_read(LAPIC_TIMER_ICR));
    uint64_t far = rdtsc() + 10000000000ull;                /* seconds away: still armed when read */
    wrmsr(MSR_IA32_TSC_DEADLINE, far);
    printf("deadline armed: %s\n", rdmsr(MSR_IA32_TSC_DEADLINE) == far ? "yes" : "no");
    uint64_t deadline = rdtsc() + 10000000;                 /* a new deadline replaces it */
    wrmsr(MSR_IA32_TSC_DEADLINE, deadline);
    while (count[VEC_DEADLINE] < 1)
        __asm__ volatile("hlt");
    printf("tsc-deadline: %u tick, tsc past the deadline: %s, msr now 0x%x\n", count[VEC_DEADLINE],
           tsc_at_interrupt >= deadline ? "yes" : "no", (uint32_t)rdmsr(MSR_IA32_TSC_DEADLINE));
    wrmsr(MSR_IA32_TSC_DEADLINE, 1);                        /* in the past: at once */
    int ok = wait_count(VEC_DEADLINE, 2);
    printf("deadline in the past: %s\n", ok ? "fires" : "does not fire");
    wrmsr(MSR_IA32_TSC_DEADLINE, rdtsc() + 10000000000ull);
    wrmsr(MSR_IA32_TSC_DEADLINE, 0);                        /* disarmed */
    pit_delay_us(5000);
    printf("disarmed: %u ticks\n", count[VEC_DEADLINE]);
    lapic_write(LAPIC_LVT_TIMER, APIC_LVT_MASKED);
}

#define FL 0x2

static void x2apic(void)
{
    printf("cpuid x2apic: %s\n", cpuid(1, 0).ecx & (1u << 21) ? "yes" : "no");
    uint32_t base = (uint32_t)rdmsr(MSR_IA32_APIC_BASE);
    wrmsr(MSR_IA32_APIC_BASE, base | APIC_BASE_EXTD);
    x2apic_mode = 1;
    printf("x2apic base: 0x%08x\n", (uint32_t)rdmsr(MSR_IA32_APIC_BASE));
    printf("x2apic id: 0x%08x version: 0x%08x ldr: 0x%08x svr: 0x%08x\n",
           (uint32_t)rdmsr(MSR_X2APIC(LAPIC_ID)), (uint32_t)rdmsr(MSR_X2APIC(LAPIC_VERSION)),
           (uint32_t)rdmsr(MSR_X2APIC(LAPIC_LDR)), (uint32_t)rdmsr(MSR_X2APIC(LAPIC_SVR)));
    wrmsr(MSR_X2APIC_SELF_IPI, 0x57);
    int ok = wait_count(0x57, 1);
    printf("x2apic self ipi: %u%s\n", count[0x57], ok ? "" : " (timeout)");
    wrmsr(MSR_X2APIC_SELF_IPI, 5);                                    /* an illegal vector */
    wrmsr(MSR_X2APIC(LAPIC_ESR), 0);
    printf("x2apic self ipi of vector 5: esr 0x%02x\n", (uint32_t)rdmsr(MSR_X2APIC(LAPIC_ESR)));
    wrmsr(MSR_X2APIC(LAPIC_ICR), APIC_DM_NMI | APIC_LEVEL_ASSERT);    /* to x2APIC ID 0 */
    ok = wait_count(2, 2);
    printf("x2apic nmi ipi: %u%s icr 0x%08x\n", count[2], ok ? "" : " (timeout)",
           (uint32_t)rdmsr(MSR_X2APIC(LAPIC_ICR)));
    TRY("wrmsr id", FL, "wrmsr", : : "c"(MSR_X2APIC(LAPIC_ID)), "a"(0), "d"(0));
    TRY("rdmsr eoi", FL, "rdmsr", : : "c"(MSR_X2APIC(LAPIC_EOI)) : "eax", "edx");
    TRY("wrmsr eoi 1", FL, "wrmsr", : : "c"(MSR_X2APIC(LAPIC_EOI)), "a"(1), "d"(0));
    TRY("rdmsr dfr", FL, "rdmsr", : : "c"(MSR_X2APIC(LAPIC_DFR)) : "eax", "edx");
    TRY("rdmsr icr2", FL, "rdmsr", : : "c"(MSR_X2APIC(LAPIC_ICR2)) : "eax", "edx");
    TRY("wrmsr tpr 0x100", FL, "wrmsr", : : "c"(MSR_X2APIC(LAPIC_TPR)), "a"(0x100), "d"(0));
    TRY("wrmsr tpr high", FL, "wrmsr", : : "c"(MSR_X2APIC(LAPIC_TPR)), "a"(0), "d"(1));
    TRY("rdmsr self ipi", FL, "rdmsr", : : "c"(MSR_X2APIC_SELF_IPI) : "eax", "edx");
    TRY("wrmsr tpr 0x10", FL, "wrmsr", : : "c"(MSR_X2APIC(LAPIC_TPR)), "a"(0x10), "d"(0));
    TRY("back to xapic", FL, "wrmsr", : : "c"(MSR_IA32_APIC_BASE), "a"(base), "d"(0));
    TRY("disable", FL, "wrmsr", : : "c"(MSR_IA32_APIC_BASE), "a"(base & ~(APIC_BASE_ENABLE | APIC_BASE_EXTD)), "d"(0));
    x2apic_mode = 0;
    TRY("enable xapic", FL, "wrmsr", : : "c"(MSR_IA32_APIC_BASE), "a"(base), "d"(0));
    printf("xapic again: svr 0x%08x tpr 0x%02x id 0x%08x\n", lapic_read(LAPIC_SVR), lapic_read(LAPIC_TPR),
           lapic_read(LAPIC_ID));
}

void kmain(uint32_t magic, struct multiboot_info *mbi)
{
    const char *cmdline = magic == MULTIBOOT_BOOTLOADER_MAGIC && (mbi->flags & MULTIBOOT_INFO_CMDLINE)
                          ? (const char *)mbi->cmdline : "";
    int want_deadline = strstr(cmdline, "tsc-deadline") != NULL, want_x2apic = strstr(cmdline, "x2apic") != NULL;
    serial_init();
    printf("apic test\n");
    pic_disable();
    gdt_install();
    trap_init();
    for (int v = 0x40; v < 0x100; v++)
        trap_set_handler(v, on_interrupt);
    trap_set_handler(2, on_interrupt);
    registers();
    __asm__ volatile("sti");
    priorities();
    timer();
    if (want_deadline)
        tsc_deadline();
    if (want_x2apic)
        x2apic();
    printf("apic test done\n");
    debug_exit(0x14);
}
