/*
 * Descriptor tables for the 32-bit protected-mode test kernels: a GDT with the
 * usual flat segments (and free slots for a test's own descriptors), a TSS and
 * an IDT.  Selectors:
 *   0x08 ring-0 code   0x10 ring-0 data   0x18 ring-3 code   0x20 ring-3 data
 *   0x28 TSS           0x30.. free (GDT_FIRST_FREE)
 * The order of the first four is the one SYSENTER/SYSEXIT require.  The constants
 * are usable from assembly too.
 */
#ifndef PYHV_FW_DESC_H
#define PYHV_FW_DESC_H

#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UCODE 0x18
#define SEL_UDATA 0x20
#define SEL_TSS   0x28
#define GDT_FIRST_FREE 6
#define GDT_ENTRIES 32

/* descriptor access byte */
#define DA_P      0x80
#define DA_DPL(n) ((n) << 5)
#define DA_S      0x10      /* code or data (not a system descriptor) */
#define DA_CODE   0x18      /* S + executable */
#define DA_DATA   0x10
#define DA_R      0x02      /* code: readable */
#define DA_W      0x02      /* data: writable */
#define DA_C      0x04      /* code: conforming */
#define DA_E      0x04      /* data: expand-down */
#define DA_A      0x01      /* accessed */
#define DA_TSS32  0x09      /* available 32-bit TSS */
/* descriptor flags nibble */
#define DF_G  0x8           /* limit in 4 KiB units */
#define DF_DB 0x4           /* 32-bit segment */
#define DF_L  0x2           /* 64-bit code segment */

/* IDT gate types (with P and DPL) */
#define GATE_INT32  0x8e
#define GATE_TRAP32 0x8f
#define GATE_DPL(n) ((n) << 5)

#ifndef __ASSEMBLER__
#include <stdint.h>

/* 32-bit TSS (SDM Figure 8-2) */
struct tss32 {
    uint16_t link, r0;
    uint32_t esp0;
    uint16_t ss0, r1;
    uint32_t esp1;
    uint16_t ss1, r2;
    uint32_t esp2;
    uint16_t ss2, r3;
    uint32_t cr3, eip, eflags, eax, ecx, edx, ebx, esp, ebp, esi, edi;
    uint16_t es, r4, cs, r5, ss, r6, ds, r7, fs, r8, gs, r9, ldt, r10;
    uint16_t trap, iomap_base;
} __attribute__((packed));

/* The TSS with a full I/O permission bitmap (and its terminating 0xff byte): every
 * port is denied until tss_allow_port(). */
struct tss_io {
    struct tss32 tss;
    uint8_t iomap[65536 / 8 + 1];
} __attribute__((packed));

extern uint64_t gdt[GDT_ENTRIES];
extern uint64_t idt[256];
extern struct tss_io tss_io;
#define tss (tss_io.tss)

uint64_t seg_desc(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags);
void gdt_set(int index, uint32_t base, uint32_t limit, uint8_t access, uint8_t flags);
/* Load the GDT, reload CS/DS/ES/FS/GS/SS with the flat ring-0 segments, and load TR
 * with the TSS (SS0 = the ring-0 data segment, all ports denied) and LDTR
 * with the null selector (a loader may leave it with any contents). */
void gdt_install(void);
/* Let CPL > IOPL code use PORT through the I/O bitmap (or deny it again). */
void tss_allow_port(uint16_t port, int allow);
void idt_set(int vector, void (*handler)(void), uint16_t sel, uint8_t type);
/* Load the IDT with LIMIT (normally sizeof(idt) - 1). */
void idt_install(uint16_t limit);

static inline void lgdt_raw(void *base, uint16_t limit)
{
    struct { uint16_t limit; uint32_t base; } __attribute__((packed)) d = { limit, (uint32_t)base };
    __asm__ volatile("lgdt %0" : : "m"(d) : "memory");
}

static inline void lidt_raw(void *base, uint16_t limit)
{
    struct { uint16_t limit; uint32_t base; } __attribute__((packed)) d = { limit, (uint32_t)base };
    __asm__ volatile("lidt %0" : : "m"(d) : "memory");
}

#endif /* __ASSEMBLER__ */
#endif
