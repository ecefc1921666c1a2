/* Guest paging: 32-bit, PAE and 4-level walks with the SDM's permission rules,
 * accessed/dirty updates and #PF error codes.  Paging-structure entries are
 * guest-physical, so every table access goes through EPT. */
#include "apicv.h"

#define PHYS_MASK (((1ull << MAXPHYADDR) - 1) & PAGE_MASK)
#define PTE_P 1ull
#define PTE_W 2ull
#define PTE_U 4ull
#define PTE_A 0x20ull
#define PTE_D 0x40ull
#define PTE_PS 0x80ull
#define PTE_G 0x100ull
#define PTE_XD (1ull << 63)

#define PFERR_P 1u
#define PFERR_W 2u
#define PFERR_U 4u
#define PFERR_RSVD 8u
#define PFERR_I 16u

static uint64_t table_hpa(cpu_t *cpu, uint64_t gpa, uint64_t lin, int acc)
{
    if (!(cpu->vc.proc2 & SEC_ENABLE_EPT))
        return gpa;
    int w;
    if (cpu->vc.eptp & EPTP_AD_ENABLE)
        acc = ACC_WRITE;
    uint64_t hpa = ept_translate(cpu, gpa, acc, 1, lin, 0, &w);
    if (unlikely(is_apic_access_page(cpu, hpa & PAGE_MASK)))
        apic_access_guest_physical(cpu, gpa);
    return hpa;
}

static uint64_t read_entry(cpu_t *cpu, uint64_t gpa, int wide, uint64_t lin, uint64_t *hpa)
{
    *hpa = table_hpa(cpu, gpa, lin, ACC_READ);
    uint64_t v = hostmem_read64(cpu->sil, *hpa & ~7ull);
    if (!wide)
        v = (*hpa & 4) ? (v >> 32) : (uint32_t)v;
    return v;
}

/* Set accessed (and dirty) bits; returns 0 if the entry changed under us. */
static int set_ad(cpu_t *cpu, uint64_t gpa, uint64_t hpa, int wide, uint64_t entry,
                  uint64_t bits, uint64_t lin)
{
    if ((entry & bits) == bits)
        return 1;
    /* a locked update, which EPT sees as a write */
    hpa = table_hpa(cpu, gpa, lin, ACC_WRITE);
    uint64_t aligned = hpa & ~7ull;
    uint64_t cur = hostmem_read64(cpu->sil, aligned);
    uint64_t shift = wide ? 0 : ((hpa & 4) ? 32 : 0);
    uint64_t mask = wide ? ~0ull : (0xffffffffull << shift);
    if (((cur & mask) >> shift) != entry)
        return 0;
    return hostmem_cmpxchg64(cpu->sil, aligned, cur, cur | (bits << shift));
}

static __attribute__((noreturn)) void page_fault(cpu_t *cpu, uint64_t lin, uint32_t err)
{
    cpu->pf_addr = lin;
    FAULT_ERR(cpu, EXC_PF, err);
}

/* The walk proper: 1 with *w filled in, or 0 with w->error the #PF error code.  EPT
 * violations on the paging structures still VM-exit. */
