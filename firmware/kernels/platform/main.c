/*
 * Platform test kernel: what a firmware leaves and an operating system finds on QEMU's
 * pc machine.  It walks PCI bus 0 through configuration mechanism #1 (identity, class,
 * command and status, subsystem, interrupt pin and line, BAR sizing), reads the PIIX3's
 * PIRQ routes and the ELCR, the PIIX4 PM function's registers, switches to ACPI mode
 * through the FADT's SMI command, measures the ACPI PM timer against the PIT, takes
 * the SCI on IRQ 9 when the timer's status bit comes up, reads fw_cfg (signature, ID,
 * DMA signature, CPU count, RAM size, etc/e820 by DMA), the HPET's ID, and the ACPI
 * FADT's power management fields; then powers the machine off through PM1a_CNT
 * (SLP_TYP from \_S5, SLP_EN), which ends QEMU with status 0.
 * Prints the same lines under QEMU (-M pc -nodefaults) and pyhv.
 */
#include <stdint.h>

#include "debug_exit.h"
#include "desc.h"
#include "io.h"
#include "serial.h"
#include "string.h"

#define PM_BASE 0x600
#define PM1_STS (PM_BASE + 0)
#define PM1_EN (PM_BASE + 2)
#define PM1_CNT (PM_BASE + 4)
#define PM_TMR (PM_BASE + 8)
#define TMR_STS 0x0001
#define SCI_EN 0x0001
#define SLP_EN 0x2000
#define PM_HZ 3579545u

volatile uint32_t sci_count;
void sci_entry(void);

static uint32_t cfg_addr(int dev, int fn, int reg)
{
    return 0x80000000u | (uint32_t)dev << 11 | (uint32_t)fn << 8 | (uint32_t)reg;
}

static uint32_t cfg_read32(int dev, int fn, int reg)
{
    outl(0xcf8, cfg_addr(dev, fn, reg & ~3));
    return inl(0xcfc);
}

static uint16_t cfg_read16(int dev, int fn, int reg)
{
    outl(0xcf8, cfg_addr(dev, fn, reg & ~3));
    return inw((uint16_t)(0xcfc + (reg & 2)));
}

static uint8_t cfg_read8(int dev, int fn, int reg)
{
    outl(0xcf8, cfg_addr(dev, fn, reg & ~3));
    return inb((uint16_t)(0xcfc + (reg & 3)));
}

static void cfg_write32(int dev, int fn, int reg, uint32_t value)
{
    outl(0xcf8, cfg_addr(dev, fn, reg));
    outl(0xcfc, value);
}

/* The size a BAR decodes (0: no BAR), by writing all-ones and reading back. */
static uint32_t bar_size(int dev, int fn, int bar)
{
    int reg = 0x10 + 4 * bar;
    uint32_t old = cfg_read32(dev, fn, reg);
    cfg_write32(dev, fn, reg, 0xffffffffu);
    uint32_t probe = cfg_read32(dev, fn, reg);
    cfg_write32(dev, fn, reg, old);
    if (!probe)
        return 0;
    return ~(probe & ((probe & 1) ? ~3u : ~15u)) + 1;
}

static void pci_scan(void)
{
    for (int dev = 0; dev < 32; dev++) {
        int functions = 1;
        for (int fn = 0; fn < functions; fn++) {
            uint32_t id = cfg_read32(dev, fn, 0);
            if ((id & 0xffff) == 0xffff)
                continue;
            uint8_t header = cfg_read8(dev, fn, 0x0e);
            if (fn == 0 && (header & 0x80))
                functions = 8;
            uint32_t class_rev = cfg_read32(dev, fn, 0x08);
            printf("pci 00:%02x.%d %04x:%04x class %06x rev %02x hdr %02x cmd %04x sts %04x "
                   "sub %04x:%04x pin %u line %u\n",
                   dev, fn, id & 0xffff, id >> 16, class_rev >> 8, class_rev & 0xff, header,
                   cfg_read16(dev, fn, 0x04), cfg_read16(dev, fn, 0x06), cfg_read16(dev, fn, 0x2c),
                   cfg_read16(dev, fn, 0x2e), cfg_read8(dev, fn, 0x3d), cfg_read8(dev, fn, 0x3c));
            for (int bar = 0; bar < 6; bar++) {
                uint32_t size = bar_size(dev, fn, bar);
                if (size)
                    printf("pci 00:%02x.%d bar%d size 0x%x %s\n", dev, fn, bar, size,
                           (cfg_read32(dev, fn, 0x10 + 4 * bar) & 1) ? "io" : "mem");
            }
        }
    }
    uint32_t absent = cfg_read32(31, 0, 0);
    outl(0xcf8, cfg_addr(0, 0, 0) & 0x7fffffffu);
    printf("absent function reads: 0x%08x, disabled cycle reads: 0x%08x\n", absent, inl(0xcfc));
}

static uint16_t pit2_latch(void)
{
    outb(0x43, 0x80);                       /* counter latch, channel 2 */
    uint8_t lo = inb(0x42), hi = inb(0x42);
    return (uint16_t)(lo | hi << 8);
}

