/*
 * QEMU's pc-testdev and isa-debugcon, as hypervisor test suites use them: the 0xe0 I/O
 * buffer, the memory area at 0xff000000 (through an MMIO exit), and text written to the
 * debug console at port 0xe9.
 */
#include <stdint.h>

#include "debug_exit.h"
#include "io.h"
#include "serial.h"

#define TESTDEV_IOMEM ((volatile uint32_t *)0xff000000u)

void kmain(void)
{
    serial_init();
    printf("testdev test\n");
    outl(0xe0, 0x12345678);
    printf("ioport readback: 0x%08x\n", inl(0xe0));
    TESTDEV_IOMEM[1] = 0xcafef00d;
    printf("iomem readback: 0x%08x\n", TESTDEV_IOMEM[1]);
    for (const char *s = "debugcon says hi\n"; *s; s++)
        outb(0xe9, (uint8_t)*s);
    printf("debugcon readback: 0x%02x\n", inb(0xe9));
    debug_exit(0x13);
}
