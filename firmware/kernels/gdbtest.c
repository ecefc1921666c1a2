/*
 * gdbtest: a kernel to debug with gdb through the gdbstub (tests/test_gdbstub_gdb.py):
 * a function to break at (add_squares), a global to print and to watch (counter), a
 * loop to step through, and a call to step into (square).  Built without optimization
 * and with its symbols and debug information, so that gdb's step and next follow the
 * source.  Prints the result and ends with debug_exit(0x42).
 */
#include <stdint.h>
#include "debug_exit.h"
#include "format.h"
#include "serial.h"

#define NOINLINE __attribute__((noinline))
#define NSQUARES 8

volatile uint32_t counter;
uint32_t squares[NSQUARES];
const char greeting[] = "hello, gdb";

NOINLINE uint32_t square(uint32_t x)
{
    return x * x;
}

NOINLINE uint32_t add_squares(uint32_t n)
{
    uint32_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        squares[i] = square(i);
        total += squares[i];
        counter = counter + 1;
    }
    return total;
}

void kmain(void)
{
    serial_init();
    printf("gdbtest: %s\n", greeting);
    uint32_t total = add_squares(NSQUARES);
    printf("gdbtest: total=%u counter=%u\n", total, counter);
    debug_exit(0x42);
}
