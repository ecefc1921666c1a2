/*
 * Benchmark kernel, 64-bit: long mode with 4-level paging (set up by lib64/entry.S),
 * running the shared workload for "iterations=N" rounds.
 */
#include <stdint.h>

#include "bench_workload.h"
#include "debug_exit.h"
#include "multiboot.h"
#include "serial.h"

void kmain64(uint32_t magic, uint32_t mbi_addr)
{
    serial_init();
    const struct multiboot_info *mbi = (const struct multiboot_info *)(uintptr_t)mbi_addr;
    const char *cmdline = (magic == MULTIBOOT_BOOTLOADER_MAGIC && (mbi->flags & MULTIBOOT_INFO_CMDLINE))
                              ? (const char *)(uintptr_t)mbi->cmdline : 0;
    unsigned iterations = bench_iterations(cmdline, 10);
    uint32_t result = bench_workload(iterations);
    printf("bench64: iterations=%u result=0x%08x\n", iterations, result);
    debug_exit(0);
}
