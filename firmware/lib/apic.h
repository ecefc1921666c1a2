/*
 * The local APIC (xAPIC MMIO page at 0xfee00000) and the I/O APIC (0xfec00000) for the
 * 32-bit test kernels, which run with paging off: the registers are plain MMIO.
 */
#ifndef PYHV_FW_APIC_H
#define PYHV_FW_APIC_H

#include <stdint.h>

#define LAPIC_BASE      0xfee00000u
#define LAPIC_ID        0x020
#define LAPIC_VERSION   0x030
#define LAPIC_TPR       0x080
#define LAPIC_PPR       0x0a0
#define LAPIC_EOI       0x0b0
#define LAPIC_LDR       0x0d0
#define LAPIC_DFR       0x0e0
#define LAPIC_SVR       0x0f0
#define LAPIC_ISR       0x100
#define LAPIC_TMR       0x180
#define LAPIC_IRR       0x200
#define LAPIC_ESR       0x280
#define LAPIC_ICR       0x300
#define LAPIC_ICR2      0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_LVT_ERROR 0x370
#define LAPIC_TIMER_ICR 0x380
#define LAPIC_TIMER_CCR 0x390
#define LAPIC_TIMER_DCR 0x3e0

#define APIC_SVR_ENABLE     0x100
#define APIC_LVT_MASKED     0x10000
#define APIC_TIMER_PERIODIC 0x20000
#define APIC_TIMER_TSC_DEADLINE 0x40000
#define APIC_DM_FIXED   0x000
#define APIC_DM_LOWEST  0x100
#define APIC_DM_NMI     0x400
#define APIC_DM_INIT    0x500
#define APIC_DM_STARTUP 0x600
#define APIC_DEST_LOGICAL 0x800
#define APIC_ICR_BUSY   0x1000
#define APIC_LEVEL_ASSERT 0x4000
#define APIC_TRIGGER_LEVEL 0x8000
#define APIC_DEST_SELF   0x40000
#define APIC_DEST_ALL    0x80000
#define APIC_DEST_OTHERS 0xc0000

#define MSR_IA32_APIC_BASE    0x1b
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define MSR_X2APIC(reg)       (0x800 + ((reg) >> 4))
#define MSR_X2APIC_SELF_IPI   0x83f
#define APIC_BASE_BSP    (1u << 8)
#define APIC_BASE_EXTD   (1u << 10)
#define APIC_BASE_ENABLE (1u << 11)

#define IOAPIC_BASE     0xfec00000u
#define IOAPIC_ID       0x00
#define IOAPIC_VERSION  0x01
#define IOAPIC_REDTBL(pin) (0x10 + 2 * (pin))
#define IOAPIC_MASKED   0x10000
#define IOAPIC_LEVEL    0x8000
#define IOAPIC_REMOTE_IRR 0x4000

static inline uint32_t lapic_read(uint32_t reg)
{
    return *(volatile uint32_t *)(LAPIC_BASE + reg);
}

static inline void lapic_write(uint32_t reg, uint32_t value)
{
    *(volatile uint32_t *)(LAPIC_BASE + reg) = value;
}

static inline uint32_t lapic_id(void)
{
    return lapic_read(LAPIC_ID) >> 24;
}

static inline void lapic_eoi(void)
{
    lapic_write(LAPIC_EOI, 0);
}

/* Send an IPI (ICR low half LOW) to APIC DEST and wait until it is sent. */
static inline void lapic_ipi(uint32_t dest, uint32_t low)
{
    lapic_write(LAPIC_ICR2, dest << 24);
    lapic_write(LAPIC_ICR, low);
    while (lapic_read(LAPIC_ICR) & APIC_ICR_BUSY)
        ;
}

/* ESR's errors since the last read: the register is written before it is read. */
static inline uint32_t lapic_esr(void)
{
    lapic_write(LAPIC_ESR, 0);
    return lapic_read(LAPIC_ESR);
}

static inline uint32_t ioapic_read(uint32_t reg)
{
    *(volatile uint32_t *)IOAPIC_BASE = reg;
    return *(volatile uint32_t *)(IOAPIC_BASE + 0x10);
}

static inline void ioapic_write(uint32_t reg, uint32_t value)
{
    *(volatile uint32_t *)IOAPIC_BASE = reg;
    *(volatile uint32_t *)(IOAPIC_BASE + 0x10) = value;
}

/* Point I/O APIC input PIN at APIC DEST (physical) with redirection entry bits LOW. */
static inline void ioapic_route(int pin, uint32_t low, uint32_t dest)
{
    ioapic_write(IOAPIC_REDTBL(pin) + 1, dest << 24);
    ioapic_write(IOAPIC_REDTBL(pin), low);
}

#endif
