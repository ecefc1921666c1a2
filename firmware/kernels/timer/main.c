/*
 * Timer test kernel: the 8259 PIC pair remapped to vectors 0x20/0x28, the 8254 PIT
 * channel 0 at 1 kHz raising IRQ 0, ticks counted while the CPU halts between them;
 * then the PIT's latch and read-back commands, channel 2 through port 0x61, the PIC's
 * IRR/ISR through OCW3, and the RTC's status registers.  Prints the same lines under
 * QEMU and pyhv.
 */
#include <stdint.h>

#include "debug_exit.h"
#include "io.h"
#include "serial.h"

#define PIT_HZ 1193182u
#define TICKS_WANTED 50

volatile uint32_t timer_ticks;
void irq0_entry(void);

struct idt_entry {
    uint16_t offset_lo, selector;
    uint8_t zero, type;
    uint16_t offset_hi;
} __attribute__((packed));

static struct idt_entry idt[256];
static struct { uint16_t limit; uint32_t base; } __attribute__((packed)) idtr;
static uint64_t gdt[3] = { 0, 0x00cf9a000000ffffull, 0x00cf92000000ffffull };
static struct { uint16_t limit; uint32_t base; } __attribute__((packed)) gdtr;

static void set_gate(int vector, void (*handler)(void))
{
    uint32_t a = (uint32_t)handler;
    idt[vector] = (struct idt_entry){ (uint16_t)a, 0x08, 0, 0x8e, (uint16_t)(a >> 16) };
}

static void load_tables(void)
{
    gdtr.limit = sizeof(gdt) - 1;
    gdtr.base = (uint32_t)gdt;
    __asm__ volatile("lgdt %0\n\t"
                     "ljmp $0x08, $1f\n1:\n\t"
                     "mov $0x10, %%ax\n\tmov %%ax, %%ds\n\tmov %%ax, %%es\n\tmov %%ax, %%ss"
                     : : "m"(gdtr) : "eax", "memory");
    idtr.limit = sizeof(idt) - 1;
    idtr.base = (uint32_t)idt;
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

static void pic_remap(void)
{
    outb(0x20, 0x11); outb(0xa0, 0x11);     /* ICW1: edge, cascade, ICW4 */
    outb(0x21, 0x20); outb(0xa1, 0x28);     /* ICW2: vector bases */
    outb(0x21, 0x04); outb(0xa1, 0x02);     /* ICW3: slave on IRQ 2 */
    outb(0x21, 0x01); outb(0xa1, 0x01);     /* ICW4: 8086 mode */
    outb(0x21, 0xfe); outb(0xa1, 0xff);     /* only IRQ 0 */
}

static uint16_t pit_latch(int channel)
{
    outb(0x43, (uint8_t)(channel << 6));    /* counter latch */
    uint8_t lo = inb((uint16_t)(0x40 + channel)), hi = inb((uint16_t)(0x40 + channel));
    return (uint16_t)(lo | hi << 8);
}

static uint8_t cmos(uint8_t reg)
{
    outb(0x70, reg);
    return inb(0x71);
}

void kmain(void)
{
    serial_init();
    printf("timer test\n");
    load_tables();
    set_gate(0x20, irq0_entry);
    pic_remap();
    uint16_t divisor = (uint16_t)(PIT_HZ / 1000);
    outb(0x43, 0x34);                       /* channel 0, lo/hi, mode 2 */
    outb(0x40, (uint8_t)divisor);
    outb(0x40, (uint8_t)(divisor >> 8));
    __asm__ volatile("sti");
    while (timer_ticks < TICKS_WANTED)
        __asm__ volatile("hlt");
    __asm__ volatile("cli");
    printf("ticks: %u or more\n", TICKS_WANTED);

    outb(0x20, 0x0b);                       /* OCW3: read ISR */
    printf("pic isr after eoi: 0x%02x\n", inb(0x20));
    outb(0x20, 0x0a);                       /* OCW3: read IRR */
    printf("pic imr: 0x%02x 0x%02x\n", inb(0x21), inb(0xa1));

    uint16_t a = pit_latch(0), b = pit_latch(0);
    printf("pit channel 0 counts within divisor: %s\n", a <= divisor && b <= divisor ? "yes" : "no");
    outb(0x43, 0xe2);                       /* read-back: status of channel 0 */
    printf("pit read-back status: 0x%02x\n", inb(0x40) & 0x3f);

    outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01));   /* gate channel 2 on, speaker off */
    outb(0x43, 0xb0);                       /* channel 2, lo/hi, mode 0 */
    outb(0x42, 0xff);
    outb(0x42, 0xff);
    uint16_t c1 = pit_latch(2);
    for (volatile int k = 0; k < 20000; k++)
        ;
    uint16_t c2 = pit_latch(2);
    printf("pit channel 2 counts down: %s\n", c2 < c1 ? "yes" : "no");

    printf("rtc register d: 0x%02x\n", cmos(0x0d));
    uint8_t reg_b = cmos(0x0b);
    printf("rtc register b: 0x%02x\n", reg_b);
    uint8_t sec = cmos(0x00), min = cmos(0x02), hour = cmos(0x04);
    int bcd_ok = (sec & 0x0f) < 10 && (sec >> 4) < 6 && (min & 0x0f) < 10 && (min >> 4) < 6 &&
                 hour < 0x24;
    printf("rtc time is bcd: %s\n", bcd_ok ? "yes" : "no");
    printf("cmos base memory: %u KiB\n", cmos(0x15) | cmos(0x16) << 8);
    debug_exit(0x12);
}
