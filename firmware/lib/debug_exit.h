/*
 * isa-debug-exit (QEMU: -device isa-debug-exit,iobase=0xf4,iosize=4).
 * Writing byte CODE to port 0xf4 makes the VMM exit with status (CODE << 1) | 1.
 */
#ifndef PYHV_FW_DEBUG_EXIT_H
#define PYHV_FW_DEBUG_EXIT_H

#include <stdint.h>
#include "io.h"

#define DEBUG_EXIT_PORT 0xf4

static inline __attribute__((noreturn)) void debug_exit(uint8_t code)
{
    outb(DEBUG_EXIT_PORT, code);
    /* Without the device (e.g. real hardware) just stop here. */
    halt_forever();
}

#endif
