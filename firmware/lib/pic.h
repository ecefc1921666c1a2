/* The 8259 pair and the PIT's channel 2 for kernels that take their interrupts elsewhere. */
#ifndef PYHV_FW_PIC_H
#define PYHV_FW_PIC_H

#include <stdint.h>

#include "io.h"

#define PIC_VECTOR_BASE 0x20        /* IRQ n at vector 0x20 + n */

/* Move the 8259s' vectors away from the exceptions (a firmware leaves them at 8) and mask
 * every input. */
static inline void pic_disable(void)
{
    outb(0x20, 0x11); outb(0xa0, 0x11);     /* ICW1: edge, cascade, ICW4 */
    outb(0x21, PIC_VECTOR_BASE); outb(0xa1, PIC_VECTOR_BASE + 8);
    outb(0x21, 0x04); outb(0xa1, 0x02);     /* ICW3: the slave on IRQ 2 */
    outb(0x21, 0x01); outb(0xa1, 0x01);     /* ICW4: 8086 mode */
    outb(0x21, 0xff); outb(0xa1, 0xff);
}

/* Busy-wait US microseconds (at most 54925) on the PIT's channel 2 in mode 0. */
static inline void pit_delay_us(uint32_t us)
{
    uint32_t count = us * 1193u / 1000u;
    outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01));    /* gate on, speaker off */
    outb(0x43, 0xb0);                                       /* channel 2, lo/hi, mode 0 */
    outb(0x42, (uint8_t)count);
    outb(0x42, (uint8_t)(count >> 8));
    while (!(inb(0x61) & 0x20))
        ;
}

#endif
