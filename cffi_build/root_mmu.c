/* kvm/'s memory management in root mode: the page pool the hypervisor allocates from,
 * memslots, and EPT tables filled on demand from EPT violations (KVM's TDP MMU), with
 * the pages the hypervisor itself writes remembered for the dirty log. */
#include <stdlib.h>
#include "root.h"

#define EPT_ADDR_MASK (((1ull << 40) - 1) & PAGE_MASK)
#define EPT_RWX (EPT_READ | EPT_WRITE | EPT_EXEC)
#define EPT_MT_WB (6ull << 3)

/* Kept alive by its owner and by each VM that has EPT tables in it; it keeps the
 * machine alive in turn (whichever lets go last frees). */
struct root_pool {
    silicon_t *sil;
    int refs;
    pthread_mutex_t lock;
    uint64_t next, end;
    uint64_t *free_pages;
    size_t n_free, cap_free;
};

root_pool_t *root_pool_new(silicon_t *sil, uint64_t base, uint64_t size)
{
    root_pool_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->sil = sil;
    p->refs = 1;
    p->next = base;
    p->end = base + size;
    pthread_mutex_init(&p->lock, NULL);
    __atomic_add_fetch(&sil->refs, 1, __ATOMIC_ACQ_REL);
    return p;
}

static void pool_release_ref(root_pool_t *p)
{
    if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    silicon_release(p->sil);
    pthread_mutex_destroy(&p->lock);
    free(p->free_pages);
    free(p);
}

void root_pool_free(root_pool_t *p)
{
    if (p)
        pool_release_ref(p);
}

uint64_t root_pool_alloc(root_pool_t *p)
{
    uint64_t hpa = 0;
    pthread_mutex_lock(&p->lock);
    if (p->n_free) {
        hpa = p->free_pages[--p->n_free];
        memset(hostmem_ptr(p->sil, hpa), 0, PAGE_SIZE);
    } else if (p->next < p->end) {
        hpa = p->next;           /* never touched: the pool's memory is still zero */
        p->next += PAGE_SIZE;
    }
    pthread_mutex_unlock(&p->lock);
    return hpa;
}

void root_pool_release(root_pool_t *p, uint64_t hpa)
{
    pthread_mutex_lock(&p->lock);
    if (p->n_free == p->cap_free) {
        size_t cap = p->cap_free ? 2 * p->cap_free : 64;
        uint64_t *grown = realloc(p->free_pages, cap * sizeof(*grown));
        if (!grown) {            /* the page is lost to the pool, nothing worse */
            pthread_mutex_unlock(&p->lock);
            return;
        }
        p->free_pages = grown;
        p->cap_free = cap;
    }
    p->free_pages[p->n_free++] = hpa;
    pthread_mutex_unlock(&p->lock);
}

/* ---- VM ---- */

static uint64_t alloc_table(root_vm_t *vm)
{
    if (vm->n_ept_tables == vm->cap_ept_tables) {
        size_t cap = vm->cap_ept_tables ? 2 * vm->cap_ept_tables : 64;
        uint64_t *grown = realloc(vm->ept_tables, cap * sizeof(*grown));
        if (!grown)
            return 0;
        vm->ept_tables = grown;
        vm->cap_ept_tables = cap;
    }
    uint64_t hpa = root_pool_alloc(vm->pool);
    if (hpa)
        vm->ept_tables[vm->n_ept_tables++] = hpa;
    return hpa;
}