int paging_walk(cpu_t *cpu, uint64_t lin, int acc, int user, int set_accessed, walk_t *w)
{
    int nxe = (cpu->efer & EFER_NXE) != 0;
    /* I/D is reported only where execute permissions exist: with SMEP, or NXE under
     * PAE or 4-level paging (SDM Vol. 3 4.7) */
    int fetch_reported = (nxe && (cpu->cr4 & CR4_PAE)) || (cpu->cr4 & CR4_SMEP);
    uint32_t err_base = (acc == ACC_WRITE ? PFERR_W : 0) | (user ? PFERR_U : 0) |
                        (acc == ACC_EXEC && fetch_reported ? PFERR_I : 0);
#define WALK_FAULT(err) do { w->error = (err); return 0; } while (0)
    for (int attempt = 0;; attempt++) {
        uint64_t gpas[5], hpas[5], entries[5];
        int n = 0, wide, leaf_level = 1;
        uint64_t rsvd_hi = 0;
        wide = 0;
        uint64_t e, page_base, page_size;
        if (cpu->efer & EFER_LMA) {
            wide = 1;
            /* 4-level paging: 51:M reserved, 62:52 ignored */
            rsvd_hi = (PHYS_ADDR_RSVD & 0x000fffffffffffffull) | (nxe ? 0 : PTE_XD);
            uint64_t table = cpu->cr3 & PHYS_MASK;
            for (int level = 4;; level--) {
                uint64_t gpa = table + ((lin >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
                e = read_entry(cpu, gpa, 1, lin, &hpas[n]);
                gpas[n] = gpa; entries[n++] = e;
                if (!(e & PTE_P))
                    WALK_FAULT(err_base);
                uint64_t rsvd = rsvd_hi;
                if (level == 4 && (e & PTE_PS)) rsvd |= PTE_PS;
                if ((level == 3 || level == 2) && (e & PTE_PS))
                    rsvd |= ((1ull << (12 + 9 * (level - 1))) - 1) & ~0x1fffull;
                if (e & rsvd)
                    WALK_FAULT(err_base | PFERR_P | PFERR_RSVD);
                if (level == 1 || ((level == 3 || level == 2) && (e & PTE_PS))) {
                    leaf_level = level;
                    break;
                }
                table = e & PHYS_MASK;
            }
        } else if (cpu->cr4 & CR4_PAE) {
            wide = 1;
            /* PAE paging: 62:M reserved (SDM Vol. 3 Tables 4-8 to 4-11) */
            rsvd_hi = (PHYS_ADDR_RSVD & ~PTE_XD) | (nxe ? 0 : PTE_XD);
            uint64_t pdpte = cpu->pdpte[(lin >> 30) & 3];
            if (!(pdpte & PTE_P))
                WALK_FAULT(err_base);
            uint64_t table = pdpte & PHYS_MASK;
            for (int level = 2;; level--) {
                uint64_t gpa = table + ((lin >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
                e = read_entry(cpu, gpa, 1, lin, &hpas[n]);
                gpas[n] = gpa; entries[n++] = e;
                if (!(e & PTE_P))
                    WALK_FAULT(err_base);
                uint64_t rsvd = rsvd_hi;
                if (level == 2 && (e & PTE_PS))
                    rsvd |= 0x1fe000ull;
                if (e & rsvd)
                    WALK_FAULT(err_base | PFERR_P | PFERR_RSVD);
                if (level == 1 || (e & PTE_PS)) {
                    leaf_level = level;
                    break;
                }
                table = e & PHYS_MASK;
            }
        } else {
            uint64_t gpa = (cpu->cr3 & 0xfffff000ull) + ((lin >> 22) & 0x3ff) * 4;
            e = read_entry(cpu, gpa, 0, lin, &hpas[n]);
            gpas[n] = gpa; entries[n++] = e;
            if (!(e & PTE_P))
                WALK_FAULT(err_base);
            if ((e & PTE_PS) && (cpu->cr4 & CR4_PSE)) {
                if (e & (1ull << 21))
                    WALK_FAULT(err_base | PFERR_P | PFERR_RSVD);
                leaf_level = 2;
            } else {
                gpa = (e & 0xfffff000ull) + ((lin >> 12) & 0x3ff) * 4;
                e = read_entry(cpu, gpa, 0, lin, &hpas[n]);
                gpas[n] = gpa; entries[n++] = e;
                if (!(e & PTE_P))
                    WALK_FAULT(err_base);
            }
        }
        /* permissions accumulate over the walk */
        int us = 1, rw = 1, xd = 0;
        for (int k = 0; k < n; k++) {
            us &= (entries[k] & PTE_U) != 0;
            rw &= (entries[k] & PTE_W) != 0;
            xd |= wide && nxe && (entries[k] & PTE_XD);
        }
        int wp = (cpu->cr0 & CR0_WP) != 0;
        int fault = 0;
        if (user && !us) fault = 1;
        if (acc == ACC_WRITE && !rw && (user || wp)) fault = 1;
        if (acc == ACC_EXEC && xd) fault = 1;
        if (!user && us && acc == ACC_EXEC && (cpu->cr4 & CR4_SMEP)) fault = 1;
        if (!user && us && acc != ACC_EXEC && (cpu->cr4 & CR4_SMAP) &&
            !(cpu_get_rflags(cpu) & F_AC))
            fault = 1;
        if (fault)
            WALK_FAULT(err_base | PFERR_P);

        /* accessed flags everywhere, dirty on the leaf for writes */
        int ok = 1;
        for (int k = 0; k < n && ok && set_accessed; k++) {
            uint64_t bits = PTE_A;
            if (k == n - 1 && acc == ACC_WRITE)
                bits |= PTE_D;
            ok = set_ad(cpu, gpas[k], hpas[k], wide, entries[k], bits, lin);
        }
        if (!ok && attempt < 8)
            continue;

        e = entries[n - 1];
        if (!wide && leaf_level == 2) {
            page_base = (e & 0xffc00000ull) | (((e >> 13) & 0xff) << 32);
            page_size = 1ull << 22;
        } else {
            page_size = 1ull << (12 + 9 * (leaf_level - 1));
            page_base = e & PHYS_MASK & ~(page_size - 1);
        }
        w->gpa = page_base | (lin & (page_size - 1));
        w->writable = rw;
        w->user = us;
        w->global = (cpu->cr4 & CR4_PGE) && (e & PTE_G);
        return 1;
    }
#undef WALK_FAULT
}

uint64_t paging_translate(cpu_t *cpu, uint64_t lin, int acc, int user, walk_t *w)
{
    if (!paging_walk(cpu, lin, acc, user, 1, w))
        page_fault(cpu, lin, w->error);
    return w->gpa;
}
