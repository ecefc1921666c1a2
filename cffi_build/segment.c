/* Segmentation: effective address -> linear address with limit and type checks, and
 * segment-register loads from descriptor tables. */
#include "core.h"

static __attribute__((noreturn)) void seg_fault(cpu_t *cpu, int seg)
{
    FAULT_ERR(cpu, seg == S_SS ? EXC_SS : EXC_GP, 0);
}

uint64_t seg_linear(cpu_t *cpu, int seg, uint64_t off, int size, int acc)
{
    if (cpu->mode == MODE_LONG64) {
        uint64_t lin = off + ((seg == S_FS || seg == S_GS) ? cpu->seg[seg].base : 0);
        /* canonical check on the first and last byte */
        uint64_t last = lin + size - 1;
        if ((uint64_t)(((int64_t)(lin << 16)) >> 16) != lin ||
            (uint64_t)(((int64_t)(last << 16)) >> 16) != last)
            seg_fault(cpu, seg);
        return lin;
    }
    seg_t *s = &cpu->seg[seg];
    uint32_t ar = s->ar;
    if (cpu->mode != MODE_REAL16 && cpu->mode != MODE_VM86) {
        if (ar & AR_UNUSABLE)
            seg_fault(cpu, seg);
        uint32_t type = AR_TYPE(ar);
        if (acc == ACC_WRITE && ((type & 8) || !(type & 2)))
            seg_fault(cpu, seg);
        if (acc == ACC_READ && (type & 8) && !(type & 2))
            seg_fault(cpu, seg);
        if (!(type & 8) && (type & 4)) {
            /* expand-down: valid offsets lie above the limit */
            uint64_t upper = (ar & AR_DB) ? 0xffffffffull : 0xffffull;
            if (off <= s->limit || off + size - 1 > upper)
                seg_fault(cpu, seg);
            return (uint32_t)(s->base + off);
        }
    }
    if (off + size - 1 > s->limit)
        seg_fault(cpu, seg);
    return (uint32_t)(s->base + off);
}

void desc_to_seg(seg_t *s, uint16_t sel, uint64_t lo, uint64_t hi)
{
    uint32_t limit = (uint32_t)((lo & 0xffff) | ((lo >> 32) & 0xf0000));
    s->sel = sel;
    s->base = ((lo >> 16) & 0xffffff) | ((lo >> 32) & 0xff000000ull);
    if (!(lo & (1ull << 44)))     /* system descriptors are 16 bytes in long mode */
        s->base |= (hi & 0xffffffffull) << 32;
    s->ar = (uint32_t)(((lo >> 40) & 0xff) | (((lo >> 52) & 0xf) << 12));
    s->limit = (s->ar & AR_G) ? ((limit << 12) | 0xfff) : limit;
}

/* Read the descriptor a selector names; returns 0, or -1 if outside the table. */
int read_descriptor(cpu_t *cpu, uint16_t sel, uint64_t *lo, uint64_t *hi, uint64_t *addr)
{
    uint64_t base;
    uint32_t limit;
    if (sel & 4) {
        if (cpu->seg[S_LDTR].ar & AR_UNUSABLE)
            return -1;
        base = cpu->seg[S_LDTR].base;
        limit = cpu->seg[S_LDTR].limit;
    } else {
        base = cpu->gdtr.base;
        limit = cpu->gdtr.limit;
    }
    uint32_t off = sel & ~7u;
    if (off + 7 > limit)
        return -1;
    *addr = base + off;
    *lo = sys_read(cpu, base + off, 8);
    *hi = (cpu->efer & EFER_LMA) && off + 15 <= limit ? sys_read(cpu, base + off + 8, 8) : 0;
    return 0;
}