/* Over the same 40 ms, the PM timer (3.579545 MHz) advances three times as far as the
 * PIT's channel 2 (1.193182 MHz) counts down; within 10%, in the best of three tries
 * (a busy host may delay one of the reads that bracket the interval). */
static int pm_rate_ok(void)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01));   /* gate channel 2 on, speaker off */
        outb(0x43, 0xb0);                                     /* channel 2, lo/hi, mode 0 */
        outb(0x42, 0xff);
        outb(0x42, 0xff);
        uint16_t c0 = pit2_latch();
        uint32_t t0 = inl(PM_TMR);
        while (((inl(PM_TMR) - t0) & 0xffffff) < PM_HZ / 25)
            ;
        uint16_t c1 = pit2_latch();
        uint32_t t1 = inl(PM_TMR);
        uint32_t pit = (uint16_t)(c0 - c1), pm = (t1 - t0) & 0xffffff;
        if (pm * 10 > pit * 27 && pm * 10 < pit * 33)
            return 1;
    }
    return 0;
}

static void pm_timer(void)
{
    uint32_t t0 = inl(PM_TMR), top = t0;
    int monotonic = 1;
    for (int i = 0; i < 100; i++) {
        uint32_t t = inl(PM_TMR);
        top |= t;
        if (((t - t0) & 0xffffff) > 0x800000)
            monotonic = 0;
        t0 = t;
    }
    printf("pm timer counts up in 24 bits: %s\n", monotonic && !(top >> 24) ? "yes" : "no");
    printf("pm timer runs at 3.579545 MHz (3 times the PIT, within 10%%): %s\n", pm_rate_ok() ? "yes" : "no");
}

static void pic_init(void)
{
    outb(0x20, 0x11); outb(0xa0, 0x11);     /* ICW1: edge, cascade, ICW4 */
    outb(0x21, 0x20); outb(0xa1, 0x28);     /* ICW2: vector bases */
    outb(0x21, 0x04); outb(0xa1, 0x02);     /* ICW3: slave on IRQ 2 */
    outb(0x21, 0x01); outb(0xa1, 0x01);     /* ICW4: 8086 mode */
    outb(0x21, 0xfb); outb(0xa1, 0xfd);     /* only the cascade and IRQ 9 */
}

static void sci(void)
{
    gdt_install();
    idt_set(0x29, sci_entry, SEL_KCODE, GATE_INT32);
    idt_install(sizeof(idt) - 1);
    pic_init();
    outw(PM1_STS, TMR_STS);                 /* the next status comes at the next 2^23 ticks */
    outw(PM1_EN, 0x0001);                   /* TMR_EN */
    __asm__ volatile("sti");
    while (!sci_count)
        __asm__ volatile("hlt");
    __asm__ volatile("cli");
    printf("sci on irq 9 when the pm timer's top bit flips: %s, pm1 status 0x%04x\n",
           sci_count == 1 ? "once" : "more", inw(PM1_STS) & TMR_STS);
    outw(PM1_STS, TMR_STS);
}

/* --- fw_cfg ---------------------------------------------------------------------- */

static void fw_cfg_select(uint16_t key)
{
    outw(0x510, key);
}

static void fw_cfg_read(void *buf, uint32_t len)
{
    uint8_t *p = buf;
    while (len--)
        *p++ = inb(0x511);
}

static uint32_t be32(uint32_t v)
{
    return __builtin_bswap32(v);
}

struct fw_cfg_dma { uint32_t control, length; uint64_t address; } __attribute__((packed));
static volatile struct fw_cfg_dma dma __attribute__((aligned(16)));
static uint8_t dma_buf[512];

static uint32_t fw_cfg_dma_read(uint16_t key, void *buf, uint32_t len)
{
    dma.control = be32((uint32_t)key << 16 | 0x08 | 0x02);   /* select + read */
    dma.length = be32(len);
    dma.address = (uint64_t)be32((uint32_t)buf) << 32;        /* big-endian 64-bit */
    outl(0x514, 0);
    outl(0x518, be32((uint32_t)&dma));
    return be32(dma.control);
}

