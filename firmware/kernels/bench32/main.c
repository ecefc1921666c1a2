/*
 * Benchmark kernel, 32-bit: turns on paging (identity-mapped 4 MiB pages) and runs the
 * shared workload for the number of rounds given as "iterations=N" on the command line.
 */
#include <stdint.h>

#include "bench_workload.h"
#include "debug_exit.h"
#include "multiboot.h"
#include "serial.h"

static uint32_t page_directory[1024] __attribute__((aligned(4096)));

static void enable_paging(void)
{
    for (uint32_t i = 0; i < 1024; i++)
        page_directory[i] = (i << 22) | 0x83;   /* present, writable, 4 MiB page */
    uint32_t cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr4 | 0x10));               /* PSE */
    __asm__ volatile("mov %0, %%cr3" : : "r"(page_directory));
    uint32_t cr0;
    __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
    __asm__ volatile("mov %0, %%cr0" : : "r"(cr0 | 0x80000000u) : "memory");   /* PG */
}

void kmain(uint32_t magic, struct multiboot_info *mbi)
{
    serial_init();
    const char *cmdline = (magic == MULTIBOOT_BOOTLOADER_MAGIC && (mbi->flags & MULTIBOOT_INFO_CMDLINE))
                              ? (const char *)mbi->cmdline : 0;
    unsigned iterations = bench_iterations(cmdline, 10);
    enable_paging();
    uint32_t result = bench_workload(iterations);
    printf("bench32: iterations=%u result=0x%08x\n", iterations, result);
    debug_exit(0);
}
