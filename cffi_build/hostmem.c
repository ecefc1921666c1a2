/* The host-physical memory map: RAM ranges backed by host buffers. */
#include <stdlib.h>
#include "core.h"

silicon_t *silicon_new(void)
{
    silicon_t *sil = calloc(1, sizeof(*sil));
    if (sil) {
        pthread_mutex_init(&sil->lock, NULL);
        sil->refs = 1;
    }
    return sil;
}

/* Processors keep the machine alive: whichever of the owner and the processors lets go
 * last frees it. */
void silicon_free(silicon_t *sil)
{
    if (sil)
        silicon_release(sil);
}

void silicon_release(silicon_t *sil)
{
    if (__atomic_sub_fetch(&sil->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (int i = 0; i < sil->nranges; i++)
        free(sil->ranges[i].page_code);
    pthread_mutex_destroy(&sil->lock);
    free(sil);
}

int silicon_map_ram(silicon_t *sil, uint64_t hpa, void *host, uint64_t size)
{
    if ((hpa | size) & (PAGE_SIZE - 1) || size == 0 || !host || hpa + size < hpa)
        return -1;
    pthread_mutex_lock(&sil->lock);
    int rc = -1;
    if (sil->nranges < MAX_RAM_RANGES) {
        rc = 0;
        for (int i = 0; i < sil->nranges; i++) {
            ram_range_t *r = &sil->ranges[i];
            if (hpa < r->hpa + r->size && r->hpa < hpa + size)
                rc = -1;
        }
    }
    if (rc == 0) {
        uint32_t *pc = calloc(size / PAGE_SIZE, sizeof(uint32_t));
        if (!pc) {
            rc = -1;
        } else {
            ram_range_t *r = &sil->ranges[sil->nranges];
            r->hpa = hpa; r->size = size; r->host = host; r->page_code = pc;
            __atomic_store_n(&sil->nranges, sil->nranges + 1, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&sil->lock);
    return rc;
}

/* Removing a range does not flush TLBs: like freeing memory under a running guest, the
 * hypervisor must first unmap it from EPT and INVEPT. */
int silicon_unmap_ram(silicon_t *sil, uint64_t hpa)
{
    int rc = -1;
    pthread_mutex_lock(&sil->lock);
    for (int i = 0; i < sil->nranges; i++) {
        if (sil->ranges[i].hpa == hpa) {
            free(sil->ranges[i].page_code);
            sil->ranges[i] = sil->ranges[sil->nranges - 1];
            sil->nranges--;
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&sil->lock);
    return rc;
}

ram_range_t *hostmem_range(silicon_t *sil, uint64_t hpa)
{
    int n = __atomic_load_n(&sil->nranges, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++) {
        ram_range_t *r = &sil->ranges[i];
        if (hpa - r->hpa < r->size)
            return r;
    }
    return NULL;
}

uint8_t *hostmem_ptr(silicon_t *sil, uint64_t hpa)
{
    ram_range_t *r = hostmem_range(sil, hpa);
    return r ? r->host + (hpa - r->hpa) : NULL;
}

/* Reads of unbacked host-physical memory float high, as on a real bus. */
uint64_t hostmem_read64(silicon_t *sil, uint64_t hpa)
{
    uint8_t *p = hostmem_ptr(sil, hpa);
    if (!p)
        return ~0ull;
    return __atomic_load_n((uint64_t *)p, __ATOMIC_RELAXED);
}

int hostmem_cmpxchg64(silicon_t *sil, uint64_t hpa, uint64_t old, uint64_t new_value)
{
    uint8_t *p = hostmem_ptr(sil, hpa);
    if (!p)
        return 0;
    return __atomic_compare_exchange_n((uint64_t *)p, &old, new_value, 0,
                                       __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

void silicon_invalidate_code(silicon_t *sil, uint64_t hpa, uint64_t size)
{
    uint64_t end = hpa + size;
    for (uint64_t p = hpa & PAGE_MASK; p < end; p += PAGE_SIZE) {
        ram_range_t *r = hostmem_range(sil, p);
        if (!r)
            continue;
        uint32_t *w = &r->page_code[(p - r->hpa) / PAGE_SIZE];
        if (__atomic_load_n(w, __ATOMIC_RELAXED) & 1)
            __atomic_store_n(w, (*w & ~1u) + 2, __ATOMIC_RELEASE);
    }
}

void silicon_atomic_or32(silicon_t *sil, uint64_t hpa, uint32_t bits)
{
    uint8_t *p = hostmem_ptr(sil, hpa & ~3ull);
    if (p)
        __atomic_fetch_or((uint32_t *)p, bits, __ATOMIC_SEQ_CST);
}