static void fw_cfg(void)
{
    char sig[5] = { 0 };
    uint32_t id, dma_lo, dma_hi;
    uint16_t cpus;
    uint64_t ram;
    fw_cfg_select(0x00);
    fw_cfg_read(sig, 4);
    fw_cfg_select(0x01);
    fw_cfg_read(&id, 4);
    fw_cfg_select(0x05);
    fw_cfg_read(&cpus, 2);
    fw_cfg_select(0x03);
    fw_cfg_read(&ram, 8);
    dma_lo = inl(0x514);
    dma_hi = inl(0x518);
    char dsig[9] = { 0 };
    memcpy(dsig, &dma_lo, 4);
    memcpy(dsig + 4, &dma_hi, 4);
    printf("fw_cfg signature: %s, id 0x%08x, dma register reads \"%s\"\n", sig, id, dsig);
    printf("fw_cfg cpus: %u, ram: %u MiB\n", cpus, (uint32_t)(ram >> 20));

    uint32_t count;
    fw_cfg_select(0x19);
    fw_cfg_read(&count, 4);
    count = be32(count);
    for (uint32_t i = 0; i < count; i++) {
        struct { uint32_t size; uint16_t select, reserved; char name[56]; } f;
        fw_cfg_read(&f, sizeof(f));
        if (strcmp(f.name, "etc/e820"))
            continue;
        uint32_t size = be32(f.size);
        uint16_t select = (uint16_t)(f.select >> 8 | f.select << 8);
        uint32_t status = fw_cfg_dma_read(select, dma_buf, size < sizeof(dma_buf) ? size : sizeof(dma_buf));
        printf("fw_cfg etc/e820: %u bytes, dma status %u\n", size, status);
        for (uint32_t at = 0; at + 20 <= size && at + 20 <= sizeof(dma_buf); at += 20) {
            uint32_t *e = (uint32_t *)(dma_buf + at);
            printf("  e820 0x%08x%08x 0x%08x%08x type %u\n", e[1], e[0], e[3], e[2], e[4]);
        }
    }
}

/* --- ACPI --------------------------------------------------------------------------- */

static const uint8_t *find_rsdp(void)
{
    for (uint32_t p = 0xe0000; p < 0x100000; p += 16)
        if (!memcmp((const void *)p, "RSD PTR ", 8))
            return (const uint8_t *)p;
    return 0;
}

static const uint8_t *find_table(const uint8_t *rsdp, const char *sig)
{
    const uint8_t *rsdt = (const uint8_t *)*(const uint32_t *)(rsdp + 16);
    uint32_t len = *(const uint32_t *)(rsdt + 4);
    for (uint32_t at = 36; at + 4 <= len; at += 4) {
        const uint8_t *t = (const uint8_t *)*(const uint32_t *)(rsdt + at);
        if (!memcmp(t, sig, 4))
            return t;
    }
    return 0;
}

static int contains(const uint8_t *p, uint32_t len, const char *what, uint32_t n)
{
    for (uint32_t i = 0; i + n <= len; i++)
        if (!memcmp(p + i, what, n))
            return 1;
    return 0;
}

static void acpi(void)
{
    const uint8_t *rsdp = find_rsdp();
    if (!rsdp) {
        printf("acpi: no rsdp\n");
        return;
    }
    const uint8_t *fadt = find_table(rsdp, "FACP");
    const uint8_t *hpet = find_table(rsdp, "HPET");
    printf("fadt: sci_int %u smi_cmd 0x%x acpi_enable 0x%02x acpi_disable 0x%02x\n",
           *(const uint16_t *)(fadt + 46), *(const uint32_t *)(fadt + 48), fadt[52], fadt[53]);
    printf("fadt: pm1a_evt 0x%x/%u pm1a_cnt 0x%x/%u pm_tmr 0x%x/%u tmr_val_ext %u\n",
           *(const uint32_t *)(fadt + 56), fadt[88], *(const uint32_t *)(fadt + 64), fadt[89],
           *(const uint32_t *)(fadt + 76), fadt[91], (*(const uint32_t *)(fadt + 112) >> 8) & 1);
    const uint8_t *dsdt = (const uint8_t *)*(const uint32_t *)(fadt + 40);
    printf("dsdt has \\_S5: %s\n", contains(dsdt, *(const uint32_t *)(dsdt + 4), "_S5_", 4) ? "yes" : "no");
    printf("hpet table: %s, block at 0x%08x\n", hpet ? "yes" : "no", hpet ? *(const uint32_t *)(hpet + 44) : 0);
}

void kmain(void)
{
    serial_init();
    printf("platform test\n");
    pci_scan();
    printf("piix3 pirq routes: %08x, elcr: %02x %02x\n", cfg_read32(1, 0, 0x60), inb(0x4d0), inb(0x4d1));
    printf("pm function: pmba 0x%04x, pmregmisc %02x\n", cfg_read16(1, 3, 0x40), cfg_read8(1, 3, 0x80));
    printf("pm1 control before acpi enable: 0x%04x\n", inw(PM1_CNT));
    outb(0xb2, 0xf1);                        /* the FADT's SMI_CMD and ACPI_ENABLE */
    printf("pm1 control after acpi enable: 0x%04x\n", inw(PM1_CNT));
    pm_timer();
    sci();
    fw_cfg();
    volatile uint32_t *hpet = (volatile uint32_t *)0xfed00000u;
    printf("hpet id: 0x%08x, period %u fs\n", hpet[0], hpet[1]);
    acpi();
    printf("powering off\n");
    outw(PM1_CNT, SCI_EN | SLP_EN);          /* SLP_TYP 0: \_S5 */
    uint32_t start = inl(PM_TMR);              /* QEMU turns off asynchronously: give it 1 s */
    while (((inl(PM_TMR) - start) & 0xffffff) < PM_HZ)
        ;
    printf("power off failed\n");
    debug_exit(0x14);
}
