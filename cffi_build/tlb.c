/* The TLB: guest-linear page -> host pointer, with guest paging, EPT and permissions
 * folded into one lookup.  A tag is set only for the access kind that was checked. */
#include "apicv.h"

void tlb_flush_all(cpu_t *cpu, int keep_global)
{
    cpu->tlb_epoch++;
    if (!keep_global)
        for (unsigned i = 0; i < EPT_CACHE_SIZE; i++)
            cpu->ept_cache[i].gpa = TLB_INVALID;
    for (int u = 0; u < 2; u++)
        for (unsigned i = 0; i < TLB_SIZE; i++) {
            tlb_entry_t *e = &cpu->tlb[u][i];
            if (keep_global && e->global)
                continue;
            e->tag_read = e->tag_write = e->tag_exec = TLB_INVALID;
        }
}

void tlb_flush_page(cpu_t *cpu, uint64_t lin)
{
    cpu->tlb_epoch++;
    uint64_t page = lin & PAGE_MASK;
    for (int u = 0; u < 2; u++) {
        tlb_entry_t *e = &cpu->tlb[u][(lin >> 12) & (TLB_SIZE - 1)];
        if (e->tag_read == page || e->tag_write == page || e->tag_exec == page)
            e->tag_read = e->tag_write = e->tag_exec = TLB_INVALID;
    }
}

/* Instructions were just decoded from this page: no processor may keep a fast write
 * path to it, so that writes reach code_page_written(). */
void tlb_drop_code_page_writes(silicon_t *sil, uint64_t hpa_page)
{
    int n = __atomic_load_n(&sil->ncpus, __ATOMIC_ACQUIRE);
    for (int c = 0; c < n; c++) {
        cpu_t *other = sil->cpus[c];
        for (int u = 0; u < 2; u++)
            for (unsigned i = 0; i < TLB_SIZE; i++)
                if (other->tlb[u][i].hpa == hpa_page && other->tlb[u][i].tag_write != TLB_INVALID)
                    __atomic_store_n(&other->tlb[u][i].tag_write, TLB_INVALID, __ATOMIC_RELEASE);
    }
}

/* A supervisor data access to a user page passed SMAP because RFLAGS.AC is set: note
 * the entry, so that clearing AC drops it (the oldest goes when the ring is full). */
static void smap_opened(cpu_t *cpu, tlb_entry_t *e)
{
    uint16_t index = (uint16_t)(e - cpu->tlb[0]);
    uint16_t *slot = &cpu->smap_open[cpu->smap_open_count % SMAP_OPEN_MAX];
    if (cpu->smap_open_count >= SMAP_OPEN_MAX && *slot != index)
        cpu->tlb[0][*slot].tag_read = cpu->tlb[0][*slot].tag_write = TLB_INVALID;
    *slot = index;
    cpu->smap_open_count++;
}

void tlb_smap_closed(cpu_t *cpu)
{
    uint32_t n = cpu->smap_open_count < SMAP_OPEN_MAX ? cpu->smap_open_count : SMAP_OPEN_MAX;
    for (uint32_t k = 0; k < n; k++) {
        tlb_entry_t *e = &cpu->tlb[0][cpu->smap_open[k]];
        e->tag_read = e->tag_write = TLB_INVALID;
    }
    cpu->smap_open_count = 0;
}

/* Translate `lin` for an access and cache it.  Returns NULL when the page is not
 * ordinary memory: unbacked host-physical memory, the MMIO page of an emulation, or the
 * APIC-access page. */
tlb_entry_t *tlb_fill(cpu_t *cpu, uint64_t lin, int acc, int user)
{
    walk_t w = { .global = 0, .user = 0 };
    uint64_t page = lin & PAGE_MASK;
    uint64_t gpa;
    if (cpu->cr0 & CR0_PG)
        gpa = paging_translate(cpu, lin, acc, user, &w);
    else
        gpa = lin & 0xffffffffull;
    uint64_t gpa_page = gpa & PAGE_MASK;
    if (cpu->emul && gpa_page == (cpu->emul->gpa & PAGE_MASK)) {
        cpu->emul_hit_gpa = gpa; /* the caller routes this access to the MMIO buffer */
        return NULL;
    }
    uint64_t hpa_page = gpa_page;
    if (cpu->vc.proc2 & SEC_ENABLE_EPT) {
        int ept_writable;
        hpa_page = ept_translate(cpu, gpa, acc, 1, lin, 1, &ept_writable) & PAGE_MASK;
    }
    if (unlikely(is_apic_access_page(cpu, hpa_page))) {
        if (!cpu->emul)
            apic_access_translated(cpu, lin, gpa, acc);
        return NULL;
    }
    uint8_t *host = hostmem_ptr(cpu->sil, hpa_page);
    if (!host)
        return NULL;
    tlb_entry_t *e = &cpu->tlb[user][(lin >> 12) & (TLB_SIZE - 1)];
    uintptr_t addend = (uintptr_t)host - (uintptr_t)page;
    if (e->hpa != hpa_page || e->addend != addend ||
        !(e->tag_read == page || e->tag_write == page || e->tag_exec == page)) {
        e->tag_read = e->tag_write = e->tag_exec = TLB_INVALID;
        e->addend = addend;
        e->hpa = hpa_page;
        e->gpa = gpa_page;
        ram_range_t *r = hostmem_range(cpu->sil, hpa_page);
        e->code_word = &r->page_code[(hpa_page - r->hpa) / PAGE_SIZE];
    }
    e->global = (uint8_t)w.global;
    if (!user && w.user && acc != ACC_EXEC && (cpu->cr4 & CR4_SMAP))
        smap_opened(cpu, e);
    /* no fast path where a data breakpoint must see the access */
    if (unlikely(cpu->dbg_data) && acc != ACC_EXEC && debug_watches_page(cpu, page, acc))
        return e;
    switch (acc) {
    case ACC_READ: e->tag_read = page; break;
    case ACC_EXEC: e->tag_exec = page; break;
    case ACC_WRITE:
        if (!(__atomic_load_n(e->code_word, __ATOMIC_ACQUIRE) & 1))
            e->tag_write = page;
        break;
    }
    return e;
}

/* A write through `e` that the fast path did not take: the page may hold decoded
 * instructions (retire them; later writes go fast) or a data breakpoint (stay slow). */
void tlb_take_write_path(cpu_t *cpu, tlb_entry_t *e, uint64_t lin)
{
    uint64_t page = lin & PAGE_MASK;
    if (e->tag_write == page)
        return;
    if (__atomic_load_n(e->code_word, __ATOMIC_ACQUIRE) & 1)
        code_page_written(cpu, e->hpa);
    if (!(unlikely(cpu->dbg_data) && debug_watches_page(cpu, page, ACC_WRITE)))
        e->tag_write = page;
}

/* Entries are tagged by (VPID, EPTP): switching context flushes the other one's, and
 * without VPID nothing survives a VM transition. */
void tlb_select_context(cpu_t *cpu)
{
    uint16_t vpid = (cpu->vc.proc2 & SEC_ENABLE_VPID) ? cpu->vc.vpid : 0;
    uint64_t eptp = (cpu->vc.proc2 & SEC_ENABLE_EPT) ? cpu->vc.eptp : 0;
    if (!cpu->tlb_tagged || vpid == 0 || vpid != cpu->tlb_vpid ||
        (eptp & PAGE_MASK) != (cpu->tlb_eptp & PAGE_MASK))
        tlb_flush_all(cpu, 0);
    cpu->tlb_vpid = vpid;
    cpu->tlb_eptp = eptp;
    cpu->tlb_tagged = 1;
}
