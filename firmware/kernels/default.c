/*
 * default: the guest pyhv boots when no -kernel is given.  It greets on the
 * serial console, shows what the Multiboot loader handed over, suggests what
 * to try next and halts (cli; hlt) -- it does not use the debug-exit port.
 */
#include <stdint.h>
#include "io.h"
#include "multiboot.h"
#include "serial.h"

#define MAX_MMAP_ENTRIES 64

static const char *mmap_type_name(uint32_t type)
{
    switch (type) {
    case MULTIBOOT_MEMORY_AVAILABLE:        return "available";
    case MULTIBOOT_MEMORY_RESERVED:         return "reserved";
    case MULTIBOOT_MEMORY_ACPI_RECLAIMABLE: return "ACPI reclaimable";
    case MULTIBOOT_MEMORY_NVS:              return "ACPI NVS";
    case MULTIBOOT_MEMORY_BADRAM:           return "bad RAM";
    default:                                return "unknown";
    }
}

static void print_u64_hex(uint64_t v)
{
    printf("0x%08x%08x", (uint32_t)(v >> 32), (uint32_t)v);
}

static void print_memory_map(const struct multiboot_info *mbi)
{
    uint32_t addr = mbi->mmap_addr;
    uint32_t end = mbi->mmap_addr + mbi->mmap_length;
    uint64_t usable = 0;
    int n = 0;

    printf("Memory map:\n");
    while (addr < end && n < MAX_MMAP_ENTRIES) {
        const struct multiboot_mmap_entry *e =
            (const struct multiboot_mmap_entry *)addr;
        printf("  ");
        print_u64_hex(e->addr);
        printf(" - ");
        print_u64_hex(e->len ? e->addr + e->len - 1 : e->addr);
        printf("  %s (type %u)\n", mmap_type_name(e->type), e->type);
        if (e->type == MULTIBOOT_MEMORY_AVAILABLE)
            usable += e->len;
        addr += e->size + 4;
        n++;
    }
    printf("Usable RAM in the map: %u MiB in %d entries\n",
           (uint32_t)(usable >> 20), n);
}

static void print_boot_info(uint32_t magic, const struct multiboot_info *mbi)
{
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
        printf("Multiboot magic: 0x%08x (expected 0x%08x): "
               "not started by a Multiboot loader?\n",
               magic, MULTIBOOT_BOOTLOADER_MAGIC);
        return;
    }
    printf("Multiboot magic: 0x%08x (ok), info at %p, flags 0x%08x\n",
           magic, (const void *)mbi, mbi->flags);

    if (mbi->flags & MULTIBOOT_INFO_MEMORY)
        printf("Memory: lower %u KiB, upper %u KiB\n",
               mbi->mem_lower, mbi->mem_upper);
    else
        printf("Memory: no sizes given\n");

    if (mbi->flags & MULTIBOOT_INFO_MEM_MAP)
        print_memory_map(mbi);
    else
        printf("Memory map: none given\n");

    if (mbi->flags & MULTIBOOT_INFO_CMDLINE)
        printf("Command line: \"%s\"\n", (const char *)mbi->cmdline);
    else
        printf("Command line: none\n");

    if (mbi->flags & MULTIBOOT_INFO_LOADER_NAME)
        printf("Boot loader: %s\n", (const char *)mbi->boot_loader_name);
}

void kmain(uint32_t magic, struct multiboot_info *mbi)
{
    serial_init();
    printf("pyhv default guest: hello from VMX non-root mode!\n\n");

    print_boot_info(magic, mbi);

    printf("\nWhat next:\n"
           "  pyhv -kernel your-kernel.elf -nographic  boot your own Multiboot kernel\n"
           "  pyhv -append \"some text\"                 pass a command line (echoed above)\n"
           "  pyhv -d exits                            print a VM-exit summary at the end\n"
           "  pyhv --help                              list all options\n"
           "\nThis guest has nothing more to do: halting the CPU (cli; hlt).\n");

    halt_forever();
}
