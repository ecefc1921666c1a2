/*
 * SMP test kernel: finds the processors in the MP table (as xv6 does), starts each
 * application processor with INIT, INIT de-assert and two SIPIs (one at a time, each
 * checking in before the next starts), and then, with every processor at work:
 *
 *   - a ring of IPIs: each processor sends RING_IPIS fixed IPIs to the next one,
 *     waiting for each to arrive before it sends the next;
 *   - a counter that every processor increments INCREMENTS times with LOCK INC;
 *   - NMI IPIs, an IPI to all but itself, a logical (flat) IPI to all application
 *     processors and a lowest-priority one (all TPRs are 0: the first takes it);
 *   - an INIT-SIPI to a running application processor, which starts it again.
 *
 * Only the bootstrap processor prints, after the others have reported through memory,
 * so the output is the same under QEMU and pyhv.
 */
#include <stdint.h>

#include "apic.h"
#include "cpu.h"
#include "debug_exit.h"
#include "desc.h"
#include "pic.h"
#include "serial.h"
#include "string.h"
#include "trap.h"

#define AP_VECTOR     0x08            /* SIPI vector: the APs start at 0x8000 */
#define MAX_CPUS      16
#define STACK_SIZE    4096
#define VEC_WAKE      0x40
#define VEC_RING      0x41
#define VEC_BROADCAST 0x42
#define VEC_LOGICAL   0x43
#define VEC_LOWEST    0x44
#define RING_IPIS     50
#define INCREMENTS    100000
#define WAIT_CYCLES   30000000000ull  /* TSC cycles a processor waits for another: seconds */

enum { PHASE_NONE, PHASE_RING, PHASE_COUNT };

extern char ap_trampoline[], ap_trampoline_end[], ap_gdtr[], ap_start_state[];
struct start_state {
    uint32_t edx, cr0;
    uint16_t cs;
} __attribute__((packed));
static struct start_state start_states[MAX_CPUS];
uint32_t ap_stack_top;
static uint8_t ap_stacks[MAX_CPUS][STACK_SIZE] __attribute__((aligned(16)));

static int ncpus;
static uint8_t apic_ids[MAX_CPUS];      /* by processor index; the bootstrap processor first */
static volatile uint32_t started[MAX_CPUS];
static volatile uint32_t phase, done, counter;
static volatile uint32_t ring[MAX_CPUS], nmis[MAX_CPUS], broadcasts[MAX_CPUS], logicals[MAX_CPUS],
    lowests[MAX_CPUS];

static void atomic_inc(volatile uint32_t *p)
{
    __asm__ volatile("lock incl %0" : "+m"(*p) : : "memory");
}

static int wait_until(volatile uint32_t *p, uint32_t n)
{
    for (uint64_t start = rdtsc(); rdtsc() - start < WAIT_CYCLES; cpu_relax())
        if (*p >= n)
            return 1;
    return 0;
}

static int my_index(void)
{
    uint32_t id = lapic_id();
    for (int i = 0; i < ncpus; i++)
        if (apic_ids[i] == id)
            return i;
    return 0;
}

/* ---- the MP table ------------------------------------------------------------------------ */

struct mp_pointer {
    char signature[4];
    uint32_t config;
    uint8_t length, revision, checksum, features[5];
} __attribute__((packed));

struct mp_config {
    char signature[4];
    uint16_t length;
    uint8_t revision, checksum;
    char oem[8], product[12];
    uint32_t oem_table;
    uint16_t oem_size, entries;
    uint32_t lapic;
    uint16_t extended_length;
    uint8_t extended_checksum, reserved;
} __attribute__((packed));

static uint8_t checksum(const void *p, uint32_t len)
{
    uint8_t sum = 0;
    for (uint32_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + ((const uint8_t *)p)[i]);
    return sum;
}

static const struct mp_config *find_mp_config(void)
{
    for (uint32_t a = 0xf0000; a < 0x100000; a += 16) {
        const struct mp_pointer *p = (const struct mp_pointer *)a;
        if (memcmp(p->signature, "_MP_", 4) == 0 && checksum(p, 16) == 0 && p->config) {
            const struct mp_config *c = (const struct mp_config *)p->config;
            return memcmp(c->signature, "PCMP", 4) == 0 ? c : NULL;
        }
    }
    return NULL;
}

/* The enabled processors, the bootstrap processor first; false without an MP table. */
static int find_cpus(void)
{
    const struct mp_config *c = find_mp_config();
    if (!c)
        return 0;
    const uint8_t *e = (const uint8_t *)(c + 1), *end = (const uint8_t *)c + c->length;
    ncpus = 1;
    while (e < end) {
        if (e[0] != 0) {                    /* everything but processors is 8 bytes long */
            e += 8;
            continue;
        }
        if ((e[3] & 1) && (e[3] & 2))
            apic_ids[0] = e[1];
        else if ((e[3] & 1) && ncpus < MAX_CPUS)
            apic_ids[ncpus++] = e[1];
        e += 20;
    }
    return 1;
}

/* ---- interrupts -------------------------------------------------------------------------- */

static void on_ipi(struct trap_frame *f)
{
    int me = my_index();
    switch (f->vector) {
    case VEC_RING: ring[me]++; break;
    case VEC_BROADCAST: broadcasts[me]++; break;
    case VEC_LOGICAL: logicals[me]++; break;
    case VEC_LOWEST: lowests[me]++; break;
    }
    lapic_eoi();
}

static void on_nmi(struct trap_frame *f)
{
    (void)f;
    nmis[my_index()]++;
}

static void lapic_setup(int me)
{
    lapic_write(LAPIC_SVR, APIC_SVR_ENABLE | 0xff);
    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_LDR, (1u << me) << 24);         /* flat model: one bit per processor */
}

