/*
 * tsccal: Linux's slow TSC calibration against the 8254 PIT (pit_calibrate_tsc() in
 * arch/x86/kernel/tsc.c), three times: counter 2 counts 10 ms down in mode 0 while port
 * 0x61 is read until its OUT rises, and the TSC ticks in between are the TSC's kHz times
 * 10.  Linux also wants at least 1000 reads and no read ten times slower than the
 * fastest, which a PC emulated with port exits to a device model does not give (each
 * read is an exit; the host preempts): the kernel prints both so that the reason can be
 * seen.  Ends with debug_exit(0x41).
 */
#include <stdint.h>

#include "debug_exit.h"
#include "io.h"
#include "serial.h"

#define PIT_TICK_RATE 1193182u
#define CAL_MS 10
#define CAL_LATCH (PIT_TICK_RATE / (1000 / CAL_MS))

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

static void pit_calibrate(void)
{
    outb(0x61, (inb(0x61) & ~0x02) | 0x01);   /* gate high, speaker off */
    outb(0x43, 0xb0);                          /* counter 2, LSB then MSB, mode 0 */
    outb(0x42, CAL_LATCH & 0xff);
    outb(0x42, CAL_LATCH >> 8);
    uint64_t t1 = rdtsc(), tsc = t1, t2 = t1;
    uint32_t tscmin = ~0u, tscmax = 0, pitcnt = 0;
    while ((inb(0x61) & 0x20) == 0) {
        t2 = rdtsc();
        uint32_t delta = (uint32_t)(t2 - tsc);
        tsc = t2;
        if (delta < tscmin)
            tscmin = delta;
        if (delta > tscmax)
            tscmax = delta;
        pitcnt++;
    }
    printf("pit_calibrate_tsc: reads %u min %u max %u tsc %u kHz\n", pitcnt, tscmin, tscmax,
           (uint32_t)(t2 - t1) / CAL_MS);
}

void kmain(void)
{
    serial_init();
    printf("tsccal test\n");
    for (int k = 0; k < 3; k++)
        pit_calibrate();
    debug_exit(0x41);
}
