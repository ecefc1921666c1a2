/*
 * The local APIC accesses a kernel makes all the time, in loops (xv6's mycpu() reads the
 * APIC ID about 1.2 million times while xv6 boots): the APIC ID read "reads=N" times
 * (default 100000), the TPR raised and lowered and self-IPIs taken and ended with an EOI
 * "ipis=M" times each (default 1000), then the RTC's periodic interrupt through I/O
 * APIC pin 8, level-triggered, whose EOI must reach the I/O APIC for the next one to
 * come. With "x2apic" on the command line the same through the x2APIC MSRs. With "hold"
 * the kernel then stays with the TPR at 0x20, vector 0x61 in service and 0x52 requested
 * (below the processor priority), halted, for the monitor's "info lapic".
 *
 * Under APIC virtualization none of the reads, TPR writes, self-IPIs or edge EOIs
 * exits; without it each one does. Prints the same lines under QEMU (without x2apic)
 * and pyhv.
 */
#include <stdint.h>

#include "apic.h"
#include "cpu.h"
#include "debug_exit.h"
#include "desc.h"
#include "io.h"
#include "multiboot.h"
#include "pic.h"
#include "serial.h"
#include "string.h"
#include "trap.h"

#define VEC_IPI 0x60
#define VEC_RTC 0x31
#define VEC_HELD 0x61
#define VEC_BELOW 0x52
#define RTC_TICKS 10

static volatile uint32_t ipis, rtc_ticks;
static int x2apic_mode;

static uint32_t number_after(const char *cmdline, const char *key, uint32_t fallback)
{
    const char *p = strstr(cmdline, key);
    if (!p)
        return fallback;
    uint32_t n = 0;
    for (p += strlen(key); *p >= '0' && *p <= '9'; p++)
        n = n * 10 + (uint32_t)(*p - '0');
    return n;
}

static uint32_t apic_read(uint32_t reg)
{
    return x2apic_mode ? (uint32_t)rdmsr(MSR_X2APIC(reg)) : lapic_read(reg);
}

static void apic_write(uint32_t reg, uint32_t value)
{
    if (x2apic_mode)
        wrmsr(MSR_X2APIC(reg), value);
    else
        lapic_write(reg, value);
}

static void self_ipi(uint8_t vector)
{
    if (x2apic_mode)
        wrmsr(MSR_X2APIC_SELF_IPI, vector);
    else
        lapic_write(LAPIC_ICR, APIC_DEST_SELF | vector);
}

static void on_ipi(struct trap_frame *f)
{
    (void)f;
    ipis++;
    apic_write(LAPIC_EOI, 0);
}

static void on_rtc(struct trap_frame *f)
{
    (void)f;
    rtc_ticks++;
    outb(0x70, 0x0c);                       /* reading register C lowers IRQ 8 */
    inb(0x71);
    apic_write(LAPIC_EOI, 0);               /* and the EOI clears the remote IRR */
}

/* Vector 0x61 stays in service: 0x52 below it stays requested. */
static void on_held(struct trap_frame *f)
{
    (void)f;
    self_ipi(VEC_BELOW);
    printf("holding: tpr 0x%02x, 0x%02x in service, 0x%02x requested\n", apic_read(LAPIC_TPR), VEC_HELD,
           VEC_BELOW);
    for (;;)
        __asm__ volatile("sti; hlt");
}

void kmain(uint32_t magic, struct multiboot_info *mbi)
{
    const char *cmdline = magic == MULTIBOOT_BOOTLOADER_MAGIC && (mbi->flags & MULTIBOOT_INFO_CMDLINE)
                          ? (const char *)mbi->cmdline : "";
    uint32_t reads = number_after(cmdline, "reads=", 100000), rounds = number_after(cmdline, "ipis=", 1000);
    serial_init();
    printf("apic loop test\n");
    pic_disable();
    gdt_install();
    trap_init();
    trap_set_handler(VEC_IPI, on_ipi);
    trap_set_handler(VEC_RTC, on_rtc);
    trap_set_handler(VEC_HELD, on_held);
    if (strstr(cmdline, "x2apic")) {
        wrmsr(MSR_IA32_APIC_BASE, rdmsr(MSR_IA32_APIC_BASE) | APIC_BASE_EXTD);
        x2apic_mode = 1;
    }

    uint32_t id = apic_read(LAPIC_ID), same = 0;
    for (uint32_t i = 0; i < reads; i++)
        same += apic_read(LAPIC_ID) == id;
    printf("apic id reads: %u, the same: %s\n", reads, same == reads ? "yes" : "no");

    __asm__ volatile("sti");
    for (uint32_t i = 0; i < rounds; i++) {
        apic_write(LAPIC_TPR, 0x70);        /* holds the self-IPI back ... */
        self_ipi(VEC_IPI);
        if (ipis != i)
            break;
        apic_write(LAPIC_TPR, 0);           /* ... until the TPR comes down */
        for (int spin = 0; spin < 1000 && ipis != i + 1; spin++)
            cpu_relax();
        if (ipis != i + 1)
            break;
    }
    printf("self ipis below and above the tpr: %u of %u taken in time\n", ipis, rounds);
    printf("isr after the eois: 0x%08x, tpr 0x%02x\n", apic_read(LAPIC_ISR + 0x20), apic_read(LAPIC_TPR));

    ioapic_route(8, IOAPIC_LEVEL | VEC_RTC, x2apic_mode ? id : id >> 24);
    outb(0x70, 0x0a);
    outb(0x71, 0x26);                       /* 1024 Hz periodic rate */
    outb(0x70, 0x0b);
    uint8_t b = inb(0x71);
    outb(0x70, 0x0b);
    outb(0x71, (uint8_t)(b | 0x40));        /* periodic interrupt enable */
    while (rtc_ticks < RTC_TICKS)
        __asm__ volatile("hlt");
    outb(0x70, 0x0b);
    outb(0x71, b);
    ioapic_route(8, IOAPIC_MASKED | IOAPIC_LEVEL | VEC_RTC, 0);
    printf("rtc through pin 8 (level): %u or more ticks\n", RTC_TICKS);
    if (strstr(cmdline, "hold")) {
        apic_write(LAPIC_TPR, 0x20);
        self_ipi(VEC_HELD);
    }
    printf("apic loop test done\n");
    debug_exit(0x17);
}
