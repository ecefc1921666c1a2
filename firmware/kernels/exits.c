/*
 * exits: a test kernel that does nothing but port I/O (every access is a VM
 * exit under a hypervisor) and plain computation; it never executes HLT
 * before the final debug exit.
 *
 * Output:
 *   exits test
 *   lsr reads: 1000
 *   lsr thre set: <count>        (1000 on an always-ready UART)
 *   port 0x80 writes: 10
 *   exits test done
 * Exit: debug_exit(0x10), i.e. status 33.
 */
#include <stdint.h>
#include "debug_exit.h"
#include "io.h"
#include "multiboot.h"
#include "serial.h"

#define LSR_READS   1000
#define POST_WRITES 10
#define POST_PORT   0x80

void kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    (void)mbi;

    serial_init();
    printf("exits test\n");

    uint32_t thre = 0;
    for (int i = 0; i < LSR_READS; i++)
        if (inb(COM1_BASE + UART_LSR) & UART_LSR_THRE)
            thre++;
    printf("lsr reads: %d\n", LSR_READS);
    printf("lsr thre set: %u\n", thre);

    for (int i = 0; i < POST_WRITES; i++)
        outb(POST_PORT, (uint8_t)i);
    printf("port 0x80 writes: %d\n", POST_WRITES);

    printf("exits test done\n");
    debug_exit(0x10);
}
