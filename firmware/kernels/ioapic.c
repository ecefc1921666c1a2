/*
 * I/O APIC test kernel (one CPU): the 8259s masked, the PIT's IRQ 0 through I/O APIC pin
 * 2 (edge-triggered, as the MP table's interrupt entries say) and the RTC's periodic IRQ 8
 * through pin 8 programmed level-triggered, so that the remote IRR holds the pin until
 * the local APIC's EOI. Prints the same lines under QEMU and pyhv.
 */
#include <stdint.h>

#include "apic.h"
#include "debug_exit.h"
#include "desc.h"
#include "io.h"
#include "pic.h"
#include "serial.h"
#include "trap.h"

#define VEC_PIT 0x30
#define VEC_RTC 0x31
#define PIT_HZ 1193182u

static volatile uint32_t pit_ticks, rtc_ticks;
static volatile uint32_t rtc_entry_in_handler, rtc_tmr_in_handler;

static uint8_t cmos(uint8_t reg)
{
    outb(0x70, reg);
    return inb(0x71);
}

static void cmos_write(uint8_t reg, uint8_t value)
{
    outb(0x70, reg);
    outb(0x71, value);
}

static void on_pit(struct trap_frame *f)
{
    (void)f;
    pit_ticks++;
    lapic_eoi();
}

static void on_rtc(struct trap_frame *f)
{
    (void)f;
    if (rtc_ticks++ == 0) {
        rtc_entry_in_handler = ioapic_read(IOAPIC_REDTBL(8));
        rtc_tmr_in_handler = lapic_read(LAPIC_TMR + 0x10);
    }
    cmos(0x0c);                             /* the RTC lowers IRQ 8 */
    lapic_eoi();                            /* and the EOI clears the remote IRR */
}

void kmain(void)
{
    serial_init();
    printf("ioapic test\n");
    pic_disable();
    gdt_install();
    trap_init();
    trap_set_handler(VEC_PIT, on_pit);
    trap_set_handler(VEC_RTC, on_rtc);
    trap_set_handler(PIC_VECTOR_BASE + 7, on_pit);      /* a spurious 8259 IRQ 7 is harmless */

    printf("version: 0x%08x\n", ioapic_read(IOAPIC_VERSION));
    printf("pin 0: 0x%08x 0x%08x\n", ioapic_read(IOAPIC_REDTBL(0)), ioapic_read(IOAPIC_REDTBL(0) + 1));
    ioapic_route(2, VEC_PIT, lapic_id());
    printf("pin 2: 0x%08x\n", ioapic_read(IOAPIC_REDTBL(2)));

    uint16_t divisor = (uint16_t)(PIT_HZ / 1000);
    outb(0x43, 0x34);                       /* channel 0, lo/hi, rate generator */
    outb(0x40, (uint8_t)divisor);
    outb(0x40, (uint8_t)(divisor >> 8));
    __asm__ volatile("sti");
    while (pit_ticks < 20)
        __asm__ volatile("hlt");
    ioapic_route(2, IOAPIC_MASKED | VEC_PIT, lapic_id());
    printf("pit through pin 2: 20 or more ticks\n");

    ioapic_route(8, IOAPIC_LEVEL | VEC_RTC, lapic_id());
    cmos_write(0x0a, 0x26);                 /* 1024 Hz periodic rate */
    cmos_write(0x0b, (uint8_t)(cmos(0x0b) | 0x40));   /* periodic interrupt enable */
    while (rtc_ticks < 10)
        __asm__ volatile("hlt");
    cmos_write(0x0b, (uint8_t)(cmos(0x0b) & ~0x40));
    cmos(0x0c);
    printf("rtc through pin 8 (level): 10 or more ticks\n");
    printf("remote irr in the handler: %s\n", rtc_entry_in_handler & IOAPIC_REMOTE_IRR ? "yes" : "no");
    printf("tmr bit in the handler: %s\n", rtc_tmr_in_handler & (1u << (VEC_RTC - 0x20)) ? "yes" : "no");
    printf("pin 8 after eoi: 0x%08x\n", ioapic_read(IOAPIC_REDTBL(8)));
    ioapic_route(8, IOAPIC_MASKED | IOAPIC_LEVEL | VEC_RTC, lapic_id());
    printf("ioapic test done\n");
    debug_exit(0x15);
}
