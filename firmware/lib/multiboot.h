/* Multiboot v1 structures handed over by the boot loader. */
#ifndef PYHV_FW_MULTIBOOT_H
#define PYHV_FW_MULTIBOOT_H

#include <stdint.h>

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u

/* multiboot_info.flags */
#define MULTIBOOT_INFO_MEMORY      (1u << 0)
#define MULTIBOOT_INFO_BOOTDEV     (1u << 1)
#define MULTIBOOT_INFO_CMDLINE     (1u << 2)
#define MULTIBOOT_INFO_MODS        (1u << 3)
#define MULTIBOOT_INFO_AOUT_SYMS   (1u << 4)
#define MULTIBOOT_INFO_ELF_SHDR    (1u << 5)
#define MULTIBOOT_INFO_MEM_MAP     (1u << 6)
#define MULTIBOOT_INFO_DRIVE_INFO  (1u << 7)
#define MULTIBOOT_INFO_CONFIG      (1u << 8)
#define MULTIBOOT_INFO_LOADER_NAME (1u << 9)
#define MULTIBOOT_INFO_APM_TABLE   (1u << 10)
#define MULTIBOOT_INFO_VBE_INFO    (1u << 11)
#define MULTIBOOT_INFO_FRAMEBUFFER (1u << 12)

/* multiboot_mmap_entry.type */
#define MULTIBOOT_MEMORY_AVAILABLE        1
#define MULTIBOOT_MEMORY_RESERVED         2
#define MULTIBOOT_MEMORY_ACPI_RECLAIMABLE 3
#define MULTIBOOT_MEMORY_NVS              4
#define MULTIBOOT_MEMORY_BADRAM           5

struct multiboot_info {
    uint32_t flags;
    uint32_t mem_lower;         /* KiB below 1 MiB        (flags bit 0) */
    uint32_t mem_upper;         /* KiB above 1 MiB        (flags bit 0) */
    uint32_t boot_device;       /*                        (flags bit 1) */
    uint32_t cmdline;           /* phys addr of C string  (flags bit 2) */
    uint32_t mods_count;        /*                        (flags bit 3) */
    uint32_t mods_addr;
    uint32_t syms[4];           /* a.out or ELF symbols   (flags bit 4/5) */
    uint32_t mmap_length;       /* bytes                  (flags bit 6) */
    uint32_t mmap_addr;
    uint32_t drives_length;     /*                        (flags bit 7) */
    uint32_t drives_addr;
    uint32_t config_table;      /*                        (flags bit 8) */
    uint32_t boot_loader_name;  /* phys addr of C string  (flags bit 9) */
    uint32_t apm_table;         /*                        (flags bit 10) */
    uint32_t vbe_control_info;  /*                        (flags bit 11) */
    uint32_t vbe_mode_info;
    uint16_t vbe_mode;
    uint16_t vbe_interface_seg;
    uint16_t vbe_interface_off;
    uint16_t vbe_interface_len;
    uint64_t framebuffer_addr;  /*                        (flags bit 12) */
    uint32_t framebuffer_pitch;
    uint32_t framebuffer_width;
    uint32_t framebuffer_height;
    uint8_t  framebuffer_bpp;
    uint8_t  framebuffer_type;
    uint8_t  color_info[6];
} __attribute__((packed));

/*
 * One memory map entry.  SIZE is the size of the rest of the entry (normally
 * 20); the next entry starts at (char *)entry + entry->size + 4.
 */
struct multiboot_mmap_entry {
    uint32_t size;
    uint64_t addr;
    uint64_t len;
    uint32_t type;
} __attribute__((packed));

struct multiboot_mod_list {
    uint32_t mod_start;
    uint32_t mod_end;
    uint32_t cmdline;
    uint32_t pad;
} __attribute__((packed));

#endif
