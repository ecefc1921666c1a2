/*
 * steer: a guest to watch and steer from the monitor, QMP and the tests of resets.
 *
 * Every boot counts itself in CMOS byte 0x72, which survives a system reset (RAM does
 * not), and prints "steer: boot N".  Paging is on: the first 16 MiB identity-mapped and
 * an alias of the first 4 MiB at 0xc0000000 (4 MiB pages).
 *
 * Command line:
 *   reset=kbd|port92|cf9|triple  reset the machine that way until boot number "boots=N"
 *                                (default 2), then exit through isa-debug-exit with N;
 *   (no reset=)                  print "steer: ready" and poll the keyboard controller
 *                                forever, printing each byte it delivers ("key 0x1e").
 */
#include <stdint.h>

#include "debug_exit.h"
#include "io.h"
#include "multiboot.h"
#include "serial.h"
#include "string.h"

#define CMOS_BOOT_COUNT 0x72
#define ALIAS_BASE 0xc0000000u

uint32_t steer_magic = 0x57ee4a61;   /* read back by the dump-guest-memory test */
uint32_t steer_boot;
volatile uint32_t steer_polls;

static uint32_t page_directory[1024] __attribute__((aligned(4096)));

static uint8_t cmos_read(uint8_t index)
{
    outb(0x70, index);
    return inb(0x71);
}

static void cmos_write(uint8_t index, uint8_t value)
{
    outb(0x70, index);
    outb(0x71, value);
}

static void enable_paging(void)
{
    for (uint32_t i = 0; i < 4; i++)
        page_directory[i] = (i << 22) | 0x83;             /* present, writable, 4 MiB */
    page_directory[ALIAS_BASE >> 22] = 0x83;
    uint32_t cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr4 | 0x10));               /* PSE */
    __asm__ volatile("mov %0, %%cr3" : : "r"(page_directory));
    uint32_t cr0;
    __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
    __asm__ volatile("mov %0, %%cr0" : : "r"(cr0 | 0x80000000u) : "memory");
}

/* The value of "key=" on the command line, copied into buf (empty if absent). */
static void option(const char *cmdline, const char *key, char *buf, uint32_t size)
{
    buf[0] = 0;
    const char *p = cmdline ? strstr(cmdline, key) : 0;
    if (!p)
        return;
    p += strlen(key);
    uint32_t n = 0;
    while (*p && *p != ' ' && n + 1 < size)
        buf[n++] = *p++;
    buf[n] = 0;
}

static void triple_fault(void)
{
    static const struct { uint16_t limit; uint32_t base; } __attribute__((packed)) empty = {0, 0};
    __asm__ volatile("lidt %0; int3" : : "m"(empty));
}

static void reset_by(const char *method)
{
    if (!strcmp(method, "kbd"))
        outb(0x64, 0xfe);
    else if (!strcmp(method, "port92"))
        outb(0x92, inb(0x92) | 1);
    else if (!strcmp(method, "cf9"))
        outb(0xcf9, 0x06);
    else if (!strcmp(method, "triple"))
        triple_fault();
}

void kmain(uint32_t magic, struct multiboot_info *mbi)
{
    serial_init();
    const char *cmdline = (magic == MULTIBOOT_BOOTLOADER_MAGIC && (mbi->flags & MULTIBOOT_INFO_CMDLINE))
                              ? (const char *)mbi->cmdline : 0;
    char method[16], boots_text[8];
    option(cmdline, "reset=", method, sizeof(method));
    option(cmdline, "boots=", boots_text, sizeof(boots_text));
    uint32_t boots = boots_text[0] ? (uint32_t)(boots_text[0] - '0') : 2;

    steer_boot = cmos_read(CMOS_BOOT_COUNT) + 1u;
    cmos_write(CMOS_BOOT_COUNT, (uint8_t)steer_boot);
    enable_paging();
    printf("steer: boot %u magic 0x%08x\n", steer_boot, steer_magic);

    if (method[0]) {
        if (steer_boot >= boots) {
            printf("steer: done after %u boots\n", steer_boot);
            debug_exit((uint8_t)steer_boot);
        }
        printf("steer: resetting by %s\n", method);
        reset_by(method);
        printf("steer: still running after the reset request\n");
        debug_exit(0x7f);
    }

    outb(0x64, 0x60);          /* command byte: keyboard interrupt on, translate to set 1 */
    outb(0x60, 0x41);
    printf("steer: ready\n");
    for (;;) {
        steer_polls++;
        if (inb(0x64) & 1)
            printf("key 0x%02x\n", inb(0x60));
    }
}
