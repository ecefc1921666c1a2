#include "desc.h"

uint64_t gdt[GDT_ENTRIES] __attribute__((aligned(8)));
uint64_t idt[256] __attribute__((aligned(8)));
struct tss_io tss_io __attribute__((aligned(128)));

uint64_t seg_desc(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags)
{
    return (uint64_t)(limit & 0xffff) | ((uint64_t)(base & 0xffffff) << 16) |
           ((uint64_t)access << 40) | ((uint64_t)((limit >> 16) & 0xf) << 48) |
           ((uint64_t)(flags & 0xf) << 52) | ((uint64_t)(base >> 24) << 56);
}

void gdt_set(int index, uint32_t base, uint32_t limit, uint8_t access, uint8_t flags)
{
    gdt[index] = seg_desc(base, limit, access, flags);
}

void gdt_install(void)
{
    gdt[0] = 0;
    gdt_set(SEL_KCODE >> 3, 0, 0xfffff, DA_P | DA_CODE | DA_R, DF_G | DF_DB);
    gdt_set(SEL_KDATA >> 3, 0, 0xfffff, DA_P | DA_DATA | DA_W, DF_G | DF_DB);
    gdt_set(SEL_UCODE >> 3, 0, 0xfffff, DA_P | DA_DPL(3) | DA_CODE | DA_R, DF_G | DF_DB);
    gdt_set(SEL_UDATA >> 3, 0, 0xfffff, DA_P | DA_DPL(3) | DA_DATA | DA_W, DF_G | DF_DB);
    tss.ss0 = SEL_KDATA;
    tss.iomap_base = sizeof(tss);
    for (unsigned k = 0; k < sizeof(tss_io.iomap); k++)
        tss_io.iomap[k] = 0xff;
    gdt_set(SEL_TSS >> 3, (uint32_t)&tss_io, sizeof(tss_io) - 1, DA_P | DA_TSS32, 0);
    lgdt_raw(gdt, sizeof(gdt) - 1);
    __asm__ volatile(
        "ljmp %[cs], $1f\n"
        "1:\n\t"
        "movw %[ds], %%ax\n\t"
        "movw %%ax, %%ds\n\t"
        "movw %%ax, %%es\n\t"
        "movw %%ax, %%fs\n\t"
        "movw %%ax, %%gs\n\t"
        "movw %%ax, %%ss\n\t"
        "movw %[tr], %%ax\n\t"
        "ltr %%ax\n\t"
        "xorl %%eax, %%eax\n\t"
        "lldt %%ax"
        : : [cs] "i"(SEL_KCODE), [ds] "i"(SEL_KDATA), [tr] "i"(SEL_TSS) : "eax", "memory");
}

void tss_allow_port(uint16_t port, int allow)
{
    uint8_t bit = (uint8_t)(1u << (port & 7));
    if (allow)
        tss_io.iomap[port / 8] &= (uint8_t)~bit;
    else
        tss_io.iomap[port / 8] |= bit;
}

void idt_set(int vector, void (*handler)(void), uint16_t sel, uint8_t type)
{
    uint32_t off = (uint32_t)handler;
    idt[vector] = (uint64_t)(off & 0xffff) | ((uint64_t)sel << 16) | ((uint64_t)type << 40) |
                  ((uint64_t)(off >> 16) << 48);
}

void idt_install(uint16_t limit)
{
    lidt_raw(idt, limit);
}