void load_seg_real(cpu_t *cpu, int seg, uint16_t sel)
{
    seg_t *s = &cpu->seg[seg];
    s->sel = sel;
    s->base = (uint64_t)sel << 4;
    if (cpu->mode == MODE_VM86) {
        s->limit = 0xffff;
        s->ar = 0xf3 | (seg == S_CS ? 0x8 : 0);
    }
}

/* The checks of a non-null selector for SS at privilege `cpl` (MOV/POP SS, LSS, and
 * the stack of a far RET or IRET to an outer level); returns the descriptor. */
uint64_t check_stack_segment(cpu_t *cpu, uint16_t sel, int cpl, uint64_t *addr)
{
    uint64_t lo, hi;
    if ((sel & ~3u) == 0)
        FAULT_ERR(cpu, EXC_GP, 0);
    if (read_descriptor(cpu, sel, &lo, &hi, addr) < 0)
        FAULT_ERR(cpu, EXC_GP, sel & ~3u);
    uint32_t access = (uint32_t)((lo >> 40) & 0xff);
    int writable_data = (access & AR_S) && !(access & 8) && (access & 2);
    if ((sel & 3) != cpl || (int)AR_DPL(access) != cpl || !writable_data)
        FAULT_ERR(cpu, EXC_GP, sel & ~3u);
    if (!(access & AR_P))
        FAULT_ERR(cpu, EXC_SS, sel & ~3u);
    return lo;
}

/* Protected-mode MOV/POP to a data or stack segment register (SDM MOV, POP). */
void load_seg_prot(cpu_t *cpu, int seg, uint16_t sel)
{
    seg_t *s = &cpu->seg[seg];
    uint64_t lo, hi, addr;
    int rpl = sel & 3;
    if ((sel & ~3u) == 0) {
        if (seg == S_SS && !(cpu->mode == MODE_LONG64 && cpu->cpl != 3 && rpl == cpu->cpl))
            FAULT_ERR(cpu, EXC_GP, 0);
        s->sel = sel;
        s->base = 0;
        s->limit = 0;
        s->ar = AR_UNUSABLE | (seg == S_SS ? ((uint32_t)rpl << 5) : 0);
        return;
    }
    if (seg == S_SS) {
        lo = check_stack_segment(cpu, sel, cpu->cpl, &addr);
        mark_accessed(cpu, addr, &lo);
        desc_to_seg(s, sel, lo, 0);
        return;
    }
    if (read_descriptor(cpu, sel, &lo, &hi, &addr) < 0)
        FAULT_ERR(cpu, EXC_GP, sel & ~3u);
    uint32_t access = (uint32_t)((lo >> 40) & 0xff);
    int type = access & 0xf, dpl = (access >> 5) & 3;
    /* data or readable code only */
    if (!(access & AR_S) || ((type & 8) && !(type & 2)))
        FAULT_ERR(cpu, EXC_GP, sel & ~3u);
    /* data and non-conforming code: both RPL and CPL must be within DPL */
    if ((!(type & 8) || !(type & 4)) && (rpl > dpl || cpu->cpl > dpl))
        FAULT_ERR(cpu, EXC_GP, sel & ~3u);
    if (!(access & AR_P))
        FAULT_ERR(cpu, EXC_NP, sel & ~3u);
    mark_accessed(cpu, addr, &lo);
    desc_to_seg(s, sel, lo, 0);
}

/* Loading a code or data descriptor sets its accessed bit, in the table as well. */
void mark_accessed(cpu_t *cpu, uint64_t addr, uint64_t *lo)
{
    if (!(*lo & (1ull << 40))) {
        *lo |= 1ull << 40;
        sys_write(cpu, addr + 5, 1, (*lo >> 40) & 0xff);
    }
}

void load_seg(cpu_t *cpu, int seg, uint16_t sel)
{
    if (cpu->mode == MODE_REAL16 || cpu->mode == MODE_VM86)
        load_seg_real(cpu, seg, sel);
    else
        load_seg_prot(cpu, seg, sel);
    cpu_update_mode(cpu);
}