root_vm_t *root_vm_new(root_pool_t *pool)
{
    root_vm_t *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return NULL;
    vm->pool = pool;
    vm->sil = pool->sil;
    __atomic_add_fetch(&pool->refs, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_init(&vm->lock, NULL);
    pthread_mutex_init(&vm->coalesced_lock, NULL);
    vm->ept_root = alloc_table(vm);
    root_kvmclock_init(vm);
    return vm;
}

void root_vm_free(root_vm_t *vm)
{
    if (!vm)
        return;
    for (size_t k = 0; k < vm->n_ept_tables; k++)
        root_pool_release(vm->pool, vm->ept_tables[k]);
    for (int s = 0; s < ROOT_MAX_SLOTS; s++)
        free(vm->slots[s].hypervisor_dirty);
    free(vm->ept_tables);
    pool_release_ref(vm->pool);
    pthread_mutex_destroy(&vm->lock);
    pthread_mutex_destroy(&vm->coalesced_lock);
    free(vm);
}

uint64_t root_vm_ept_root(root_vm_t *vm)
{
    return vm->ept_root;
}

static uint64_t *table_entry(root_vm_t *vm, uint64_t table, uint64_t gpa, int level)
{
    return (uint64_t *)(void *)hostmem_ptr(vm->sil, table) + ((gpa >> (12 + 9 * (level - 1))) & 0x1ff);
}

/* The leaf slot for gpa; with `create`, missing tables are built (NULL: no page left). */
static uint64_t *leaf_slot(root_vm_t *vm, uint64_t gpa, int create)
{
    uint64_t table = vm->ept_root;
    for (int level = 4; level > 1; level--) {
        uint64_t *slot = table_entry(vm, table, gpa, level);
        uint64_t entry = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
        if (!(entry & EPT_RWX)) {
            if (!create)
                return NULL;
            uint64_t page = alloc_table(vm);
            if (!page)
                return NULL;
            entry = page | EPT_RWX;
            __atomic_store_n(slot, entry, __ATOMIC_RELEASE);   /* the table is zeroed first */
        }
        table = entry & EPT_ADDR_MASK;
    }
    return table_entry(vm, table, gpa, 1);
}

int root_ept_set_leaf(root_vm_t *vm, uint64_t gpa, uint64_t entry)
{
    pthread_mutex_lock(&vm->lock);
    uint64_t *slot = leaf_slot(vm, gpa, 1);
    if (slot)
        __atomic_store_n(slot, entry, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&vm->lock);
    return slot ? 0 : -1;
}

static root_memslot_t *find_slot(root_vm_t *vm, uint64_t gpa)
{
    for (int k = 0; k < vm->n_used; k++) {
        root_memslot_t *m = &vm->slots[vm->used_slots[k]];
        if (gpa - m->gpa < m->size)
            return m;
    }
    return NULL;
}

/* Drop the leaf entries of [gpa, gpa + size), visiting only the tables that exist. */
static void unmap_range(root_vm_t *vm, uint64_t table, int level, uint64_t base, uint64_t gpa, uint64_t end)
{
    uint64_t span = 1ull << (12 + 9 * (level - 1));
    uint64_t first = gpa > base ? (gpa - base) / span : 0;
    uint64_t last = (end - 1 - base) / span;
    if (last > 511)
        last = 511;
    uint64_t *entries = (uint64_t *)(void *)hostmem_ptr(vm->sil, table);
    for (uint64_t i = first; i <= last; i++) {
        if (!(entries[i] & EPT_RWX))
            continue;
        if (level == 1)
            __atomic_store_n(&entries[i], 0, __ATOMIC_RELEASE);
        else
            unmap_range(vm, entries[i] & EPT_ADDR_MASK, level - 1, base + i * span, gpa, end);
    }
}

int root_vm_set_memslot(root_vm_t *vm, int slot, uint64_t gpa, uint64_t size, uint64_t hpa, uint32_t flags)
{
    if (slot < 0 || slot >= ROOT_MAX_SLOTS)
        return -1;
    uint64_t *dirty = NULL;
    if (size && (flags & KVM_MEM_LOG_DIRTY_PAGES)) {
        dirty = calloc((size / PAGE_SIZE + 63) / 64, sizeof(uint64_t));
        if (!dirty)
            return -1;
    }
    pthread_mutex_lock(&vm->lock);
    root_memslot_t *m = &vm->slots[slot];
    if (m->used && m->size)
        unmap_range(vm, vm->ept_root, 4, 0, m->gpa, m->gpa + m->size);
    free(m->hypervisor_dirty);
    m->gpa = gpa;
    m->size = size;
    m->hpa = hpa;
    m->flags = flags;
    m->used = size != 0;
    m->hypervisor_dirty = dirty;
    vm->n_used = 0;
    for (int s = 0; s < ROOT_MAX_SLOTS; s++)
        if (vm->slots[s].used)
            vm->used_slots[vm->n_used++] = (uint8_t)s;
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

int root_ept_fault_in(root_vm_t *vm, uint64_t gpa, int write)
{
    pthread_mutex_lock(&vm->lock);
    root_memslot_t *m = find_slot(vm, gpa);
    int readonly = m && (m->flags & KVM_MEM_READONLY);
    int ram = m && !(readonly && write);
    if (ram) {
        uint64_t page = gpa & PAGE_MASK;
        uint64_t *slot = leaf_slot(vm, page, 1);
        uint64_t entry = ((m->hpa + (page - m->gpa)) & EPT_ADDR_MASK) | EPT_READ | EPT_EXEC | EPT_MT_WB |
                         (readonly ? 0 : EPT_WRITE);
        if (slot)
            __atomic_store_n(slot, entry, __ATOMIC_RELEASE);
        else
            ram = -1;            /* no page left for a table */
    }
    pthread_mutex_unlock(&vm->lock);
    return ram;
}

static void mark_dirty_locked(root_memslot_t *m, uint64_t gpa, uint64_t size)
{
    if (!m->hypervisor_dirty || size == 0)
        return;
    for (uint64_t page = (gpa - m->gpa) >> 12; page <= (gpa + size - 1 - m->gpa) >> 12; page++)
        __atomic_fetch_or(&m->hypervisor_dirty[page / 64], 1ull << (page % 64), __ATOMIC_RELAXED);
}

void root_vm_mark_dirty(root_vm_t *vm, uint64_t gpa, uint64_t size)
{
    pthread_mutex_lock(&vm->lock);
    root_memslot_t *m = find_slot(vm, gpa);
    if (m && gpa + size <= m->gpa + m->size)
        mark_dirty_locked(m, gpa, size);
    pthread_mutex_unlock(&vm->lock);
}

void root_vm_take_hypervisor_dirty(root_vm_t *vm, int slot, uint8_t *bitmap, uint64_t nbytes)
{
    if (slot < 0 || slot >= ROOT_MAX_SLOTS)
        return;
    pthread_mutex_lock(&vm->lock);
    root_memslot_t *m = &vm->slots[slot];
    if (m->used && m->hypervisor_dirty) {
        uint64_t words = (m->size / PAGE_SIZE + 63) / 64;
        for (uint64_t w = 0; w < words && w * 8 < nbytes; w++) {
            uint64_t bits = __atomic_exchange_n(&m->hypervisor_dirty[w], 0, __ATOMIC_RELAXED);
            for (int b = 0; b < 8 && w * 8 + (uint64_t)b < nbytes; b++)
                bitmap[w * 8 + (uint64_t)b] |= (uint8_t)(bits >> (8 * b));
        }
    }
    pthread_mutex_unlock(&vm->lock);
}

/* Host pointer to guest-physical [gpa, gpa + size) within one page of a slot. */
static uint8_t *guest_ptr_locked(root_vm_t *vm, uint64_t gpa, uint32_t size, int write, root_memslot_t **out)
{
    root_memslot_t *m = find_slot(vm, gpa);
    if (!m || size == 0 || (gpa & 0xfff) + size > PAGE_SIZE || gpa + size > m->gpa + m->size ||
        (write && (m->flags & KVM_MEM_READONLY)))
        return NULL;
    *out = m;
    return hostmem_ptr(vm->sil, m->hpa + (gpa - m->gpa));
}

int root_write_guest(root_vm_t *vm, uint64_t gpa, const void *data, uint32_t size)
{
    root_memslot_t *m;
    pthread_mutex_lock(&vm->lock);
    uint8_t *p = guest_ptr_locked(vm, gpa, size, 1, &m);
    if (p) {
        memcpy(p, data, size);
        mark_dirty_locked(m, gpa, size);
        silicon_invalidate_code(vm->sil, m->hpa + (gpa - m->gpa), size);
    }
    pthread_mutex_unlock(&vm->lock);
    return p ? 0 : -1;
}

int root_read_guest(root_vm_t *vm, uint64_t gpa, void *data, uint32_t size)
{
    root_memslot_t *m;
    pthread_mutex_lock(&vm->lock);
    uint8_t *p = guest_ptr_locked(vm, gpa, size, 0, &m);
    if (p)
        memcpy(data, p, size);
    pthread_mutex_unlock(&vm->lock);
    return p ? 0 : -1;
}
