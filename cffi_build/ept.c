/* EPT: the 4-level guest-physical -> host-physical walk (SDM Vol. 3 Section 29.3),
 * with 2 MiB and 1 GiB pages, R/W/X permissions, accessed/dirty flags, violations and
 * misconfigurations. */
#include "core.h"

#define EPT_ADDR_MASK (((1ull << MAXPHYADDR) - 1) & PAGE_MASK)

static int misconfigured(uint64_t e, int level, int leaf)
{
    uint64_t perm = e & 7;
    if (perm == EPT_WRITE || perm == (EPT_WRITE | EPT_EXEC))
        return 1;                       /* writable but not readable */
    if (e & PHYS_ADDR_RSVD & 0x000fffffffffffffull)
        return 1;                       /* address bits beyond MAXPHYADDR */
    if (!leaf) {
        if (e & 0xf8)                   /* bits 7:3 reserved in non-leaf entries */
            return 1;
    } else {
        int memtype = (int)((e >> 3) & 7);
        if (memtype == 2 || memtype == 3 || memtype == 7)
            return 1;
        if (level > 1) {
            uint64_t low = ((1ull << (12 + 9 * (level - 1))) - 1) & PAGE_MASK;
            if (e & low)
                return 1;               /* large page not aligned */
        }
    }
    return 0;
}

__attribute__((noreturn)) static void ept_violation(cpu_t *cpu, uint64_t gpa, int acc,
        uint64_t perms, int gla_valid, uint64_t gla, int is_final)
{
    exit_info_t ei = {0};
    ei.reason = EXIT_REASON_EPT_VIOLATION;
    ei.qual = (acc == ACC_READ ? 1 : 0) | (acc == ACC_WRITE ? 2 : 0) | (acc == ACC_EXEC ? 4 : 0) |
              (perms << 3) | (gla_valid ? (1ull << 7) : 0) |
              (gla_valid && is_final ? (1ull << 8) : 0);
    ei.gpa = gpa;
    ei.gla = gla_valid ? gla : 0;
    vm_exit(cpu, &ei);
}

__attribute__((noreturn)) static void ept_misconfig(cpu_t *cpu, uint64_t gpa)
{
    exit_info_t ei = {0};
    ei.reason = EXIT_REASON_EPT_MISCONFIG;
    ei.gpa = gpa;
    vm_exit(cpu, &ei);
}

uint64_t ept_translate(cpu_t *cpu, uint64_t gpa, int acc, int gla_valid, uint64_t gla,
                       int is_final, int *writable)
{
    uint64_t eptp = cpu->vc.eptp;
    int ad = (eptp & EPTP_AD_ENABLE) != 0;
    ept_cache_entry_t *c = &cpu->ept_cache[(gpa >> 12) & (EPT_CACHE_SIZE - 1)];
    uint64_t need = acc == ACC_READ ? EPT_READ : acc == ACC_WRITE ? EPT_WRITE : EPT_EXEC;
    if (c->gpa == (gpa & PAGE_MASK) && (c->perms & need) && (acc != ACC_WRITE || c->dirty)) {
        *writable = (c->perms & EPT_WRITE) != 0;
        return c->hpa | (gpa & 0xfff);
    }
    uint64_t table = eptp & EPT_ADDR_MASK;
    uint64_t perms = 7;
    if (gpa >> 48)
        ept_violation(cpu, gpa, acc, 0, gla_valid, gla, is_final);
    for (int level = 4; level >= 1; level--) {
        uint64_t slot = table + ((gpa >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
        uint64_t e = hostmem_read64(cpu->sil, slot);
        if (!(e & 7))
            ept_violation(cpu, gpa, acc, 0, gla_valid, gla, is_final);
        int leaf = level == 1 || ((level == 2 || level == 3) && (e & EPT_LARGE));
        if (level == 4 && (e & EPT_LARGE))
            ept_misconfig(cpu, gpa);
        if (misconfigured(e, level, leaf))
            ept_misconfig(cpu, gpa);
        perms &= e & 7;
        if (ad) {
            uint64_t want = EPT_ACCESSED | (leaf && acc == ACC_WRITE ? EPT_DIRTY : 0);
            /* flags are set only for accesses that the walk permits */
            int allowed = !leaf || (acc == ACC_READ && (perms & 1)) ||
                          (acc == ACC_WRITE && (perms & 2)) || (acc == ACC_EXEC && (perms & 4));
            if (allowed && (e & want) != want)
                hostmem_cmpxchg64(cpu->sil, slot, e, e | want);
        }
        if (leaf) {
            if ((acc == ACC_READ && !(perms & EPT_READ)) ||
                (acc == ACC_WRITE && !(perms & EPT_WRITE)) ||
                (acc == ACC_EXEC && !(perms & EPT_EXEC)))
                ept_violation(cpu, gpa, acc, perms, gla_valid, gla, is_final);
            *writable = (perms & EPT_WRITE) != 0;
            uint64_t page_size = 1ull << (12 + 9 * (level - 1));
            uint64_t hpa = (e & EPT_ADDR_MASK & ~(page_size - 1)) | (gpa & (page_size - 1));
            c->gpa = gpa & PAGE_MASK;
            c->hpa = hpa & PAGE_MASK;
            c->perms = (uint8_t)perms;
            c->dirty = !ad || acc == ACC_WRITE;
            return hpa;
        }
        table = e & EPT_ADDR_MASK;
    }
    ept_misconfig(cpu, gpa); /* not reached: level 1 is always a leaf */
}