/* ---- the phases ----------------------------------------------------------------------------- */

static void do_phase(uint32_t p, int me)
{
    if (p == PHASE_RING) {
        int next = (me + 1) % ncpus;
        for (uint32_t k = 1; k <= RING_IPIS; k++) {
            lapic_ipi(apic_ids[next], VEC_RING);
            if (!wait_until(&ring[next], k))
                break;
        }
    } else if (p == PHASE_COUNT) {
        for (int i = 0; i < INCREMENTS; i++)
            atomic_inc(&counter);
    }
}

/* Every processor does phase P; returns once all have. */
static int run_phase(uint32_t p)
{
    done = 0;
    phase = p;
    if (ncpus > 1)
        lapic_ipi(0, APIC_DEST_OTHERS | VEC_WAKE);
    do_phase(p, 0);
    atomic_inc(&done);
    return wait_until(&done, (uint32_t)ncpus);
}

void ap_main(void)
{
    idt_install(sizeof(idt) - 1);
    int me = my_index();
    memcpy(&start_states[me], (void *)((AP_VECTOR << 12) + (ap_start_state - ap_trampoline)),
           sizeof(struct start_state));
    lapic_setup(me);
    uint32_t seen = phase;
    atomic_inc(&started[me]);
    for (;;) {
        __asm__ volatile("cli");
        while (phase == seen)
            __asm__ volatile("sti; hlt; cli");
        __asm__ volatile("sti");
        seen = phase;
        do_phase(seen, me);
        atomic_inc(&done);
    }
}

static int start_ap(int index)
{
    uint32_t id = apic_ids[index], before = started[index];
    ap_stack_top = (uint32_t)&ap_stacks[index][STACK_SIZE];
    lapic_ipi(id, APIC_DM_INIT | APIC_LEVEL_ASSERT | APIC_TRIGGER_LEVEL);
    lapic_ipi(id, APIC_DM_INIT | APIC_TRIGGER_LEVEL);          /* de-assert */
    for (int k = 0; k < 2; k++)
        lapic_ipi(id, APIC_DM_STARTUP | AP_VECTOR);
    return wait_until(&started[index], before + 1);
}

static void print_counts(const char *what, volatile uint32_t *counts, int first)
{
    printf("%s:", what);
    for (int i = first; i < ncpus; i++)
        printf(" %u", counts[i]);
    printf("\n");
}

void kmain(void)
{
    serial_init();
    printf("smp test\n");
    pic_disable();
    gdt_install();
    trap_init();
    for (int v = VEC_WAKE; v <= VEC_LOWEST; v++)
        trap_set_handler(v, on_ipi);
    trap_set_handler(2, on_nmi);
    if (!find_cpus()) {
        printf("no MP table\n");
        debug_exit(0x7f);
    }
    printf("processors in the mp table: %d, the bootstrap processor is apic id %u (apic id register %u)\n",
           ncpus, apic_ids[0], lapic_id());
    lapic_setup(0);
    __asm__ volatile("sti");

    memcpy((void *)(AP_VECTOR << 12), ap_trampoline, (uint32_t)(ap_trampoline_end - ap_trampoline));
    struct { uint16_t limit; uint32_t base; } __attribute__((packed)) gdtr = { sizeof(gdt) - 1, (uint32_t)gdt };
    memcpy((void *)((AP_VECTOR << 12) + (ap_gdtr - ap_trampoline)), &gdtr, sizeof(gdtr));
    for (int i = 1; i < ncpus; i++)
        printf("cpu %d (apic id %u): %s\n", i, apic_ids[i], start_ap(i) ? "started" : "did not start");
    for (int i = 1; i < ncpus; i++)
        printf("cpu %d started with cs 0x%04x, cr0 0x%08x, edx the processor signature: %s\n", i,
               start_states[i].cs, start_states[i].cr0, start_states[i].edx == cpuid(1, 0).eax ? "yes" : "no");

    int ok = run_phase(PHASE_RING);
    print_counts(ok ? "ring ipis received" : "ring ipis (timeout)", ring, 0);
    ok = run_phase(PHASE_COUNT);
    printf("lock inc total: %u (%d cpus x %d)%s\n", counter, ncpus, INCREMENTS, ok ? "" : " (timeout)");

    uint32_t aps = 0;
    for (int i = 1; i < ncpus; i++) {
        lapic_ipi(apic_ids[i], APIC_DM_NMI | APIC_LEVEL_ASSERT);
        wait_until(&nmis[i], 1);
        aps |= 1u << i;
    }
    print_counts("nmi ipis received", nmis, 1);
    if (ncpus > 1) {
        lapic_ipi(0, APIC_DEST_OTHERS | VEC_BROADCAST);
        lapic_ipi(aps, APIC_DEST_LOGICAL | VEC_LOGICAL);
        lapic_ipi(aps, APIC_DEST_LOGICAL | APIC_DM_LOWEST | VEC_LOWEST);
        for (int i = 1; i < ncpus; i++) {
            wait_until(&broadcasts[i], 1);
            wait_until(&logicals[i], 1);
        }
        for (uint64_t start = rdtsc(); rdtsc() - start < WAIT_CYCLES; cpu_relax()) {
            uint32_t sum = 0;
            for (int i = 1; i < ncpus; i++)
                sum += lowests[i];
            if (sum)
                break;
        }
    }
    print_counts("ipis to all but self received", broadcasts, 1);
    print_counts("logical ipis received", logicals, 1);
    print_counts("lowest-priority ipis received", lowests, 1);
    if (ncpus > 1)
        printf("cpu 1 started again by init-sipi: %s\n", start_ap(1) ? "yes" : "no");
    printf("esr: 0x%02x\n", lapic_esr());
    printf("smp test done\n");
    debug_exit(0x16);
}
